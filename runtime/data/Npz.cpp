// The npz and npy sources: NumPy arrays as fields. Every array whose first dimension is the sample
// count is a field of its remaining shape, flattened row-major ([N, 1, 28, 28] → width 784), read
// into f32: floats rounded to f32 (float16 and float32 exactly), integers and bools exactly (an
// integer f32 cannot hold exactly, beyond 2^24, is an error). 0-d arrays are not fields.
//
// The archive's directory and headers come from spec/NpzFiles.h (minizip). A stored member's bytes
// are read where they lie in the memory-mapped file: a little-endian f32 array in row-major order
// is used in place (FloatStore::view: the Batcher preads its rows), any other is converted once, chunk by chunk, its pages
// dropped again. A deflated member is decompressed in chunks and converted as it comes (its CRC
// is checked at the end), with progress on a terminal for big ones.
#include "runtime/data/Dataset.h"
#include "runtime/io/Progress.h"
#include "spec/Error.h"
#include "spec/NpzFiles.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>

namespace mtlc::rt {
namespace {

// ---- the file and the archive ---------------------------------------------------------------------

// The whole file, mapped read-only, and its descriptor (views' rows are read with pread);
// unmapped and closed when the last view of it dies.
struct Mapping {
  const uint8_t* base = nullptr;
  size_t size = 0;
  int fd = -1;
  ~Mapping() {
    if (base) munmap(const_cast<uint8_t*>(base), size);
    if (fd >= 0) close(fd);
  }
};

// `shownAs`: the path as the user wrote it, for messages.
std::shared_ptr<const Mapping> mapFile(const std::string& path, const std::string& shownAs) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throwError("{}: cannot open: {}", shownAs, std::strerror(errno));
  struct stat st{};
  auto m = std::make_shared<Mapping>();
  m->fd = fd;  // closed by ~Mapping, also on the errors below
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) throwError("{}: not a regular file", shownAs);
  m->size = size_t(st.st_size);
  if (m->size > 0) {
    void* p = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throwError("{}: cannot map: {}", shownAs, std::strerror(errno));
    m->base = static_cast<const uint8_t*>(p);
  }
  return m;
}

// Drops the pages of [p, p + n) from this process (they were only read): a converted member's
// source bytes do not stay resident next to their floats.
void dropPages(const uint8_t* p, size_t n) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t lo = (uintptr_t(p) + page - 1) / page * page, hi = (uintptr_t(p) + n) / page * page;
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

// ---- conversion to f32 ----------------------------------------------------------------------------

// Where each element of the source (in its file order) goes in the [samples, width] field: for C
// order, where it is; for Fortran order (the first index varies fastest), a walk over the shape.
class Placement {
 public:
  explicit Placement(const NpyArrayInfo& a) : shape_(a.shape) {
    int nontrivial = 0;
    for (int64_t d : shape_) nontrivial += d > 1;
    rowMajor_ = !a.fortranOrder || nontrivial <= 1;
    if (rowMajor_) return;
    // C-order strides of the destination: dimension k's step.
    stride_.assign(shape_.size(), 1);
    for (size_t k = shape_.size() - 1; k > 0; --k) stride_[k - 1] = stride_[k] * shape_[k];
    index_.assign(shape_.size(), 0);
  }
  bool rowMajor() const { return rowMajor_; }
  // The destination of the next source element (Fortran order only).
  int64_t next() {
    const int64_t at = dest_;
    for (size_t k = 0; k < shape_.size(); ++k) {  // the first index varies fastest
      dest_ += stride_[k];
      if (++index_[k] < shape_[k]) break;
      dest_ -= stride_[k] * shape_[k];
      index_[k] = 0;
    }
    return at;
  }

 private:
  std::vector<int64_t> shape_, stride_, index_;
  int64_t dest_ = 0;
  bool rowMajor_ = true;
};

