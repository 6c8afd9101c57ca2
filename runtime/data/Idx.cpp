// The IDX format (LeCun's MNIST files): a 4-byte magic {0, 0, dtype, ndims}, ndims big-endian
// uint32 dimension sizes, then the elements, big-endian, row-major.
//   dtype 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64.
// Images [N, d1, d2, ...] become `pixels` [N, d1*d2*...]: u8 values are scaled by 1/255 into
// [0, 1]; other dtypes are kept as they are. Labels [N] (or [N, 1]) become `label` [N, 1].
#include "runtime/data/Dataset.h"
#include "spec/Error.h"
#include "runtime/io/File.h"

#include <cstring>

namespace mtlc::rt {
namespace {

struct IdxArray {
  std::vector<int64_t> dims;
  HugeFloats values;
};

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// Reads element i of a big-endian array of the given dtype as float.
float element(const uint8_t* p, uint8_t dtype) {
  switch (dtype) {
    case 0x08: return float(p[0]);
    case 0x09: return float(int8_t(p[0]));
    case 0x0B: return float(int16_t(uint16_t((p[0] << 8) | p[1])));
    case 0x0C: return float(int32_t(be32(p)));
    case 0x0D: { uint32_t u = be32(p); float f; std::memcpy(&f, &u, 4); return f; }
    case 0x0E: {
      uint64_t u = (uint64_t(be32(p)) << 32) | be32(p + 4);
      double d;
      std::memcpy(&d, &u, 8);
      return float(d);
    }
  }
  return 0;
}

int elementSize(uint8_t dtype) {
  switch (dtype) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
  }
  return 0;
}

IdxArray readIdxArray(const std::string& path, bool scaleU8) {
  std::vector<uint8_t> b = readMaybeGzip(path);
  if (b.size() < 4) throwError("{}: not an IDX file: {} bytes, shorter than the 4-byte magic", path, b.size());
  if (b[0] != 0 || b[1] != 0)
    throwError("{}: not an IDX file: magic starts {:02x} {:02x}, expected 00 00", path, b[0], b[1]);
  uint8_t dtype = b[2], ndims = b[3];
  int esize = elementSize(dtype);
  if (!esize)
    throwError("{}: unknown IDX element type 0x{:02x} (expected 08 u8, 09 i8, 0B i16, 0C i32, 0D f32 or 0E f64)",
               path, dtype);
  if (ndims < 1) throwError("{}: IDX file has 0 dimensions", path);
  size_t headerBytes = 4 + 4 * size_t(ndims);
  if (b.size() < headerBytes)
    throwError("{}: truncated IDX header: {} dimensions need {} bytes, file has {}", path, ndims,
               headerBytes, b.size());
  IdxArray a;
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    uint32_t n = be32(&b[4 + 4 * d]);
    a.dims.push_back(n);
    count *= n;
    if (count > (uint64_t(1) << 40)) throwError("{}: IDX dimensions are implausibly large", path);
  }
  uint64_t want = headerBytes + count * esize;
  if (b.size() < want)
    throwError("{}: truncated IDX data: dimensions {} need {} bytes, file has {}", path,
               fmt::join(a.dims, "x"), want, b.size());
  if (b.size() > want)
    throwError("{}: {} unexpected bytes after the IDX data (dimensions {})", path, b.size() - want,
               fmt::join(a.dims, "x"));
  a.values.resize(count);
  const uint8_t* p = b.data() + headerBytes;
  if (dtype == 0x08) {
    const float scale = scaleU8 ? 1.0f / 255.0f : 1.0f;
    for (uint64_t i = 0; i < count; ++i) a.values[i] = float(p[i]) * scale;
  } else {
    for (uint64_t i = 0; i < count; ++i) a.values[i] = element(p + i * esize, dtype);
  }
  return a;
}

}  // namespace

Table readIdx(const std::string& imagesPath, const std::string& labelsPath) {
  IdxArray images = readIdxArray(imagesPath, /*scaleU8=*/true);
  IdxArray labels = readIdxArray(labelsPath, /*scaleU8=*/false);
  int64_t n = images.dims[0];
  if (labels.dims.size() > 2 || (labels.dims.size() == 2 && labels.dims[1] != 1))
    throwError("{}: labels must have shape [N] or [N, 1], found [{}]", labelsPath,
               fmt::join(labels.dims, ", "));
  if (labels.dims[0] != n)
    throwError("{}: {} labels, but {} has {} images", labelsPath, labels.dims[0], imagesPath, n);
  Table t;
  t.origin = fmt::format("idx(\"{}\", \"{}\")", imagesPath, labelsPath);
  t.rows = n;
  int64_t width = 1;  // product of the per-sample dimensions: [N, 28, 28] -> 784
  for (size_t d = 1; d < images.dims.size(); ++d) width *= images.dims[d];
  t.fields.push_back(Field{"pixels", width, std::move(images.values)});
  t.fields.push_back(Field{"label", 1, std::move(labels.values)});
  return t;
}

}  // namespace mtlc::rt
