// The safetensors format (https://github.com/huggingface/safetensors), F32 tensors, and I64 ones
// (PyTorch's integer buffers, batchnorm's num_batches_tracked) read and written as floats:
//
//   [8 bytes]  N, little-endian uint64: the length of the JSON header
//   [N bytes]  JSON: { "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]},
//                      ..., "__metadata__": {"key": "string value", ...} (optional) }
//              padded with spaces so that the data starts 8-byte aligned
//   [rest]     the tensors' bytes, little-endian, row-major; offsets count from the start of this
//              part; the tensors tile it exactly (no gaps, no overlaps), in header order here.
//
// The one reader and writer of the format: the trainer's checkpoints (io/SafeTensors, which adds
// gzip, std types and exceptions) and the embedded runtime both call these. No allocation besides
// malloc, no exceptions: a failure is a Status and a message "PATH: ..." in the Failure's buffer.
#pragma once

#include "runtime/core/Status.h"
#include "runtime/core/Text.h"

#include <cstddef>
#include <cstdint>

namespace mtlc::core {

constexpr int kMaxTensorRank = 8;           // tensors of higher rank are refused as malformed
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

struct TensorEntry {
  char *name;                       // owned (malloc)
  int64_t shape[kMaxTensorRank];
  int rank;
  const unsigned char *data;        // into the parsed bytes (unaligned: read with memcpy)
  int64_t count;                    // elements
  bool i64 = false;                 // dtype I64 (else F32): read it with readFloats
};

// The tensor's `count` elements as floats (an I64 tensor converted), into `out`.
void readFloats(const TensorEntry &t, float *out);

struct MetadataEntry {
  char *key, *value;                // owned (malloc)
};

// The tensors and metadata of a parsed file; the tensors' data points into the parsed bytes,
// which must outlive the table.
struct TensorTable {
  List<TensorEntry> tensors;        // in header order
  List<MetadataEntry> metadata;     // in header order
  TensorTable() = default;
  TensorTable(const TensorTable &) = delete;
  TensorTable &operator=(const TensorTable &) = delete;
  ~TensorTable();
  const TensorEntry *find(const char *name) const;
  const char *metadataValue(const char *key) const;  // nullptr when absent
};

// Parses and validates a file's bytes: the header length against the size, the JSON, every dtype
// (F32 or I64), shapes against offsets, offsets in range and tiling the data section. `path` only
// names the file in messages.
Status parseSafeTensors(const unsigned char *bytes, size_t size, const char *path, TensorTable &table, Failure &f);

// What to write: a name, a shape and prod(shape) floats (not copied).
struct TensorView {
  const char *name;
  const int64_t *shape;
  int rank;
  const float *data;
  bool i64 = false;  // written as I64 (the floats hold integers: num_batches_tracked)
};
struct MetadataPair {
  const char *key, *value;
};

// Writes atomically: a temporary file in the same directory, fsync, rename over `path`, fsync of
// the directory. The header lists the metadata first, keys sorted (byte order), then the tensors
// in the given order. Two tensors of one name are refused.
Status writeSafeTensors(const char *path, const TensorView *tensors, size_t count, const MetadataPair *metadata,
                        size_t metadataCount, Failure &f);

// "[10, 64]": a shape as the messages print it.
void appendShape(Text &out, const int64_t *shape, int rank);

// Tensors of a checkpoint that hold state rather than parameters: the optimizer's `optim.`, the
// loss weighting's `mtl.`, and where a run stood, `train.` (the AUC's score buffers of a mid-epoch
// checkpoint, for instance).
bool isStateTensor(const char *name);

}  // namespace mtlc::core
