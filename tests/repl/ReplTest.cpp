// `mtlc repl`: driven as a script through a pipe (every command, an error mid-session, declarations
// typed at the prompt, a head swap that keeps the trunk bit-for-bit) and through a pseudo-terminal
// (prompt, tab completion, history file).
#include "runtime/io/SafeTensors.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <pty.h>
#include <regex>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

struct Result {
  int exitCode = -1;
  std::string out, err;
};

std::string slurp(const fs::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path workDir() {
  auto d = fs::path(MTLC_BINARY_DIR) / "test-work" / "repl";
  fs::create_directories(d);
  return d;
}

std::string example(const std::string &name) { return std::string(MTLC_SOURCE_DIR) + "/examples/" + name; }

// Pipes `script` into `mtlc repl ARGS`.
Result runScript(const std::string &script, const std::string &args = "") {
  static int counter = 0;
  auto dir = workDir();
  std::string n = std::to_string(counter++);
  auto in = dir / ("script" + n + ".txt"), out = dir / ("out" + n + ".txt"), err = dir / ("err" + n + ".txt");
  std::ofstream(in, std::ios::binary) << script;
  std::string cmd = "'" MTLC_BINARY "' repl " + args + " <'" + in.string() + "' >'" + out.string() +
                    "' 2>'" + err.string() + "'";
  int status = std::system(cmd.c_str());
  Result r;
  if (WIFEXITED(status)) r.exitCode = WEXITSTATUS(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

size_t count(const std::string &hay, const std::string &needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE(":help KIND lists the vocabulary with signatures and defaults") {
  Result r = runScript(":help layers\n:help blocks\n:help weightings\n:help optimizers\n:help schedules\n"
                       ":help layer\n");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 1);  // the last line is an error
  // Every argument, optional ones with their defaults (spec/Vocabulary.def).
  CHECK(r.out.find("  conv2d(channels, kernel, stride=1, padding=0, bias=true) ") != std::string::npos);
  CHECK(r.out.find("  upsample(scale, mode=nearest) ") != std::string::npos);  // a choice: its default's name
  CHECK(r.out.find("  maxpool(kernel, stride=kernel) ") != std::string::npos);
  CHECK(r.out.find("  layernorm(eps=1e-05) ") != std::string::npos);
  CHECK(r.out.find("  adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0) ") != std::string::npos);
  CHECK(r.out.find("  gradnorm(alpha=1.5) ") != std::string::npos);
  CHECK(r.out.find("  cgc(shared, specific) ") != std::string::npos);
  // Layers and blocks are listed apart: no block among the layers.
  const size_t blocksAt = r.out.find("  mixture(experts, gate=softmax, select=2, gamma=1) ");
  REQUIRE(blocksAt != std::string::npos);
  CHECK(r.out.find("  embedding(vocab, dim) ") < blocksAt);
  CHECK(r.out.find("  dense(units) ", blocksAt) == std::string::npos);
  CHECK(r.out.find("  sgd(lr, momentum=0, nesterov=false, weight_decay=0) ") != std::string::npos);
  CHECK(r.out.find("  adamw(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.01) ") != std::string::npos);
  CHECK(r.out.find("  rmsprop(lr=0.01, alpha=0.99, eps=1e-08, momentum=0, weight_decay=0) ") != std::string::npos);
  CHECK(r.out.find("  multistep(at, gamma=0.1) ") != std::string::npos);
  CHECK(r.out.find("  cosine(t_max=epochs, eta_min=0) ") != std::string::npos);
  CHECK(r.err.find(":help takes one of layers, blocks, losses, metrics, optimizers, weightings, schedules, not "
                   "'layer'; did you mean 'layers'?") != std::string::npos);
}

TEST_CASE("a piped script runs every command; an error in the middle does not end it") {
  auto dir = workDir();
  std::string ckpt = (dir / "tabular.safetensors").string();
  std::string script =
      ":load " + example("tabular.mtl") + "\n"   // 1
      ":help\n"                                   // 2
      ":show\n"                                   // 3
      ":show trunk\n"                             // 4
      ":ir predict\n"                             // 5
      ":ir trunk\n"                               // 6
      ":llvm predict\n"                           // 7
      ":set lr=0.01\n"                            // 8
      ":set epochs=1\n"                           // 9
      ":train 5 steps\n"                          // 10
      ":train 1 epochs\n"                         // 11
      ":eval\n"                                   // 12
      ":predict cls row 0\n"                      // 13
      ":predict target 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8\n"  // 14
      "task flag { trunk -> dense(16) -> relux -> dense(1)  loss bce }\n"  // 15: an error
      ":frobnicate\n"                             // 16: another
      ":show flag\n"                              // 17: the old flag is still there (dense(16) -> relu)
      ":save " + ckpt + "\n"                      // 18
      ":init " + ckpt + "\n"                      // 19
      ":time\n"                                   // 20
      ":reset\n"                                  // 21
      ":show\n"                                   // 22
      ":quit\n"                                   // 23
      ":help\n";                                  // not reached
  Result r = runScript(script);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 1);  // a script with errors fails, but it ran to :quit
  CHECK(r.out.find("mtl>") == std::string::npos);  // no prompts in a script
  CHECK(r.err.find("\033[") == std::string::npos); // no colours
  CHECK(r.out.find("loaded " + example("tabular.mtl")) != std::string::npos);
  CHECK(r.out.find("compiled tabular in") != std::string::npos);
  CHECK(count(r.out, "list the commands") == 1);   // :help once: nothing runs after :quit
  for (const char *c : {":load", ":show", ":ir", ":llvm", ":train", ":eval", ":predict", ":set",
                        ":save", ":init", ":time", ":reset", ":quit"})
    CHECK(r.out.find(std::string("  ") + c + " ") != std::string::npos);
  CHECK(r.out.find("task    cls") != std::string::npos);             // :show
  CHECK(r.out.find("trunk.0.weight [64, 8]") != std::string::npos);   // :show trunk
  CHECK(r.out.find("used by: task cls, task flag, task target") != std::string::npos);
  CHECK(r.out.find("define") != std::string::npos);                   // :llvm predict
  CHECK(r.out.find("_predict(") != std::string::npos);
  CHECK(r.out.find("lr = 0.01") != std::string::npos);
  CHECK(r.out.find("trained 5 steps") != std::string::npos);
  CHECK(r.out.find("trained 63 steps") != std::string::npos);         // 2000 rows / 32 per batch
  CHECK(r.out.find("test split, ") != std::string::npos);
  CHECK(r.out.find("cls: class ") != std::string::npos);
  CHECK(r.out.find("target: [") != std::string::npos);
  // The typo is reported where it was typed: line 15 of the input, at `relux`.
  CHECK(r.err.find("<input>:15:35: error: unknown layer 'relux'") != std::string::npos);
  CHECK(r.err.find("unknown command ':frobnicate'") != std::string::npos);
  CHECK(r.err.find("(not added: the model is unchanged)") != std::string::npos);
  CHECK(r.out.find("relu -> dense(1)") != std::string::npos);        // :show flag after the error
  CHECK(r.out.find("saved " + ckpt) != std::string::npos);
  CHECK(r.out.find("loaded parameters and optimizer state from " + ckpt) != std::string::npos);
  CHECK(r.out.find("last compile:") != std::string::npos);
  CHECK(r.out.find("training:     68 steps") != std::string::npos);
  CHECK(r.out.find("reset: no model") != std::string::npos);
  CHECK(r.out.find("(no declarations)") != std::string::npos);
}

TEST_CASE("declarations typed at the prompt build a model; redefining one replaces it") {
  std::string csv = example("tabular.csv");
  std::string script =
      "input features : f32[8]\n"                   // 1
      "shared trunk = features -> dense(16) -> relu\n"  // 2
      "task cls {\n"                                // 3
      "  trunk -> dense(3)\n"
      "  loss cross_entropy\n"
      "  metric accuracy\n"
      "}\n"                                         // 7
      "train {\n"                                   // 8
      "  optimizer sgd(lr=0.1)\n"
      "  batch 32\n"
      "  epochs 1\n"
      "  seed 1\n"
      "}\n"                                         // 13
      "data {\n"                                    // 14
      "  train csv(\"" + csv + "\")\n"
      "  features = columns(0..7)\n"
      "  cls = cls\n"
      "}\n"                                         // 18
      ":train 3 steps\n"                            // 19
      "task cls {\n"                                // 20
      "  trunk -> dense(8) -> relu -> dense(3)\n"
      "  loss cross_entrop\n"                       // 22: a typo in a multi-line declaration
      "}\n"
      "task cls {\n"                                // 24
      "  trunk -> dense(8) -> relu -> dense(3)\n"
      "  loss cross_entropy\n"
      "}\n"
      ":show cls\n"
      ":set batch=16\n"
      ":train 2 steps\n";
  Result r = runScript(script);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 1);
  CHECK(r.out.find("compiled repl in") != std::string::npos);
  CHECK(r.out.find("trained 3 steps") != std::string::npos);
  CHECK(r.err.find("<input>:22:8: error: unknown loss 'cross_entrop'") != std::string::npos);
  // The new head: the trunk's two tensors are kept, the head's four are new.
  CHECK(r.out.find("kept 2 tensors, initialised cls.0.weight, cls.0.bias, cls.2.weight, cls.2.bias") !=
        std::string::npos);
  CHECK(r.out.find("cls.2.weight [3, 8]") != std::string::npos);
  // A new batch size recompiles (the kernels are sized for it) and keeps every tensor.
  CHECK(r.out.find("kept 6 tensors, initialised none") != std::string::npos);
  CHECK(r.out.find("trained 2 steps") != std::string::npos);
  CHECK(r.out.find("7 steps in all") == std::string::npos);
}

TEST_CASE("swapping the flagship's head after :train keeps the trunk bit-for-bit, recompiling fast") {
  auto dir = workDir();
  std::string before = (dir / "before.safetensors").string(), after = (dir / "after.safetensors").string();
  std::string script =
      ":train 20 steps\n"
      ":save " + before + "\n"
      "task category {\n"
      "  trunk -> dense(32) -> relu -> dense(10)\n"
      "  loss cross_entropy\n"
      "  metric accuracy\n"
      "}\n"
      ":save " + after + "\n"
      ":time\n";
  Result r = runScript(script, "'" + example("fashion.mtl") + "'");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.exitCode == 0);
  auto a = mtlc::rt::readSafeTensors(before), b = mtlc::rt::readSafeTensors(after);
  int compared = 0;
  for (const auto &t : a.tensors) {
    bool trunk = t.name.rfind("trunk.", 0) == 0, footwear = t.name.rfind("footwear.", 0) == 0;
    if (!trunk && !footwear) continue;
    const auto *u = b.find(t.name);
    REQUIRE(u);
    CHECK(u->shape == t.shape);
    REQUIRE(u->data.size() == t.data.size());
    CHECK(std::memcmp(u->data.data(), t.data.data(), t.data.size() * sizeof(float)) == 0);
    ++compared;
  }
  CHECK(compared == 6);  // trunk.0.{weight,bias}, footwear.0/2.{weight,bias}
  // The optimizer state of kept tensors is kept too; the swapped head is new.
  REQUIRE(a.find("category.0.weight"));
  CHECK(a.find("category.0.weight")->shape == std::vector<int64_t>{64, 5408});
  CHECK(b.find("category.0.weight")->shape == std::vector<int64_t>{32, 5408});
  // The recompile after the swap: "compiled fashion in N ms ...; kept 7 tensors" (the trunk's 2,
  // footwear's 4, and category.2.bias, whose name and shape [10] did not change).
  std::smatch m;
  std::regex re("compiled fashion in ([0-9]+) ms[^\n]*kept 7 tensors");
  REQUIRE(std::regex_search(r.out, m, re));
  double ms = std::stod(m[1]);
  std::cout << "flagship head swap recompiled in " << ms << " ms\n";
  // Only the new head's kernels are built; the trunk's and footwear's are reused machine code.
  std::regex kernels("compiled fashion in [0-9]+ ms[^\n]*; ([0-9]+) kernels built, ([0-9]+) reused\\)[^\n]*kept 7");
  REQUIRE(std::regex_search(r.out, m, kernels));
  CHECK(std::stoi(m[1]) > 0);
  CHECK(std::stoi(m[2]) > std::stoi(m[1]));
  CHECK(ms < 3000);  // ~100-300 ms on an idle machine; generous for loaded CI
}

