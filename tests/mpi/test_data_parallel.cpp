// Data-parallel training through the real binary under Open MPI's mpirun (loopback, oversubscribed):
// the per-step losses of `mpirun -np N mtlc train` must match the single-process run, and a
// failing or killed rank must end the whole job promptly with an error.
#include "runtime/io/SafeTensors.h"
#include "tests/driver/Run.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <random>
#include <thread>
#include <unistd.h>

namespace {

// 403 rows (16 batches of 25 and one of 3: uneven slices on every rank count), 6 features, three
// tasks; some `flag` and `value` labels are missing, so slices hold different present counts.
void writeData(const std::filesystem::path &dir) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::ofstream train(dir / "train.csv");
  train << "a,b,c,d,e,g,kind,flag,value\n";
  for (int i = 0; i < 403; ++i) {
    double x[6];
    for (double &v : x) v = u(rng);
    const double s = x[0] + x[1] - 0.5 * x[2];
    const int kind = s < -0.4 ? 0 : (s < 0.4 ? 1 : 2);
    for (double v : x) train << v << ',';
    train << kind << ',';
    if (i % 7 != 3) train << int(x[3] * x[4] > 0);  // an empty cell is a missing label
    train << ',';
    if (i % 5 != 1) train << std::sin(2 * x[5]) + 0.5 * x[0];
    train << '\n';
  }
}

std::string program(const std::string &weighting) {
  return R"(model dp
input x : f32[6]
shared trunk = x -> dense(32) -> relu -> dense(16) -> relu
task kind  { trunk -> dense(3)  loss cross_entropy  metric accuracy }
task flag  { trunk -> dense(8) -> relu -> dense(1)  loss bce  weight 0.5  metric accuracy, auc }
task value { trunk -> dense(1)  loss mse  weight 2.0  metric mae }
train {
  optimizer adam(lr=0.01)
  batch 25
  epochs 100
  seed 5
  weighting )" + weighting + R"(
}
data {
  train csv("train.csv")
  x     = columns(0..5)
  kind  = kind
  flag  = flag
  value = value
}
)";
}

// Open MPI refuses root without these; the tests run as whoever runs CTest.
void allowRoot() {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
}

// A fresh test directory with the data and the program (`weighting` in its train block).
std::filesystem::path setUp(const std::string &name, const std::string &weighting) {
  allowRoot();
  const auto dir = testDir(name);
  writeData(dir);
  std::ofstream(dir / "dp.mtl") << program(weighting);
  return dir;
}

const std::string kMpirun = std::string("'" MPIEXEC "' --oversubscribe --bind-to none ");

struct Timed {
  int exitCode = -1;
  double seconds = 0;
  std::string out, err;
};

// Runs a shell command (its stdout and stderr captured) under `timeout`, so a hang fails the test
// (exit 124) rather than CTest's whole run.
Timed runShell(const std::string &cmd, const std::filesystem::path &dir, int limitSeconds) {
  static int counter = 0;
  const auto out = dir / ("out" + std::to_string(counter) + ".txt");
  const auto err = dir / ("err" + std::to_string(counter++) + ".txt");
  const std::string full = "cd '" + dir.string() + "' && timeout " + std::to_string(limitSeconds) + " " + cmd +
                           " >'" + out.string() + "' 2>'" + err.string() + "' </dev/null";
  const auto start = std::chrono::steady_clock::now();
  const int status = std::system(full.c_str());
  Timed r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFEXITED(status)) r.exitCode = WEXITSTATUS(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::vector<nlohmann::json> steps(const std::filesystem::path &log) {
  std::vector<nlohmann::json> s;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step")) s.push_back(j);
  }
  return s;
}

double relative(double a, double b, double floor) { return std::fabs(a - b) / std::max(std::fabs(a), floor); }

}  // namespace

