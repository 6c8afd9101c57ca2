// Runs the mtlc binary in a shell and captures its exit status, stdout and stderr.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

struct RunResult {
  int exitCode = -1;   // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path &p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::filesystem::path testDir(const std::string &name) {
  auto dir = std::filesystem::path(MTLC_BINARY_DIR) / "test-work" / name;
  std::filesystem::create_directories(dir);
  return dir;
}

// `args` is appended to the binary's path as shell words (quote them yourself); `env` goes before
// it (`PATH=/nowhere`).
inline RunResult runMtlc(const std::string &args, const std::string &cwd = ".", const std::string &env = "") {
  static int counter = 0;
  auto dir = testDir("runs");
  auto out = dir / ("out" + std::to_string(counter) + ".txt");
  auto err = dir / ("err" + std::to_string(counter++) + ".txt");
  std::string cmd = "cd '" + cwd + "' && " + env + " '" MTLC_BINARY "' " + args + " >'" + out.string() +
                    "' 2>'" + err.string() + "' </dev/null";
  int status = std::system(cmd.c_str());
  RunResult r;
  if (WIFEXITED(status)) r.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

inline std::string writeFile(const std::string &name, const std::string &text) {
  auto p = testDir("files") / name;
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

inline std::string example(const std::string &name) {
  return std::string(MTLC_SOURCE_DIR) + "/examples/" + name;
}