TEST_CASE("on a terminal: prompt, tab completion of commands and names, history saved") {
  auto home = workDir() / "home";
  fs::create_directories(home);
  fs::remove(home / ".mtlc_history");
  int master = -1;
  winsize ws{};
  ws.ws_row = 40;
  ws.ws_col = 120;  // libedit does not edit in a 0x0 terminal
  pid_t pid = forkpty(&master, nullptr, nullptr, &ws);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("HOME", home.c_str(), 1);
    setenv("TERM", "xterm", 1);
    unsetenv("MTLC_HISTORY");
    execl(MTLC_BINARY, "mtlc", "repl", example("tabular.mtl").c_str(), (char *)nullptr);
    _exit(127);
  }
  std::string seen;
  // Reads until `want` appears after position `from` (or 20 s pass).
  auto waitFor = [&](const std::string &want, size_t from) {
    auto t0 = std::chrono::steady_clock::now();
    while (seen.find(want, from) == std::string::npos) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(20)) return false;
      fd_set fds;
      FD_ZERO(&fds);
      FD_SET(master, &fds);
      timeval tv{0, 200000};
      if (select(master + 1, &fds, nullptr, nullptr, &tv) > 0) {
        char buf[4096];
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) return false;
        seen.append(buf, size_t(n));
      }
    }
    return true;
  };
  // libedit (re)configures the terminal when a prompt starts reading: give it a moment, so that
  // typed-ahead keys are not dropped.
  auto send = [&](const std::string &s) {
    usleep(300000);
    REQUIRE(write(master, s.data(), s.size()) == ssize_t(s.size()));
  };

  bool prompt = waitFor("mtl> ", 0);
  INFO("terminal:\n" << seen);
  REQUIRE(prompt);
  CHECK(seen.find("compiled tabular in") != std::string::npos);
  size_t mark = seen.size();
  send(":he\t");  // completes to :help
  send("\r");
  CHECK(waitFor("list the commands", mark));
  CHECK(waitFor("mtl> ", seen.find("list the commands", mark)));
  mark = seen.size();
  send(":show tru\t");  // completes a declared name
  send("\r");  // libedit echoes only the completed part ("nk "): the result proves it
  CHECK(waitFor("used by: task cls", mark));
  mark = seen.size();
  send("task flag {\r");  // a continuation prompt while the brace is open
  CHECK(waitFor("...> ", mark));
  size_t cont = seen.size();
  send("  trunk -> dense(4) -> relu -> dense(1)\r");
  CHECK(waitFor("...> ", cont));
  cont = seen.size();
  send("  loss bce\r");
  CHECK(waitFor("...> ", cont));
  send("}\r");
  CHECK(waitFor("kept", mark));
  mark = seen.size();
  send(":quit\r");
  int status = 0;
  for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; ++i) {
    // Keep draining the terminal so the child never blocks on a full buffer.
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(master, &fds);
    timeval tv{0, 100000};
    char buf[4096];
    if (select(master + 1, &fds, nullptr, nullptr, &tv) > 0 && read(master, buf, sizeof buf) <= 0)
      usleep(100000);
  }
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL("the REPL did not exit after :quit");
  }
  close(master);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::string history = slurp(home / ".mtlc_history");
  CHECK(history.find(":help") != std::string::npos);
  // libedit's history file escapes blanks as \040.
  CHECK((history.find(":show trunk") != std::string::npos ||
         history.find(":show\\040trunk") != std::string::npos));
}