template <class T>
T loadElement(const uint8_t* p, bool swap) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swap) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, NaN (its payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: m · 2^-24, normal in f32
    int shift = 0;
    uint32_t m = mantissa;
    while (!(m & 0x400)) m <<= 1, ++shift;
    bits = sign | (uint32_t(113 - shift) << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Whether an integer of this magnitude is an f32 exactly: its significant bits fit in 24.
bool exactInF32(uint64_t magnitude) {
  if (magnitude < (uint64_t(1) << 24)) return true;
  return (magnitude >> __builtin_ctzll(magnitude)) < (uint64_t(1) << 24);
}

// Converts a member's elements, given in chunks of whole elements, into a field's floats.
class Converter {
 public:
  Converter(const NpyArrayInfo& a, const std::string& where, float* out)
      : a_(a), where_(where), out_(out), place_(a), swap_(a.bigEndian && a.itemBytes > 1) {}

  void add(const uint8_t* p, size_t count) {
    for (size_t i = 0; i < count; ++i, ++done_, p += a_.itemBytes) {
      const float v = element(p);
      out_[place_.rowMajor() ? done_ : uint64_t(place_.next())] = v;
    }
  }

 private:
  const NpyArrayInfo& a_;
  const std::string& where_;
  float* out_;
  Placement place_;
  bool swap_;
  uint64_t done_ = 0;

  template <class T>
  float integer(const uint8_t* p) {
    const T v = loadElement<T>(p, swap_);
    const uint64_t magnitude = v < 0 ? uint64_t(0) - uint64_t(v) : uint64_t(v);
    if (!exactInF32(magnitude))
      throwError("{}: element {} is {}, an integer f32 cannot hold exactly (all up to 2^24 = 16777216 are)",
                 where_, done_, v);
    return float(v);
  }
  float element(const uint8_t* p) {
    switch (a_.kind) {
      case NpyKind::Float:
        if (a_.itemBytes == 2) return halfToFloat(loadElement<uint16_t>(p, swap_));
        if (a_.itemBytes == 4) return loadElement<float>(p, swap_);
        return float(loadElement<double>(p, swap_));
      case NpyKind::Bool: return p[0] ? 1.0f : 0.0f;
      case NpyKind::Signed:
        switch (a_.itemBytes) {
          case 1: return float(int8_t(p[0]));
          case 2: return float(loadElement<int16_t>(p, swap_));
          case 4: return integer<int32_t>(p);
          default: return integer<int64_t>(p);
        }
      case NpyKind::Unsigned:
        switch (a_.itemBytes) {
          case 1: return float(p[0]);
          case 2: return float(loadElement<uint16_t>(p, swap_));
          case 4: return integer<uint32_t>(p);
          default: return integer<uint64_t>(p);
        }
    }
    return 0;
  }
};

// Whether the member's bytes are the field's floats as they are: f32, little-endian, row-major.
bool usableInPlace(const NpyArrayInfo& a) {
  return a.kind == NpyKind::Float && a.itemBytes == 4 && !a.bigEndian && Placement(a).rowMajor();
}

// Converted stored members are read in chunks of this many bytes; a deflated member this big or
// bigger shows progress on a terminal.
constexpr size_t kChunkBytes = size_t(4) << 20;
constexpr uint64_t kProgressBytes = uint64_t(64) << 20;

// Decompresses member `m` and converts its elements into `out`.
void readDeflated(NpzArchive& archive, const NpzMember& m, float* out, bool progress) {
  Converter convert(m.info, m.where, out);
  const uint64_t total = m.info.elementCount();
  const bool show = progress && total * uint64_t(m.info.itemBytes) >= kProgressBytes && Progress::stderrIsTty();
  uint64_t done = 0;
  int shownPercent = -1;
  archive.readElements(m, [&](const uint8_t* bytes, size_t count) {
    convert.add(bytes, count);
    done += count;
    const int percent = int(done * 100 / total);
    if (show && percent != shownPercent) {
      std::cerr << fmt::format("\rreading {}: {}% of {} MiB", m.where, percent,
                               (total * uint64_t(m.info.itemBytes)) >> 20) << std::flush;
      shownPercent = percent;
    }
  });
  if (show) std::cerr << "\r\033[K" << std::flush;
}

int64_t perSampleWidth(const NpyArrayInfo& a) {
  int64_t w = 1;
  for (size_t k = 1; k < a.shape.size(); ++k) w *= a.shape[k];
  return w;
}

// The field of one array whose .npy stream starts at `npy` in the mapped file `file`.
Field mappedField(const std::shared_ptr<const Mapping>& file, const uint8_t* npy, const NpyArrayInfo& a,
                  const std::string& where) {
  Field f;
  f.name = a.name;
  f.width = perSampleWidth(a);
  const uint8_t* bytes = npy + a.dataOffset;
  const size_t count = size_t(a.elementCount());
  if (usableInPlace(a)) {
    f.data = FloatStore::view(file, reinterpret_cast<const float*>(bytes), count, file->fd,
                              uint64_t(bytes - file->base));
    return f;
  }
  // Converted chunk by chunk, each chunk's pages dropped once read: the archive's pages never
  // stay resident next to the floats.
  HugeFloats values(count);
  Converter convert(a, where, values.data());
  const size_t item = size_t(a.itemBytes), perChunk = kChunkBytes / item;
  for (size_t done = 0; done < count; done += perChunk) {
    const size_t n = std::min(perChunk, count - done);
    convert.add(bytes + done * item, n);
    dropPages(bytes + done * item, n * item);
  }
  f.data = std::move(values);
  return f;
}

// Throws unless every name in `wanted` is an array of `members`.
void checkWanted(const std::vector<NpyArrayInfo>& arrays, const std::vector<std::string>& wanted,
                 const std::string& path) {
  std::vector<std::string> names;
  for (const NpyArrayInfo& a : arrays)
    if (!a.shape.empty()) names.push_back(a.name);
  for (const std::string& w : wanted)
    if (std::find(names.begin(), names.end(), w) == names.end())
      throwError("{}: no array `{}` (arrays with a sample dimension: {})", path, w, fmt::join(names, ", "));
}

}  // namespace

Table readNpz(const std::string& path, const std::vector<std::string>& wanted, bool progress) {
  NpzArchive archive(path, path);
  std::vector<NpyArrayInfo> arrays;
  for (const NpzMember& m : archive.members()) arrays.push_back(m.info);
  Table t;
  t.origin = path;
  t.minusOneUnlabelled = true;
  t.rows = npzSampleCount(arrays, path);
  checkWanted(arrays, wanted, path);
  std::shared_ptr<const Mapping> file;
  for (const NpzMember& m : archive.members()) {
    const NpyArrayInfo& a = m.info;
    if (a.shape.empty()) continue;
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), a.name) == wanted.end()) continue;
    if (m.stored) {
      if (!file) file = mapFile(path, path);
      if (m.fileOffset > file->size || file->size - m.fileOffset < m.npyBytes)
        throwError("{}: truncated archive: the member's {} bytes at offset {} run past the end ({} bytes)", m.where,
                   m.npyBytes, m.fileOffset, file->size);
      t.fields.push_back(mappedField(file, file->base + m.fileOffset, a, m.where));
    } else {
      HugeFloats values(size_t(a.elementCount()));
      readDeflated(archive, m, values.data(), progress);
      t.fields.push_back(Field{a.name, perSampleWidth(a), std::move(values)});
    }
  }
  return t;
}

Table readNpy(const std::string& path) {
  std::shared_ptr<const Mapping> file = mapFile(path, path);
  NpyArrayInfo a = parseNpyHeader({reinterpret_cast<const char*>(file->base), file->size}, path);
  a.name = "data";
  checkNpyFileSize(a, file->size, path);
  if (a.shape.empty()) throwError("{}: a 0-d array has no sample dimension", path);
  Table t;
  t.origin = path;
  t.minusOneUnlabelled = true;
  t.rows = a.shape[0];
  t.fields.push_back(mappedField(file, file->base, a, path));
  return t;
}

}  // namespace mtlc::rt
