// Dispatch from a SourceSpec to the reader for its kind, and `--data` paths to SourceSpecs.
#include "runtime/data/Dataset.h"
#include "spec/Error.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace mtlc::rt {

FloatStore FloatStore::view(std::shared_ptr<const void> mapping, const float* values, size_t count, int fd,
                            uint64_t fileOffset) {
  FloatStore s;
  s.mapping_ = std::move(mapping);
  s.view_ = reinterpret_cast<const unsigned char*>(values);
  s.viewCount_ = count;
  s.fd_ = fd;
  s.fileOffset_ = fileOffset;
  return s;
}

bool FloatStore::readFloats(size_t first, size_t count, float* out) const {
  if (!mapping_) {
    std::memcpy(out, owned_.data() + first, count * sizeof(float));
    return true;
  }
  auto* to = reinterpret_cast<char*>(out);
  size_t left = count * sizeof(float);
  off_t at = off_t(fileOffset_ + first * sizeof(float));
  while (left > 0) {
    const ssize_t n = pread(fd_, to, left, at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // the file is shorter than when it was opened
      return false;
    }
    to += n, at += n, left -= size_t(n);
  }
  return true;
}

HugeFloats& FloatStore::own() {
  if (mapping_) {
    owned_.resize(viewCount_);
    if (viewCount_) std::memcpy(owned_.data(), view_, viewCount_ * sizeof(float));
    mapping_.reset();
    view_ = nullptr;
    viewCount_ = 0;
  }
  return owned_;
}

bool operator==(const FloatStore& a, const FloatStore& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

const Field* Table::find(const std::string& name) const {
  for (const Field& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

std::string Table::fieldNames() const {
  std::string s;
  for (const Field& f : fields) s += (s.empty() ? "" : ", ") + f.name;
  return s;
}

static std::string rowPosition(const std::string& origin, const std::vector<int64_t>& lines, int64_t row) {
  if (row >= 0 && row < int64_t(lines.size())) return fmt::format("{}:{}", origin, lines[row]);
  return fmt::format("{}: sample {}", origin, row);
}

std::string Table::rowPos(int64_t row) const { return rowPosition(origin, rowLine, row); }
std::string Dataset::rowPos(int64_t row) const { return rowPosition(origin, rowLine, row); }

namespace {

void wantArgs(const SourceSpec& s, size_t lo, size_t hi) {
  if (s.args.size() < lo || s.args.size() > hi)
    throwError("source {}(...) takes {} string argument{}, got {}", s.kind,
               lo == hi ? fmt::format("{}", lo) : fmt::format("{} to {}", lo, hi), hi == 1 ? "" : "s",
               s.args.size());
}

double option(const SourceSpec& s, const std::string& name, double fallback) {
  auto it = s.options.find(name);
  return it == s.options.end() ? fallback : it->second;
}

}  // namespace

Table loadSource(const SourceSpec& s, const std::string& split, const std::vector<std::string>& wanted,
                 bool progress) {
  if (s.kind == "csv") {
    wantArgs(s, 1, 1);
    return readCsv(s.args[0]);
  }
  if (s.kind == "npz") {
    wantArgs(s, 1, 1);
    return readNpz(s.args[0], wanted, progress);
  }
  if (s.kind == "npy") {
    wantArgs(s, 1, 1);
    return readNpy(s.args[0]);
  }
  if (s.kind == "idx") {
    wantArgs(s, 2, 2);
    return readIdx(s.args[0], s.args[1]);
  }
  if (s.kind == "fashion_mnist") {
    wantArgs(s, 1, 2);
    return fashionMnist(s.args[0], s.args.size() > 1 ? s.args[1] : "");
  }
  if (s.kind == "multi_fashion") {
    wantArgs(s, 1, 2);
    return multiFashion(s.args[0], s.args.size() > 1 ? s.args[1] : "");
  }
  if (s.kind == "multi_fashion_dense") {
    wantArgs(s, 1, 2);
    return multiFashionDense(s.args[0], s.args.size() > 1 ? s.args[1] : "");
  }
  if (s.kind == "synthetic_mmoe") {
    wantArgs(s, 0, 0);
    double samples = option(s, "samples", 12000), dim = option(s, "dim", 100);
    double corr = option(s, "correlation", 0.5), seed = option(s, "seed", 0);
    if (samples < 1 || dim < 2 || corr < -1 || corr > 1 || seed < 0)
      throwError("synthetic_mmoe: need samples >= 1, dim >= 2, -1 <= correlation <= 1, seed >= 0");
    return syntheticMmoe(corr, int64_t(samples), int64_t(dim), uint64_t(seed), split);
  }
  if (s.kind.empty()) throwError("no data source given");
  throwError("unknown data source `{}` (known: fashion_mnist, idx, csv, npz, npy, multi_fashion, multi_fashion_dense, synthetic_mmoe)", s.kind);
}

}  // namespace mtlc::rt