TEST_CASE(":set threads=N is a session setting: checked, needs no model, training follows it") {
  Result r = runScript(":set threads=2\n"
                       ":set threads=many\n"
                       ":load " + example("tabular.mtl") + "\n"
                       ":set threads=1\n"
                       ":train 3 steps\n");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 1);  // the bad value
  CHECK(r.out.find("threads = 2\n") != std::string::npos);
  CHECK(r.err.find(":set threads takes a count from 0 (every CPU) to 1024, not 'many'") != std::string::npos);
  CHECK(r.out.find("threads = 1\n") != std::string::npos);
  CHECK(r.out.find("trained 3 steps") != std::string::npos);
}

namespace {

// examples/tabular.mtl with its data paths absolute, the trunk's `from` replaced by `to`.
std::string tabularVariant(const std::string &from, const std::string &to) {
  std::string text = slurp(example("tabular.mtl"));
  auto replace = [&](const std::string &a, const std::string &b) {
    size_t at = text.find(a);
    REQUIRE(at != std::string::npos);
    text.replace(at, a.size(), b);
  };
  replace("csv(\"tabular.csv\")", "csv(\"" + example("tabular.csv") + "\")");
  replace("csv(\"tabular_test.csv\")", "csv(\"" + example("tabular_test.csv") + "\")");
  if (!from.empty()) replace(from, to);
  return text;
}

fs::path writeFile(const std::string &name, const std::string &text) {
  fs::path p = workDir() / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// Every tensor of two checkpoints equal bit for bit (parameters and optimizer state).
// The tensors of the session's :save `a` (parameters, optimizer and weighting state) as in `b`.
void requireSameTensors(const std::string &a, const std::string &b) {
  auto x = mtlc::rt::readSafeTensors(a), y = mtlc::rt::readSafeTensors(b);
  REQUIRE(!x.tensors.empty());
  for (const auto &t : x.tensors) {
    INFO("tensor " << t.name);
    const auto *u = y.find(t.name);
    REQUIRE(u);
    REQUIRE(u->data.size() == t.data.size());
    CHECK(std::memcmp(u->data.data(), t.data.data(), t.data.size() * sizeof(float)) == 0);
  }
}

void requireSameCheckpoint(const std::string &a, const std::string &b) {
  REQUIRE(mtlc::rt::readSafeTensors(a).tensors.size() == mtlc::rt::readSafeTensors(b).tensors.size());
  requireSameTensors(a, b);
}

// The table program with `train` settings added and the data paths made absolute.
std::string tabularWith(const std::string &name, const std::string &settings) {
  std::string text = slurp(example("tabular.mtl"));
  text.replace(text.find("  shuffle   false"), 0, settings);
  for (const char *csv : {"tabular.csv", "tabular_test.csv"})
    text.replace(text.find(std::string("\"") + csv + "\""), std::strlen(csv) + 2, "\"" + example(csv) + "\"");
  const fs::path p = workDir() / name;
  std::ofstream(p) << text;
  return p.string();
}

}  // namespace

// Adaptive weightings and `accumulate` train in a hidden rt::train run that resumes from the
// session's position: two :train commands continue the warm-up, the schedule (63 steps an epoch:
// the second command crosses into epoch 2) and the groups as one longer `mtlc train` does.
TEST_CASE(":train twice through rt::train continues warm-up and schedule as one longer run") {
  struct Case {
    const char *name, *program, *set, *steps, *whole;  // `whole`: the settings of the one `mtlc train`
    int total;
  };
  for (const Case &c :
       {Case{"uncertainty", "  weighting uncertainty\n",
             ":set warmup=50\n:set schedule=step(every=1, gamma=0.5)\n:set lr_scale=trunk=0.5\n",
             ":train 40 steps\n:train 60 steps\n",
             "  weighting uncertainty\n  warmup 50\n  schedule step(every=1, gamma=0.5)\n  lr_scale trunk=0.5\n", 100},
        Case{"accumulate", "", ":set accumulate=2\n:set warmup=10\n:set schedule=exponential(gamma=0.7)\n",
             ":train 20 steps\n:train 25 steps\n", "  accumulate 2\n  warmup 10\n  schedule exponential(gamma=0.7)\n",
             45}})
    DYNAMIC_SECTION(c.name) {
      const std::string base = tabularWith(std::string("cont-base-") + c.name + ".mtl", c.program);
      const std::string whole = tabularWith(std::string("cont-all-") + c.name + ".mtl", c.whole);
      const fs::path dir = workDir();
      const std::string session = (dir / (std::string("cont-repl-") + c.name + ".safetensors")).string(),
                        run = (dir / (std::string("cont-run-") + c.name + ".safetensors")).string();
      Result r = runScript(std::string(c.set) + c.steps + ":save " + session + "\n", "'" + base + "'");
      INFO("repl:\n" << r.out << r.err);
      REQUIRE(r.exitCode == 0);
      CHECK(r.out.find(std::to_string(c.total) + " steps in all") != std::string::npos);
      const std::string cmd = "'" MTLC_BINARY "' train '" + whole + "' -q --steps " + std::to_string(c.total) +
                              " --save '" + run + "' >/dev/null";
      REQUIRE(std::system(cmd.c_str()) == 0);
      requireSameTensors(session, run);
    }
}

TEST_CASE("after :set batch the kernels are those of a fresh session at that batch: training agrees bit for bit") {
  // issue #22.1: the kernel cache reused kernels built for batch 64 at batch 1000 ("0 kernels
  // built"), and two steps then differed from a fresh session by up to 0.02.
  const std::string trunk = "features -> dense(64) -> relu -> dense(32) -> relu";
  const std::string wide = "features -> dense(256) -> relu -> dense(128) -> relu";
  std::string text = tabularVariant(trunk, wide);
  fs::path at64 = writeFile("wide64.mtl", text);
  std::string t1000 = text;
  t1000.replace(t1000.find("batch     32"), 12, "batch     1000");
  fs::path at1000 = writeFile("wide1000.mtl", t1000);
  {
    std::string s = slurp(at64);
    s.replace(s.find("batch     32"), 12, "batch     64");
    writeFile("wide64.mtl", s);
  }
  auto dir = workDir();
  std::string start = (dir / "wide-start.safetensors").string(), viaSet = (dir / "wide-set.safetensors").string(),
              fresh = (dir / "wide-fresh.safetensors").string();
  Result r0 = runScript(":load " + at1000.string() + "\n:save " + start + "\n");
  REQUIRE(r0.exitCode == 0);
  Result a = runScript(":load " + at64.string() + "\n:set threads=1\n:set batch=1000\n:init " + start +
                       "\n:train 2 steps\n:save " + viaSet + "\n");
  Result b = runScript(":load " + at1000.string() + "\n:set threads=1\n:init " + start + "\n:train 2 steps\n:save " +
                       fresh + "\n");
  INFO("via :set:\n" << a.out << a.err << "\nfresh:\n" << b.out << b.err);
  REQUIRE(a.exitCode == 0);
  REQUIRE(b.exitCode == 0);
  // The recompile at batch 1000 builds the kernels whose code depends on the batch.
  std::smatch m;
  REQUIRE(std::regex_search(a.out, m, std::regex("compiled tabular in [^\n]*; ([0-9]+) kernels? built[^\n]*kept 14")));
  CHECK(std::stoi(m[1]) > 0);
  requireSameCheckpoint(viaSet, fresh);
}

TEST_CASE(":predict refuses embedding indices the C API refuses") {
  std::string script = ":predict click 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 19, 49\n"
                       ":predict click 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 20, 3\n"
                       ":predict click 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 2, nan\n"
                       ":predict click 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 2.5, 3\n"
                       ":predict click 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -1, 3\n";
  Result r = runScript(script, "'" + example("recsys.mtl") + "'");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 1);
  CHECK(count(r.out, "click: p=") == 1);  // only the valid sample is run
  CHECK(r.err.find("error: input `group` value 0 is 20, not an index in [0, 20)") != std::string::npos);
  CHECK(r.err.find("error: input `category` value 0 is nan, not an index in [0, 50)") != std::string::npos);
  CHECK(r.err.find("error: input `group` value 0 is 2.5, not an index in [0, 20)") != std::string::npos);
  CHECK(r.err.find("error: input `group` value 0 is -1, not an index in [0, 20)") != std::string::npos);
}

