#include "runtime/io/SafeTensors.h"

#include "spec/Error.h"
#include "runtime/core/SafeTensors.h"
#include "runtime/io/File.h"

#include <cstring>

namespace mtlc::rt {

namespace {

// Core failures become the trainer's exceptions; the message already names the file.
struct CoreFailure {
  char message[4096] = {};
  core::Failure failure{message, sizeof message};
  void check(core::Status st) const {
    if (st != core::Status::Ok) throw Error(message);
  }
};

}  // namespace

std::string shapeString(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

const Tensor* TensorFile::find(const std::string& name) const {
  for (const Tensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

TensorFile readSafeTensors(const std::string& path) {
  const std::vector<uint8_t> bytes = readFileBytes(path);
  core::TensorTable table;
  CoreFailure f;
  f.check(core::parseSafeTensors(bytes.data(), bytes.size(), path.c_str(), table, f.failure));
  TensorFile file;
  for (size_t i = 0; i < table.metadata.size; ++i) file.metadata[table.metadata[i].key] = table.metadata[i].value;
  file.tensors.reserve(table.tensors.size);
  for (size_t i = 0; i < table.tensors.size; ++i) {
    const core::TensorEntry& e = table.tensors[i];
    Tensor& t = file.tensors.emplace_back();
    t.name = e.name;
    t.shape.assign(e.shape, e.shape + e.rank);
    t.data.resize(size_t(e.count));
    core::readFloats(e, t.data.data());
  }
  return file;
}

void writeSafeTensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<core::TensorView> views;
  views.reserve(tensors.size());
  for (const TensorView& t : tensors)
    views.push_back({t.name.c_str(), t.shape.data(), int(t.shape.size()), t.data, t.i64});
  std::vector<core::MetadataPair> pairs;
  for (const auto& [key, value] : metadata) pairs.push_back({key.c_str(), value.c_str()});
  CoreFailure f;
  f.check(core::writeSafeTensors(path.c_str(), views.data(), views.size(), pairs.data(), pairs.size(), f.failure));
}

}  // namespace mtlc::rt
