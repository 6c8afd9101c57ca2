// The safetensors format (https://github.com/huggingface/safetensors), F32 tensors only:
//
//   [8 bytes]  N, little-endian uint64: the length of the JSON header
//   [N bytes]  JSON: { "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]},
//                      ..., "__metadata__": {"key": "string value", ...} (optional) }
//              padded with spaces so that the data starts 8-byte aligned
//   [rest]     the tensors' bytes, little-endian, row-major; offsets count from the start of this
//              part; the tensors tile it exactly (no gaps, no overlaps), in header order here.
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
};

// Reads and validates a file: the header length against the file size, the JSON, every dtype
// (F32 only: an Error names the tensor and its dtype), shapes against offsets, offsets in range
// and tiling the data. Throws Error("PATH: ...").
TensorFile readSafeTensors(const std::string& path);

// Writes atomically: a temporary file in the same directory, fsync, rename over `path`.
void writeSafeTensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

std::string shapeString(const std::vector<int64_t>& shape);  // "[10, 64]"

}  // namespace mtlc::rt