TEST_CASE("`model NAME` may be the first line typed") {
  std::string script = "model mine\n"
                       "input features : f32[8]\n"
                       "shared trunk = features -> dense(16) -> relu\n"
                       "task cls { trunk -> dense(3)  loss cross_entropy }\n";
  Result r = runScript(script);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 0);
  CHECK(r.err.find("(not added") == std::string::npos);
  CHECK(r.out.find("compiled mine in") != std::string::npos);
}

TEST_CASE(":load of a file with errors keeps the working model") {
  fs::path bad = writeFile("bad.mtl", tabularVariant("-> dense(32) -> relu", "-> dense(32) -> reluu"));
  std::string script = ":train 3 steps\n"
                       ":load " + bad.string() + "\n"
                       ":train 2 steps\n"
                       ":show\n";
  Result r = runScript(script, "'" + example("tabular.mtl") + "'");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 1);  // the bad file fails the script
  CHECK(r.err.find("unknown layer 'reluu'") != std::string::npos);
  CHECK(r.err.find("(not loaded: the session keeps its model)") != std::string::npos);
  CHECK(r.out.find("trained 2 steps") != std::string::npos);
  CHECK(r.out.find("5 steps in all") != std::string::npos);  // the same model, trained on
  CHECK(r.out.find(example("tabular.mtl") + ":") != std::string::npos);  // :show: the old file's declarations
}

