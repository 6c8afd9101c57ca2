// Runs the mtlc binary in a shell and captures its exit status, stdout and stderr.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <vector>

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

// A per-pixel program on csv columns: a [1, 4, 4] image, a class index per pixel (3 classes by
// brightness) and a depth per pixel.
inline std::string densePixelProgram() {
  std::ostringstream csv;
  for (int c = 0; c < 48; ++c) csv << (c ? "," : "") << "c" << c;
  csv << "\n";
  uint32_t state = 7;
  auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0; };
  for (int row = 0; row < 96; ++row) {
    std::vector<double> x(16);
    for (double &v : x) v = next();
    for (int i = 0; i < 16; ++i) csv << (i ? "," : "") << x[i];
    for (int i = 0; i < 16; ++i) csv << "," << (x[i] < 0.33 ? 0 : x[i] < 0.66 ? 1 : 2);
    for (int i = 0; i < 16; ++i) csv << "," << 2 * x[i] + 0.5;
    csv << "\n";
  }
  const std::string data = writeFile("dense_pixels.csv", csv.str());
  return writeFile("dense_pixels.mtl",
                   "model dense\ninput image : f32[1, 4, 4]\n"
                   "shared trunk = image -> conv2d(4, kernel=3, padding=1) -> relu\n"
                   "task seg { trunk -> conv2d(3, kernel=3, padding=1) loss cross_entropy metric pixel_accuracy, miou }\n"
                   "task depth { trunk -> conv2d(1, kernel=3, padding=1) loss l1 metric abs_err, rel_err }\n"
                   "train { optimizer adam(lr=0.02) batch 16 epochs 3 seed 1 }\n"
                   "data { train csv(\"" + data + "\") test csv(\"" + data + "\") image = columns(0..15)\n"
                   "       seg = columns(16..31) depth = columns(32..47) }\n");
}