TEST_CASE("mpirun -np N matches the single-process run step by step") {
  // The gradient summed in shared memory (the default on one machine) and through MPI
  // (MTLC_GRADIENT_SUM=mpi, what ranks on several machines use). The last row: ranks × kernel
  // threads (the recommended layout, one rank per machine with N threads) against one process on
  // as many threads.
  auto [weighting, ranks, threads, sum] = GENERATE(table<std::string, int, int, std::string>(
      {{"fixed", 2, 1, "shared"},
       {"fixed", 3, 1, "shared"},
       {"fixed", 2, 1, "mpi"},
       {"fixed", 3, 1, "mpi"},
       {"pcgrad", 2, 1, "shared"},
       {"mgda", 2, 1, "shared"},
       {"fixed", 2, 2, "shared"}}));
  const auto dir = setUp("mpi_" + weighting + "_" + std::to_string(ranks) + "x" + std::to_string(threads) + "_" + sum,
                         weighting);
  const std::string train =
      std::string("'" MTLC_BINARY "' train dp.mtl --steps 40 -q --threads ") + std::to_string(threads) + " ";

  const Timed single = runShell(train + "--log single.jsonl --save single.safetensors", dir, 120);
  REQUIRE(single.exitCode == 0);
  const Timed dp = runShell(kMpirun + "-x MTLC_GRADIENT_SUM=" + sum + " -np " + std::to_string(ranks) + " " + train +
                                "--log dp.jsonl --save dp.safetensors",
                            dir, 120);
  INFO(dp.err);
  REQUIRE(dp.exitCode == 0);
  CHECK(dp.out.find("data-parallel: " + std::to_string(ranks) + " ranks") != std::string::npos);
  CHECK((dp.out.find("gradients summed in shared memory") != std::string::npos) == (sum == "shared"));

  const auto a = steps(dir / "single.jsonl"), b = steps(dir / "dp.jsonl");
  REQUIRE(a.size() == 40);
  REQUIRE(b.size() == 40);  // rank 0 alone writes the log
  double worstTotal = 0, worstTask = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worstTotal = std::max(worstTotal, relative(a[i]["loss"], b[i]["loss"], 1e-12));
    for (const char *t : {"kind", "flag", "value"}) {
      worstTask = std::max(worstTask, relative(a[i]["tasks"][t]["loss"], b[i]["tasks"][t]["loss"], 1e-3));
      // Every rank computes the same weights (gradient-based ones from the reduced gradients).
      CHECK(relative(a[i]["tasks"][t]["weight"], b[i]["tasks"][t]["weight"], 1e-3) < 1e-4);
    }
  }
  INFO("worst relative difference: total " << worstTotal << ", per task " << worstTask);
  CHECK(worstTotal < 1e-5);
  CHECK(worstTask < 1e-5);
  // It trained (the class task's loss; mgda's total moves with its weights).
  CHECK(a.back()["tasks"]["kind"]["loss"].get<double>() < 0.7 * a.front()["tasks"]["kind"]["loss"].get<double>());

  // Rank 0's checkpoint holds the parameters the single process reached.
  auto p = mtlc::rt::readSafeTensors((dir / "single.safetensors").string());
  auto q = mtlc::rt::readSafeTensors((dir / "dp.safetensors").string());
  double worstParam = 0;
  for (const auto &t : p.tensors) {
    if (t.name.rfind("optim.", 0) == 0 || t.name.rfind("mtl.", 0) == 0) continue;
    const auto *u = q.find(t.name);
    REQUIRE(u);
    for (size_t k = 0; k < t.data.size(); ++k) worstParam = std::max(worstParam, relative(t.data[k], u->data[k], 1e-2));
  }
  INFO("worst relative parameter difference " << worstParam);
  CHECK(worstParam < 1e-4);
}