TEST_CASE(":init of a partly matching checkpoint loads what matches and reports the rest, as --init does") {
  auto dir = workDir();
  std::string ckpt = (dir / "tabular-init.safetensors").string();
  Result saved = runScript(":train 2 steps\n:save " + ckpt + "\n", "'" + example("tabular.mtl") + "'");
  REQUIRE(saved.exitCode == 0);
  // Another model: cls has another hidden layer, flag a wider one; trunk and target match.
  fs::path other = writeFile("other.mtl", tabularVariant("trunk -> dense(3)", "trunk -> dense(8) -> relu -> dense(3)"));
  {
    std::string s = slurp(other);
    s.replace(s.find("trunk -> dense(16) -> relu -> dense(1)"), 38, "trunk -> dense(12) -> relu -> dense(1)");
    writeFile("other.mtl", s);
  }
  Result r = runScript(":init " + ckpt + "\n:train 1 steps\n", "'" + other.string() + "'");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 0);
  CHECK(r.out.find("loaded 9 of 16 parameters from " + ckpt) != std::string::npos);
  CHECK(r.out.find("init: loaded trunk.0.weight [64, 8], trunk.0.bias [64]") != std::string::npos);
  CHECK(r.out.find("init: kept the session's values of cls.0.weight") != std::string::npos);
  CHECK(r.out.find("flag.0.weight (checkpoint [16, 32], model [12, 32])") != std::string::npos);
  CHECK(r.out.find("init: not used from the checkpoint: ") != std::string::npos);
  CHECK(r.out.find("trained 1 step") != std::string::npos);
}

