// fashion_mnist("train" | "test"): Zalando's Fashion-MNIST as Debian packages it
// (dataset-fashion-mnist): 60000 training and 10000 test images of 28x28 u8 pixels, labels 0..9.
#include "runtime/data/Dataset.h"
#include "spec/Error.h"

#include <cstdlib>
#include <filesystem>

namespace mtlc::rt {

std::string fashionMnistDir() {
  if (const char* env = std::getenv("MTLC_FASHION_MNIST_DIR"); env && *env) return env;
  return "/usr/share/datasets/fashion-mnist";
}

namespace {

// DIR/PREFIX-KIND-ubyte.gz, or without .gz, for the first prefix that exists.
std::string findIdxFile(const std::string& dir, const std::vector<std::string>& prefixes,
                        const std::string& kind) {
  for (const std::string& prefix : prefixes)
    for (const char* ext : {".gz", ""}) {
      std::string p = (std::filesystem::path(dir) / (prefix + "-" + kind + "-ubyte" + ext)).string();
      if (std::filesystem::exists(p)) return p;
    }
  throwError("{}: no {}-{}-ubyte(.gz) file (is the dataset-fashion-mnist package installed?)", dir,
             prefixes.front(), kind);
}

}  // namespace

Table fashionMnist(const std::string& split, const std::string& dirArg) {
  std::vector<std::string> prefixes;
  if (split == "train") prefixes = {"train"};
  else if (split == "test") prefixes = {"t10k", "test"};
  else throwError("fashion_mnist(\"{}\"): the split must be \"train\" or \"test\"", split);
  std::string dir = dirArg.empty() ? fashionMnistDir() : dirArg;
  std::string images = findIdxFile(dir, prefixes, "images-idx3");
  std::string labels = findIdxFile(dir, prefixes, "labels-idx1");
  Table t = readIdx(images, labels);
  if (dirArg.empty()) t.origin = fmt::format("fashion_mnist(\"{}\")", split);
  else t.origin = fmt::format("fashion_mnist(\"{}\", \"{}\")", split, dirArg);
  return t;
}

}  // namespace mtlc::rt
