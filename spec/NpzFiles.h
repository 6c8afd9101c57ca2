// NumPy's files without their data, for the compiler's checks of data bindings (sema reports a
// misspelt field or a shape that does not fit at the binding's line before anything is trained)
// and for the loader (runtime/data/Npz.cpp), which converts or maps the data.
//
// A .npy file (NumPy's format, numpy.lib.format, versions 1.0, 2.0 and 3.0): the magic
// "\x93NUMPY", a major and a minor version byte, the header's length (little-endian uint16 in
// version 1, uint32 in 2 and 3), then the header: a Python dict literal
//     {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
// padded with spaces and ended by '\n' (ASCII in versions 1 and 2, UTF-8 in 3), then the elements.
// A .npz file is a ZIP archive (np.savez: stored members, np.savez_compressed: deflate) of .npy
// members; the member `x.npy` is the array `x`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mtlc::rt {

// An array's element type: descr's kind and size. Anything else is refused when read.
enum class NpyKind { Float, Signed, Unsigned, Bool };

struct NpyArrayInfo {
  std::string name;               // the array's name: the member without ".npy"; "data" for a .npy
  std::string descr;              // as written: "<f4", "|u1", ">i8"
  NpyKind kind = NpyKind::Float;
  int itemBytes = 4;
  bool bigEndian = false;
  bool fortranOrder = false;
  std::vector<int64_t> shape;     // [samples, per-sample dims...]; empty for a 0-d array
  uint64_t dataOffset = 0;        // where the elements start in the .npy bytes
  uint64_t elementCount() const;  // the product of `shape`
};

// Parses the start of a .npy stream. `bytes` holds at least the preamble (npyPreambleBytes) and
// then as much as is available; `where` starts every message ("data.npz: member `x`").
// Throws Error for anything but a plain numeric array: a bad magic or version, a header that is
// not the dict above, a structured dtype, a pickled object array ('O'), an unsupported dtype.
NpyArrayInfo parseNpyHeader(std::string_view bytes, const std::string& where);
// The bytes before the header's text: 10 in version 1, 12 in versions 2 and 3; 0 when `bytes`
// (at least 8 of them) do not start a .npy stream. The header then ends at npyHeaderEnd.
size_t npyPreambleBytes(std::string_view bytes);
uint64_t npyHeaderEnd(std::string_view preamble);

// One member of an .npz archive, its header read: where its bytes are.
struct NpzMember {
  NpyArrayInfo info;
  std::string where;          // "data.npz: member `x.npy`", for messages
  bool stored = false;        // ZIP method 0 (np.savez); else deflate (np.savez_compressed)
  uint64_t npyBytes = 0;      // the whole .npy stream, uncompressed
  uint64_t fileOffset = 0;    // where the .npy stream starts in the archive (its compressed data)
  uint64_t entry[2] = {0, 0};  // the member's place in the ZIP directory, to open it again
};

// An open .npz archive (minizip): its members, each a .npy array whose header is read and checked
// (names unique, sizes that fit the headers). Throws Error, starting with `shownAs`, for a file
// that is not a ZIP archive or is corrupt or truncated, a member that is not NAME.npy, encrypted,
// compressed other than by deflate, or a bad header.
class NpzArchive {
 public:
  NpzArchive(const std::string& path, const std::string& shownAs);
  ~NpzArchive();
  NpzArchive(const NpzArchive&) = delete;
  NpzArchive& operator=(const NpzArchive&) = delete;

  const std::vector<NpzMember>& members() const { return members_; }
  // Decompresses a deflated member's elements, after its header, handing them to `sink` in chunks
  // of whole elements (bytes, element count); checks the stream and its CRC-32 at the end.
  void readElements(const NpzMember& member, const std::function<void(const uint8_t*, size_t)>& sink);

 private:
  void* zip_;  // minizip's unzFile
  std::string shownAs_;
  std::vector<NpzMember> members_;
  void list();
};

// The arrays of an .npz archive (or the one array of a .npy file, named `data`), their headers
// only: a deflated member's first bytes are decompressed, nothing else is read. Throws Error
// starting with `shownAs` (the path as the user wrote it) for a file that cannot be opened, an
// archive that is corrupt or truncated, a member that is not a .npy array, a bad header.
std::vector<NpyArrayInfo> readNpzHeaders(const std::string& path, const std::string& shownAs);
std::vector<NpyArrayInfo> readNpyHeader(const std::string& path, const std::string& shownAs);
// Throws unless a .npy file of `fileBytes` bytes holds exactly the data of its header `a`.
void checkNpyFileSize(const NpyArrayInfo& a, uint64_t fileBytes, const std::string& shownAs);

// The sample count of a set of arrays: the first dimension, the same for every array of one or
// more dimensions (0-d arrays are not fields). Throws Error naming two arrays that disagree, or
// when there is no array of one or more dimensions.
int64_t npzSampleCount(const std::vector<NpyArrayInfo>& arrays, const std::string& shownAs);

// "[60000, 28, 28]"; the per-sample shape of an array is its shape without the first dimension.
std::string shapeText(const std::vector<int64_t>& shape);

}  // namespace mtlc::rt