TEST_CASE(":train with an adaptive weighting shows the session's summary, not a hidden run's internals") {
  Result r = runScript(":set weighting=uncertainty\n:train 3 steps\n:train 2 steps\n", "'" + example("tabular.mtl") + "'");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 0);
  CHECK(r.out.find("weighting uncertainty: 3 steps, loss (cls ") != std::string::npos);
  CHECK(r.out.find("trained 3 steps in ") != std::string::npos);
  CHECK(r.out.find("5 steps in all") != std::string::npos);
  for (const char *internal : {"1000000", "/tmp/mtlc-repl", "samples/s", "epoch 1/", "saved "}) {
    INFO(internal);
    CHECK(r.out.find(internal) == std::string::npos);
    CHECK(r.err.find(internal) == std::string::npos);
  }
}

TEST_CASE("a long session of redefinitions holds the live model's kernels, not every program's") {
  std::string script;
  for (int width = 5; width <= 12; ++width) {
    script += "task cls { trunk -> dense(" + std::to_string(width) + ") -> relu -> dense(3)  loss cross_entropy }\n";
    if (width == 6 || width == 12) script += ":time\n";
  }
  Result r = runScript(script, "'" + example("tabular.mtl") + "'");
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exitCode == 0);
  std::regex loaded("kernels: +([0-9]+) loaded");
  std::vector<int> counts;
  for (std::sregex_iterator it(r.out.begin(), r.out.end(), loaded), end; it != end; ++it) counts.push_back(std::stoi((*it)[1]));
  REQUIRE(counts.size() == 2);
  CHECK(counts[1] <= counts[0]);  // six more head widths later, no more kernels than after two
}