TEST_CASE("a data-parallel checkpoint resumes on another rank count, as if never stopped") {
  const auto dir = setUp("mpi_resume", "pcgrad");
  const std::string train = std::string("'" MTLC_BINARY "' train dp.mtl -q ");
  REQUIRE(runShell(train + "--steps 50 --log single.jsonl", dir, 120).exitCode == 0);
  std::filesystem::remove(dir / "ck.safetensors");
  // 30 steps on 2 ranks (rank 0 checkpoints every 10), then on to step 50 on 3 ranks.
  const Timed first = runShell(kMpirun + "-np 2 " + train + "--steps 30 --checkpoint-every 10 --save ck.safetensors "
                                         "--log dp.jsonl", dir, 120);
  INFO(first.err);
  REQUIRE(first.exitCode == 0);
  const Timed second = runShell(kMpirun + "-np 3 " + train + "--steps 50 --resume ck.safetensors --save ck.safetensors "
                                          "--log dp.jsonl", dir, 120);
  INFO(second.err);
  REQUIRE(second.exitCode == 0);
  CHECK(second.out.find("resumed from ck.safetensors at step 30") != std::string::npos);
  const auto a = steps(dir / "single.jsonl"), b = steps(dir / "dp.jsonl");
  REQUIRE(a.size() == 50);
  REQUIRE(b.size() == 50);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(b[i]["step"] == a[i]["step"]);
    worst = std::max(worst, relative(a[i]["loss"], b[i]["loss"], 1e-12));
  }
  INFO("worst relative difference " << worst);
  CHECK(worst < 1e-5);
}

// patience and --save-best in a data-parallel job: rank 0 validates, writes the best file and
// tells every rank when to stop; the job stops early at the single-process run's epoch.
TEST_CASE("patience and --save-best under mpirun stop every rank at the single-process run's epoch") {
  allowRoot();
  const auto dir = testDir("mpi_patience");
  writeData(dir);
  std::string text = program("fixed");
  text.replace(text.find("  weighting"), 0, "  validation 0.25\n  patience 2\n  select kind.accuracy\n");
  text.replace(text.find("adam(lr=0.01)"), 13, "adam(lr=0.05)");
  std::ofstream(dir / "dp.mtl") << text;
  const std::string train = std::string("'" MTLC_BINARY "' train dp.mtl -q ");
  const Timed single = runShell(train + "--save-best single_best.safetensors", dir, 300);
  INFO(single.out << single.err);
  REQUIRE(single.exitCode == 0);
  const size_t stop = single.out.find("early stop: ");
  REQUIRE(stop != std::string::npos);  // the test needs a run that stops early
  const Timed dp = runShell(kMpirun + "-np 2 " + train + "--save-best dp_best.safetensors", dir, 300);
  INFO(dp.out << dp.err);
  REQUIRE(dp.exitCode == 0);
  auto line = [](const std::string &out, const std::string &start) {
    const size_t at = out.find(start);
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  };
  CHECK(line(dp.out, "early stop: ") == line(single.out, "early stop: "));
  CHECK(line(dp.out, "best epoch ") == line(single.out, "best epoch "));
  CHECK(line(dp.out, "trained ").substr(0, 14) == line(single.out, "trained ").substr(0, 14));
  CHECK(std::filesystem::exists(dir / "dp_best.safetensors"));
}

TEST_CASE("a rank that fails ends the whole job with its error") {
  const auto dir = setUp("mpi_fail", "fixed");
  // MPMD: rank 1 alone is given a train file that does not exist; rank 0 goes on to the
  // broadcast of the initial parameters and would wait there forever.
  const std::string train = std::string("'" MTLC_BINARY "' train dp.mtl -q");
  SECTION("an error in its data") {
    // The header is right (the program's check reads it), a row is not (found when training starts).
    std::ifstream in(dir / "train.csv");
    std::string header;
    std::getline(in, header);
    std::ofstream(dir / "bad.csv") << header << "\nnot-a-row\n";
    const Timed r = runShell(kMpirun + "-np 1 " + train + " : -np 1 " + train + " --data train=bad.csv", dir, 60);
    INFO(r.err);
    CHECK(r.exitCode == 1);
    CHECK(r.err.find("mtlc: error: rank 1 of 2: bad.csv:2: expected") != std::string::npos);
    CHECK(r.err.find("rank 0 of 2: the job was aborted") != std::string::npos);
  }
  SECTION("an error in its program (a diagnostic, not an exception)") {
    std::string text = program("fixed");
    text.replace(text.find("dense(32)"), 9, "dense(3x)");
    std::ofstream(dir / "bad.mtl") << text;
    const Timed r = runShell(kMpirun + "-np 1 " + train + " : -np 1 '" MTLC_BINARY "' train bad.mtl -q", dir, 60);
    INFO(r.err);
    CHECK(r.exitCode == 1);
    // The location, whole or split: mpirun forwards the ranks' stderr in chunks and may print its
    // MPI_ABORT note between two writes of one diagnostic line.
    CHECK(r.err.find("bad.mtl") != std::string::npos);
    CHECK(r.err.find(":3:28: error: expected ',' or ')' after layer arguments") != std::string::npos);
    CHECK(r.err.find("mtlc: error: rank 1 of 2 failed (exit status 1): ending the job") != std::string::npos);
  }
}

