// The trainer's safetensors API: std types, Errors, transparently gunzipped files. The format and
// its validation are runtime/core/SafeTensors.h's, the one reader and writer of the runtime.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mtlc::rt {

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct TensorFile {
  std::vector<Tensor> tensors;  // in header order
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;
};

// What to write: a name, a shape and a pointer to prod(shape) floats (not copied).
struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  bool i64 = false;  // written as I64 (integer-valued floats: batchnorm's num_batches_tracked)
};

// Reads and validates a file (core::parseSafeTensors): the header length against the file size,
// the JSON, every dtype (F32, or I64 converted to floats: an Error names the tensor and any other dtype), shapes against
// offsets, offsets in range and tiling the data. Throws Error("PATH: ...").
TensorFile readSafeTensors(const std::string& path);

// Writes atomically (core::writeSafeTensors): a temporary file in the same directory, fsync,
// rename over `path`; the metadata first in the header, then the tensors in the given order.
void writeSafeTensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

std::string shapeString(const std::vector<int64_t>& shape);  // "[10, 64]"

}  // namespace mtlc::rt