namespace {

// `mtlc repl ARGS` on a pseudo-terminal of its own (a new session: Ctrl-C typed into it signals
// the REPL alone).
struct Terminal {
  int master = -1;
  pid_t pid = -1;
  std::string seen;

  Terminal(const fs::path &home, const std::string &file) {
    winsize ws{};
    ws.ws_row = 40;
    ws.ws_col = 120;
    pid = forkpty(&master, nullptr, nullptr, &ws);
    REQUIRE(pid >= 0);
    if (pid == 0) {
      setenv("HOME", home.c_str(), 1);
      setenv("TERM", "xterm", 1);
      unsetenv("MTLC_HISTORY");
      execl(MTLC_BINARY, "mtlc", "repl", file.c_str(), (char *)nullptr);
      _exit(127);
    }
  }
  ~Terminal() {
    if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (master >= 0) close(master);
  }
  // Reads until `want` appears after position `from` (or `seconds` pass).
  bool waitFor(const std::string &want, size_t from, int seconds = 20) {
    auto t0 = std::chrono::steady_clock::now();
    while (seen.find(want, from) == std::string::npos) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(seconds)) return false;
      fd_set fds;
      FD_ZERO(&fds);
      FD_SET(master, &fds);
      timeval tv{0, 200000};
      if (select(master + 1, &fds, nullptr, nullptr, &tv) > 0) {
        char buf[4096];
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) return false;
        seen.append(buf, size_t(n));
      }
    }
    return true;
  }
  // libedit (re)configures the terminal when a prompt starts reading: a moment first, so that
  // typed-ahead keys are not dropped.
  void send(const std::string &s) {
    usleep(300000);
    REQUIRE(write(master, s.data(), s.size()) == ssize_t(s.size()));
  }
  // The exit status once the REPL ends (draining its output meanwhile), or -1 after 10 s.
  int exitStatus() {
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      waitFor("\x01never\x01", seen.size(), 0);
      usleep(100000);
    }
    return -1;
  }
};

}  // namespace

