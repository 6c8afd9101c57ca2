#include "runtime/io/SafeTensors.h"

#include "runtime/Error.h"
#include "runtime/io/File.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <sys/stat.h>
#include <set>
#include <unistd.h>

namespace mtlc::rt {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

using ojson = nlohmann::ordered_json;

std::string shapeString(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

const Tensor* TensorFile::find(const std::string& name) const {
  for (const Tensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

TensorFile readSafeTensors(const std::string& path) {
  std::vector<uint8_t> bytes = readFileBytes(path);
  if (bytes.size() < 8) throwError("{}: not a safetensors file: {} bytes, too short for the header length", path, bytes.size());
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8 || n > (uint64_t(100) << 20))
    throwError("{}: not a safetensors file: header length {} does not fit the file size {}", path, n, bytes.size());
  ojson header;
  try {
    header = ojson::parse(bytes.begin() + 8, bytes.begin() + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    throwError("{}: the safetensors header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object()) throwError("{}: the safetensors header is not a JSON object", path);
  const uint64_t dataSize = bytes.size() - 8 - n;
  const uint8_t* data = bytes.data() + 8 + n;

  TensorFile f;
  struct Span { uint64_t begin, end; std::string name; };
  std::vector<Span> spans;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throwError("{}: __metadata__ must be an object of strings", path);
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string()) throwError("{}: __metadata__ value for `{}` is not a string", path, k);
        f.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throwError("{}: tensor `{}`: expected an object with dtype, shape and data_offsets", path, name);
    const auto& dtype = entry["dtype"];
    if (!dtype.is_string()) throwError("{}: tensor `{}`: dtype is not a string", path, name);
    if (dtype.get<std::string>() != "F32")
      throwError("{}: tensor `{}` has dtype {}; mtlc reads F32 tensors only", path, name, dtype.get<std::string>());
    Tensor t;
    t.name = name;
    uint64_t count = 1;
    const auto& shape = entry["shape"];
    if (!shape.is_array()) throwError("{}: tensor `{}`: shape is not a list", path, name);
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) throwError("{}: tensor `{}`: shape {} has a non-integer or negative dimension", path, name, shape.dump());
      t.shape.push_back(d.get<int64_t>());
      count *= d.get<uint64_t>();
      if (count > dataSize) break;  // cannot fit; reported below
    }
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throwError("{}: tensor `{}`: data_offsets must be two non-negative integers", path, name);
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > dataSize)
      throwError("{}: tensor `{}`: data_offsets [{}, {}] lie outside the {}-byte data section", path, name, begin, end, dataSize);
    if (end - begin != count * 4)
      throwError("{}: tensor `{}`: shape {} needs {} bytes, data_offsets [{}, {}] give {}", path, name,
                 shapeString(t.shape), count * 4, begin, end, end - begin);
    t.data.resize(count);
    if (count) std::memcpy(t.data.data(), data + begin, count * 4);
    spans.push_back({begin, end, name});
    f.tensors.push_back(std::move(t));
  }
  // The tensors must tile the data section exactly, as the reference implementation demands.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  for (const Span& s : spans) {
    if (s.begin != at)
      throwError("{}: tensor `{}` starts at byte {} of the data section, expected {} ({})", path, s.name, s.begin,
                 at, s.begin < at ? "it overlaps the previous tensor" : "there is a gap");
    at = s.end;
  }
  if (at != dataSize) throwError("{}: the data section has {} bytes, the tensors cover {}", path, dataSize, at);
  return f;
}

void writeSafeTensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson meta = ojson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t at = 0;
  std::set<std::string> names;
  for (const TensorView& t : tensors) {
    if (!names.insert(t.name).second) throwError("{}: tensor `{}` would be written twice", path, t.name);
    uint64_t count = 1;
    for (int64_t d : t.shape) count *= uint64_t(d);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {at, at + count * 4}}};
    at += count * 4;
  }
  std::string json = header.dump();
  while ((8 + json.size()) % 8) json += ' ';  // data 8-byte aligned
  uint64_t n = json.size();

  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string tmpl = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  int fd = mkstemp(tmpl.data());
  if (fd < 0) throwError("{}: cannot create a temporary file in {}: {}", path, dir.string(), std::strerror(errno));
  auto fail = [&](const char* what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    throwError("{}: {}: {}", path, what, std::strerror(err));
  };
  auto put = [&](const void* p, size_t size) {
    const char* c = static_cast<const char*>(p);
    while (size) {
      ssize_t w = ::write(fd, c, size);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      c += w;
      size -= size_t(w);
    }
  };
  put(&n, 8);
  put(json.data(), json.size());
  for (const TensorView& t : tensors) {
    uint64_t count = 1;
    for (int64_t d : t.shape) count *= uint64_t(d);
    if (count) put(t.data, count * 4);
  }
  if (::fchmod(fd, 0644) != 0) fail("chmod failed");
  if (::fsync(fd) != 0) fail("fsync failed");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    throwError("{}: close failed: {}", path, std::strerror(err));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    throwError("{}: cannot rename the temporary file into place: {}", path, std::strerror(err));
  }
  // Make the rename itself durable.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace mtlc::rt