TEST_CASE("killing one rank mid-run ends the job with an error within seconds; its checkpoint resumes") {
  const auto dir = setUp("mpi_kill", "fixed");
  const std::string mark = std::to_string(getpid());
  setenv("MTLC_TEST_JOB", mark.c_str(), 1);  // mpirun passes it on: tells our ranks from others
  std::filesystem::remove(dir / "kill.jsonl");
  std::filesystem::remove(dir / "ck.safetensors");
  const pid_t job = fork();
  REQUIRE(job >= 0);
  if (job == 0) {
    const std::string cmd = "cd '" + dir.string() + "' && exec " + kMpirun + "-np 2 '" MTLC_BINARY
                            "' train dp.mtl --epochs 100000 -q --log kill.jsonl --checkpoint-every 5 --save ck.safetensors "
                            ">kill.out 2>kill.err </dev/null";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *)nullptr);
    _exit(127);
  }
  using clock = std::chrono::steady_clock;
  auto waitExit = [&](double limit, int &status) {
    const auto start = clock::now();
    while (std::chrono::duration<double>(clock::now() - start).count() < limit) {
      if (waitpid(job, &status, WNOHANG) == job) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  // Rank 1: a process whose environment has our mark and OMPI_COMM_WORLD_RANK=1.
  auto findRank1 = [&]() -> pid_t {
    DIR *proc = opendir("/proc");
    pid_t found = 0;
    while (dirent *d = readdir(proc)) {
      const pid_t pid = pid_t(std::atoi(d->d_name));
      if (pid <= 0) continue;
      const std::string env = slurp(std::filesystem::path("/proc") / d->d_name / "environ");
      auto has = [&](const std::string &kv) { return env.find(std::string(1, '\0') + kv + '\0') != std::string::npos; };
      if (has("MTLC_TEST_JOB=" + mark) && has("OMPI_COMM_WORLD_RANK=1")) found = pid;
    }
    closedir(proc);
    return found;
  };
  // Wait until training runs (a few steps logged), then kill rank 1 outright.
  int status = 0;
  bool training = false;
  for (int i = 0; i < 600 && !training; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    training = steps(dir / "kill.jsonl").size() >= 5;
  }
  const pid_t rank1 = training ? findRank1() : 0;
  if (!training || rank1 <= 0) {
    kill(job, SIGKILL);
    waitpid(job, &status, 0);
    FAIL("the job did not start training (or rank 1 was not found): " << slurp(dir / "kill.err"));
  }
  REQUIRE(kill(rank1, SIGKILL) == 0);
  const auto killed = clock::now();
  const bool ended = waitExit(30, status);
  const double seconds = std::chrono::duration<double>(clock::now() - killed).count();
  if (!ended) {
    kill(job, SIGKILL);
    waitpid(job, &status, 0);
  }
  const std::string err = slurp(dir / "kill.err");
  INFO(err);
  REQUIRE(ended);
  CHECK(seconds < 10);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
  CHECK(err.find("rank 1") != std::string::npos);
  CHECK(err.find("exited on signal 9") != std::string::npos);                   // mpirun names the lost rank
  CHECK(err.find("rank 0 of 2: the job was aborted") != std::string::npos);     // the survivor says why it stops

  // The last checkpoint (written atomically every 5 steps) is whole and resumes on 1 and 3 ranks.
  REQUIRE(std::filesystem::exists(dir / "ck.safetensors"));
  const std::string more = std::to_string(steps(dir / "kill.jsonl").size() + 5);
  const std::string resume = "'" MTLC_BINARY "' train dp.mtl -q --resume ck.safetensors --steps " + more;
  for (const std::string &launch : {std::string(), kMpirun + "-np 3 "}) {
    const Timed r = runShell(launch + resume, dir, 120);
    INFO(launch << resume << "\n" << r.err);
    CHECK(r.exitCode == 0);
    CHECK(r.out.find("resumed from ck.safetensors at step") != std::string::npos);
  }
}

// Open MPI backs the shared gradient arenas with a file in /dev/shm; where /dev/shm is too small
// (a container's 64 MiB default against a large model) the ranks must sum through MPI, not die of
// SIGBUS. A private mount namespace with a 1 MiB /dev/shm stands in (needs root: skipped without).
TEST_CASE("a /dev/shm too small for the shared gradient falls back to the MPI sum") {
  const auto dir = setUp("mpi_small_shm", "fixed");
  if (runShell("unshare -m true", dir, 30).exitCode != 0) {
    WARN("unshare -m is not permitted here: skipped");
    return;
  }
  const std::string train = "'" MTLC_BINARY "' train dp.mtl --steps 40 -q --threads 1 ";
  REQUIRE(runShell(train + "--log single.jsonl", dir, 120).exitCode == 0);
  const Timed dp = runShell("unshare -m sh -c \"mount -t tmpfs -o size=1m tmpfs /dev/shm && " + kMpirun +
                                "--mca btl self,tcp -np 2 " + train + "--log dp.jsonl\"",
                            dir, 120);
  INFO(dp.out << dp.err);
  REQUIRE(dp.exitCode == 0);
  CHECK(dp.err.find("less than the") != std::string::npos);
  CHECK(dp.err.find("summing gradients through MPI") != std::string::npos);
  CHECK(dp.out.find("gradients summed in shared memory") == std::string::npos);
  const auto a = steps(dir / "single.jsonl"), b = steps(dir / "dp.jsonl");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(relative(a[i]["loss"], b[i]["loss"], 1e-12) < 1e-5);
}

TEST_CASE("only `mtlc train` runs under an MPI launcher") {
  // What a launcher sets; `mtlc MODEL` (compile only) must not pretend to be one of N processes.
  const auto dir = testDir("mpi_other");
  std::ofstream(dir / "dp.mtl") << program("fixed");
  const Timed r = runShell("env OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 '" MTLC_BINARY "' dp.mtl", dir, 60);
  CHECK(r.exitCode == 1);
  CHECK(r.err.find("started by an MPI launcher with 2 processes: only `mtlc train MODEL.mtl` runs data-parallel") !=
        std::string::npos);
}

// Batchnorm: each rank normalises with its slice's statistics (as PyTorch DDP without
// SyncBatchNorm), and the running statistics are rank 0's on every rank after each step, so the
// ranks stay one model (the per-epoch check that every rank's parameters equal rank 0's passes)
// and the checkpoint holds running statistics that moved.
TEST_CASE("a model with batchnorm trains data-parallel, running statistics kept in step") {
  const auto dir = setUp("mpi_batchnorm", "fixed");
  std::string text = program("fixed");
  const std::string from = "x -> dense(32) -> relu", to = "x -> dense(32) -> batchnorm -> relu";
  text.replace(text.find(from), from.size(), to);
  std::ofstream(dir / "bn.mtl") << text;
  const Timed dp = runShell(kMpirun + "-np 2 '" MTLC_BINARY "' train bn.mtl --epochs 3 -q --save bn.safetensors", dir, 120);
  INFO(dp.err);
  REQUIRE(dp.exitCode == 0);
  auto ck = mtlc::rt::readSafeTensors((dir / "bn.safetensors").string());
  const auto *mean = ck.find("trunk.1.running_mean");
  REQUIRE(mean);
  double moved = 0;
  for (float v : mean->data) moved = std::max(moved, double(std::fabs(v)));
  CHECK(moved > 1e-3);
}