TEST_CASE("on a terminal: Ctrl-C stops :train after its step and keeps the model, or clears the line; "
          "history is saved as lines are entered") {
  auto home = workDir() / "home-interrupt";
  fs::create_directories(home);
  fs::remove(home / ".mtlc_history");
  Terminal term(home, example("tabular.mtl"));
  INFO("terminal:\n" << term.seen);
  REQUIRE(term.waitFor("mtl> ", 0));
  size_t mark = term.seen.size();
  term.send(":train 100000000 steps\r");  // hours: only Ctrl-C ends it
  REQUIRE(term.waitFor("epoch 1", mark));  // the progress line: training runs
  usleep(500000);
  // Written while the session runs, not only on :quit.
  std::string history = slurp(home / ".mtlc_history");
  CHECK((history.find(":train 100000000 steps") != std::string::npos ||
         history.find(":train\\040100000000\\040steps") != std::string::npos));
  mark = term.seen.size();
  term.send("\x03");
  REQUIRE(term.waitFor("interrupted (Ctrl-C) after ", mark));
  REQUIRE(term.waitFor("mtl> ", mark));
  std::smatch m;
  REQUIRE(std::regex_search(term.seen, m, std::regex("interrupted \\(Ctrl-C\\) after ([0-9]+) of 100000000 steps")));
  const long done = std::stol(m[1]);
  CHECK(done > 0);
  // The model kept the steps: one more step counts on from them.
  mark = term.seen.size();
  term.send(":train 1 steps\r");
  REQUIRE(term.waitFor("steps in all", mark));
  CHECK(term.seen.find(std::to_string(done + 1) + " steps in all", mark) != std::string::npos);
  // At the prompt: the typed text goes, a new prompt comes; in a declaration, all of it goes.
  REQUIRE(term.waitFor("mtl> ", mark));
  mark = term.seen.size();
  term.send("task broken {");
  term.send("\x03");
  REQUIRE(term.waitFor("mtl> ", mark));
  mark = term.seen.size();
  term.send("task flag {\r");
  REQUIRE(term.waitFor("...> ", mark));
  term.send("  trunk -> dense(4) -> relu -> dense(1)");
  term.send("\x03");
  REQUIRE(term.waitFor("mtl> ", mark));
  mark = term.seen.size();
  term.send(":show\r");
  REQUIRE(term.waitFor("task    target", mark));
  CHECK(term.seen.find("broken", mark) == std::string::npos);
  mark = term.seen.size();
  term.send(":show flag\r");
  REQUIRE(term.waitFor("used by", mark));
  CHECK(term.seen.find("dense(16) -> relu -> dense(1)", mark) != std::string::npos);  // unchanged
  term.send(":quit\r");
  CHECK(term.exitStatus() == 0);
}

TEST_CASE(":set schedule and :set warmup: the session's own loop trains at the step's rate") {
  // Two steps of sgd(lr=0.1) with `warmup 2` train at 0.05, then 0.1: as a session that sets
  // those rates by hand.
  auto dir = workDir();
  const std::string start = (dir / "lr-start.safetensors").string(), warm = (dir / "lr-warm.safetensors").string(),
                    byHand = (dir / "lr-hand.safetensors").string(), program = "'" + example("tabular.mtl") + "'";
  REQUIRE(runScript(":save " + start + "\n", program).exitCode == 0);
  Result a = runScript(":set optimizer=sgd(lr=0.1)\n:set warmup=2\n:set schedule=exponential(gamma=0.5)\n:init " + start +
                           "\n:train 2 steps\n:save " + warm + "\n:set schedule=cosin\n",
                       program);
  Result b = runScript(":set optimizer=sgd(lr=0.05)\n:init " + start + "\n:train 1 steps\n:set lr=0.1\n:train 1 steps\n:save " +
                           byHand + "\n",
                       program);
  INFO("warm-up:\n" << a.out << a.err << "\nby hand:\n" << b.out << b.err);
  CHECK(a.exitCode == 1);  // the misspelt schedule, after the rest
  REQUIRE(b.exitCode == 0);
  CHECK(a.err.find("unknown schedule 'cosin'; did you mean 'cosine'?") != std::string::npos);
  requireSameCheckpoint(warm, byHand);
}
