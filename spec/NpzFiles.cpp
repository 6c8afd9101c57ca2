// NumPy's files without their data (NpzFiles.h). The .npy header is parsed strictly: a Python dict
// literal with exactly the keys 'descr', 'fortran_order' and 'shape'; anything NumPy would not
// write for a plain numeric array is refused with a message that says what was found. The .npz
// archive is read with minizip: its central directory names the members, their compression and
// sizes; each member's first bytes give its header.
#include "spec/NpzFiles.h"
#include "spec/Error.h"

#include <unzip.h>
#include <zlib.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

namespace mtlc::rt {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicBytes = 6;
// No array's header is this long (NumPy pads to 64 bytes; a huge shape is a few hundred).
constexpr uint64_t kMaxHeaderBytes = uint64_t(1) << 20;
// Element counts beyond this are not an array that fits any file.
constexpr int64_t kMaxDim = int64_t(1) << 50;

// A cursor over the header's text, with the errors of a strict literal parser.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& where) : s_(text), where_(where) {}

  [[noreturn]] void fail(const std::string& what) const {
    throwError("{}: malformed .npy header: {} at byte {} of `{}`", where_, what, pos_, shown());
  }
  void skipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool accept(char c) {
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) fail(fmt::format("expected '{}'", c));
  }
  char peek() {
    skipSpace();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  std::string string() {
    skipSpace();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) fail("expected a quoted string");
    const char quote = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') fail("an escape in a string");
      out += s_[pos_++];
    }
    if (pos_ >= s_.size()) fail("an unterminated string");
    ++pos_;
    return out;
  }
  bool boolean() {
    skipSpace();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}})
      if (s_.substr(pos_, std::strlen(word)) == word) {
        pos_ += std::strlen(word);
        return value;
      }
    fail("expected True or False");
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> dims;
    if (accept(')')) return dims;
    for (;;) {
      skipSpace();
      if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_])))
        fail("expected a non-negative integer in the shape");
      int64_t v = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        v = v * 10 + (s_[pos_++] - '0');
        if (v > kMaxDim) fail("a dimension that large");
      }
      dims.push_back(v);
      const bool comma = accept(',');
      if (accept(')')) {
        if (dims.size() == 1 && !comma) fail("a 1-tuple without its comma");
        return dims;
      }
      if (!comma) fail("expected ',' or ')' in the shape");
    }
  }
  bool atEnd() {
    skipSpace();
    return pos_ == s_.size();
  }

 private:
  std::string_view s_;
  const std::string& where_;
  size_t pos_ = 0;
  std::string shown() const {
    std::string out;
    for (char c : s_.substr(0, 120)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return s_.size() > 120 ? out + "..." : out;
  }
};

constexpr const char* kSupported = "float16, float32, float64, int8..int64, uint8..uint64 and bool";

// Fills kind, itemBytes and bigEndian from descr ("<f4"), or refuses it.
void parseDescr(const std::string& descr, NpyArrayInfo& a, const std::string& where) {
  std::string_view d = descr;
  char order = '=';
  if (!d.empty() && std::strchr("<>|=", d[0])) order = d[0], d.remove_prefix(1);
  if (!d.empty() && d[0] == 'O')
    throwError("{}: the array holds Python objects (dtype '{}'), which NumPy stores pickled: not "
               "supported; save a numeric array (e.g. x.astype(np.float32))", where, descr);
  int bytes = 0;
  const char kind = d.empty() ? '\0' : d[0];
  if (d.size() == 2 && d[1] >= '1' && d[1] <= '8') bytes = d[1] - '0';
  const bool sizeOk = bytes == 1 || bytes == 2 || bytes == 4 || bytes == 8;
  bool kindOk = true;
  switch (kind) {
    case 'f': a.kind = NpyKind::Float; break;
    case 'i': a.kind = NpyKind::Signed; break;
    case 'u': a.kind = NpyKind::Unsigned; break;
    case 'b': a.kind = NpyKind::Bool; break;
    default: kindOk = false;  // complex, strings, dates, void, ...
  }
  if (!kindOk || !sizeOk || (a.kind == NpyKind::Float && bytes == 1) || (a.kind == NpyKind::Bool && bytes != 1))
    throwError("{}: dtype '{}' is not supported (supported: {})", where, descr, kSupported);
  a.itemBytes = bytes;
  a.bigEndian = order == '>';  // '=' is the writer's native order: little on every platform we run
}

}  // namespace

uint64_t NpyArrayInfo::elementCount() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);  // each dimension < 2^50; the caller checks the bytes
  return n;
}

size_t npyPreambleBytes(std::string_view bytes) {
  if (bytes.size() < 8 || bytes.substr(0, kMagicBytes) != std::string_view(kMagic, kMagicBytes)) return 0;
  return uint8_t(bytes[6]) == 1 ? 10 : 12;
}

uint64_t npyHeaderEnd(std::string_view b) {
  auto byte = [&](size_t i) { return uint64_t(uint8_t(b[i])); };
  if (npyPreambleBytes(b) == 10) return 10 + (byte(8) | byte(9) << 8);
  return 12 + (byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24);
}

NpyArrayInfo parseNpyHeader(std::string_view b, const std::string& where) {
  const size_t preamble = npyPreambleBytes(b);
  if (preamble == 0)
    throwError("{}: not a .npy array: {} bytes without the magic \"\\x93NUMPY\"", where,
               b.size() < 8 ? "fewer than 8" : "the first 8");
  const int major = uint8_t(b[6]), minor = uint8_t(b[7]);
  if (major < 1 || major > 3 || minor != 0)
    throwError("{}: .npy format version {}.{} is not supported (1.0, 2.0 and 3.0 are)", where, major, minor);
  if (b.size() < preamble)
    throwError("{}: truncated .npy header: {} bytes, the version {} preamble has {}", where, b.size(), major, preamble);
  const uint64_t end = npyHeaderEnd(b);
  if (end - preamble > kMaxHeaderBytes)
    throwError("{}: malformed .npy header: it claims {} bytes", where, end - preamble);
  if (b.size() < end) throwError("{}: truncated .npy header: it has {} bytes, {} are there", where, end - preamble,
                                 b.size() - preamble);
  std::string_view text = b.substr(preamble, end - preamble);
  HeaderParser p(text, where);
  if (text.empty() || text.back() != '\n') p.fail("no '\\n' at the end");
  if (major < 3)
    for (char c : text)
      if (uint8_t(c) >= 0x80) p.fail("a non-ASCII byte in a version 1 or 2 header");

  NpyArrayInfo a;
  a.dataOffset = end;
  bool haveDescr = false, haveOrder = false, haveShape = false;
  p.expect('{');
  while (!p.accept('}')) {
    const std::string key = p.string();
    p.expect(':');
    bool* seen = key == "descr" ? &haveDescr : key == "fortran_order" ? &haveOrder : key == "shape" ? &haveShape : nullptr;
    if (!seen) p.fail(fmt::format("an unknown key '{}'", key));
    if (*seen) p.fail(fmt::format("the key '{}' twice", key));
    *seen = true;
    if (key == "descr") {
      if (p.peek() == '[')
        throwError("{}: a structured dtype (a list of fields) is not supported (supported: {})", where, kSupported);
      a.descr = p.string();
    } else if (key == "fortran_order") {
      a.fortranOrder = p.boolean();
    } else {
      a.shape = p.tuple();
    }
    if (!p.accept(',')) {
      p.expect('}');
      break;
    }
  }
  if (!p.atEnd()) p.fail("text after the dict");
  if (!haveDescr || !haveOrder || !haveShape)
    p.fail(fmt::format("no '{}' key", !haveDescr ? "descr" : !haveOrder ? "fortran_order" : "shape"));
  parseDescr(a.descr, a, where);
  uint64_t count = 1;
  for (int64_t d : a.shape) {
    if (d != 0 && count > uint64_t(kMaxDim) / uint64_t(d))
      throwError("{}: the shape {} has implausibly many elements", where, shapeText(a.shape));
    count *= uint64_t(d);
  }
  return a;
}

int64_t npzSampleCount(const std::vector<NpyArrayInfo>& arrays, const std::string& shownAs) {
  const NpyArrayInfo* first = nullptr;
  for (const NpyArrayInfo& a : arrays) {
    if (a.shape.empty()) continue;
    if (!first) {
      first = &a;
    } else if (a.shape[0] != first->shape[0]) {
      throwError("{}: the arrays have different sample counts: `{}` {} has {}, `{}` {} has {} (every "
                 "array's first dimension is the sample count)",
                 shownAs, first->name, shapeText(first->shape), first->shape[0], a.name, shapeText(a.shape),
                 a.shape[0]);
    }
  }
  if (!first) throwError("{}: no array with a sample dimension (every array is 0-d or there are none)", shownAs);
  return first->shape[0];
}

// ---- the archive --------------------------------------------------------------------------------

namespace {

// Reads up to `n` bytes of the open member; fewer only at its end. Throws on a corrupt stream.
size_t readMember(unzFile zip, uint8_t* out, size_t n, const std::string& where) {
  size_t got = 0;
  while (got < n) {
    const unsigned chunk = unsigned(std::min<size_t>(n - got, size_t(1) << 30));
    const int r = unzReadCurrentFile(zip, out + got, chunk);
    if (r < 0) throwError("{}: corrupt compressed data (minizip error {})", where, r);
    if (r == 0) break;
    got += size_t(r);
  }
  return got;
}

// The header of the member that is open, read from its first bytes.
NpyArrayInfo readMemberHeader(unzFile zip, const std::string& where) {
  std::string bytes(12, '\0');
  bytes.resize(readMember(zip, reinterpret_cast<uint8_t*>(bytes.data()), 12, where));
  const size_t preamble = npyPreambleBytes(bytes);
  if (preamble && bytes.size() >= preamble) {
    const uint64_t end = std::min<uint64_t>(npyHeaderEnd(bytes), preamble + kMaxHeaderBytes + 1);
    const size_t have = bytes.size();
    if (end > have) {  // a header length shorter than the preamble read leaves nothing to read
      bytes.resize(size_t(end));
      bytes.resize(have + readMember(zip, reinterpret_cast<uint8_t*>(bytes.data()) + have, size_t(end) - have, where));
    }
  }
  return parseNpyHeader(bytes, where);
}

}  // namespace

NpzArchive::NpzArchive(const std::string& path, const std::string& shownAs) : shownAs_(shownAs) {
  zip_ = unzOpen64(path.c_str());
  if (!zip_) {
    if (access(path.c_str(), R_OK) != 0) throwError("{}: cannot open: {}", shownAs, std::strerror(errno));
    throwError("{}: not a ZIP archive, or a truncated or corrupt one (no readable central "
               "directory; np.savez writes .npz files)", shownAs);
  }
  try {
    list();
  } catch (...) {
    unzClose(zip_);
    throw;
  }
}

NpzArchive::~NpzArchive() { unzClose(zip_); }

// Every member of the archive, its header read (no data), checked for what a .npz holds.
void NpzArchive::list() {
  unzFile zip = zip_;
  std::set<std::string> names;
  for (int r = unzGoToFirstFile(zip); r != UNZ_END_OF_LIST_OF_FILE; r = unzGoToNextFile(zip)) {
    if (r != UNZ_OK) throwError("{}: corrupt ZIP directory (minizip error {})", shownAs_, r);
    unz_file_info64 fi{};
    char name[4097];
    if (unzGetCurrentFileInfo64(zip, &fi, name, sizeof name, nullptr, 0, nullptr, 0) != UNZ_OK)
      throwError("{}: corrupt ZIP directory entry after {} members", shownAs_, members_.size());
    NpzMember m;
    m.where = fmt::format("{}: member `{}`", shownAs_, name);
    const std::string file = name;
    if (file.size() <= 4 || file.compare(file.size() - 4, 4, ".npy") != 0)
      throwError("{}: not a .npy array (an .npz holds only NAME.npy members, as np.savez writes)", m.where);
    if (fi.flag & 1) throwError("{}: encrypted: not supported", m.where);
    if (fi.compression_method != 0 && fi.compression_method != Z_DEFLATED)
      throwError("{}: compression method {} is not supported (stored, as np.savez writes, or deflate, as "
                 "np.savez_compressed writes)", m.where, fi.compression_method);
    m.stored = fi.compression_method == 0;
    m.npyBytes = fi.uncompressed_size;
    if (m.stored && fi.compressed_size != fi.uncompressed_size)
      throwError("{}: corrupt ZIP entry: stored, but {} bytes compressed and {} uncompressed", m.where,
                 fi.compressed_size, fi.uncompressed_size);
    unz64_file_pos pos{};
    unzGetFilePos64(zip, &pos);
    m.entry[0] = pos.pos_in_zip_directory;
    m.entry[1] = pos.num_of_file;
    if (unzOpenCurrentFile(zip) != UNZ_OK) throwError("{}: corrupt local ZIP header", m.where);
    m.fileOffset = uint64_t(unzGetCurrentFileZStreamPos64(zip));
    try {
      m.info = readMemberHeader(zip, m.where);
    } catch (...) {
      unzCloseCurrentFile(zip);
      throw;
    }
    unzCloseCurrentFile(zip);  // not all read: its CRC is checked when the data is
    m.info.name = file.substr(0, file.size() - 4);
    if (!names.insert(m.info.name).second) throwError("{}: the archive has two members named so", m.where);
    const uint64_t want = m.info.dataOffset + m.info.elementCount() * uint64_t(m.info.itemBytes);
    if (m.npyBytes != want)
      throwError("{}: {} .npy array: shape {} of '{}' needs {} bytes after its header, the member has {}",
                 m.where, m.npyBytes < want ? "truncated" : "malformed", shapeText(m.info.shape), m.info.descr,
                 want - m.info.dataOffset, m.npyBytes < m.info.dataOffset ? 0 : m.npyBytes - m.info.dataOffset);
    members_.push_back(std::move(m));
  }
}

void NpzArchive::readElements(const NpzMember& m, const std::function<void(const uint8_t*, size_t)>& sink) {
  unzFile zip = zip_;
  unz64_file_pos pos{m.entry[0], m.entry[1]};
  if (unzGoToFilePos64(zip, &pos) != UNZ_OK || unzOpenCurrentFile(zip) != UNZ_OK)
    throwError("{}: corrupt local ZIP header", m.where);
  struct Closer {
    unzFile zip;
    bool open = true;
    ~Closer() { if (open) unzCloseCurrentFile(zip); }
  } closer{zip};
  std::vector<uint8_t> header(size_t(m.info.dataOffset));
  if (readMember(zip, header.data(), header.size(), m.where) != header.size())
    throwError("{}: truncated .npy header", m.where);
  const size_t item = size_t(m.info.itemBytes);
  const uint64_t total = m.info.elementCount() * item;
  constexpr size_t kChunkBytes = size_t(4) << 20;
  std::vector<uint8_t> chunk(kChunkBytes / item * item);
  for (uint64_t done = 0; done < total;) {
    const size_t want = size_t(std::min<uint64_t>(chunk.size(), total - done));
    if (const size_t got = readMember(zip, chunk.data(), want, m.where); got != want)
      throwError("{}: corrupt or truncated compressed data: it gives {} of the array's {} bytes", m.where,
                 done + got, total);
    sink(chunk.data(), want / item);
    done += want;
  }
  closer.open = false;
  const int r = unzCloseCurrentFile(zip);
  if (r == UNZ_CRCERROR) throwError("{}: corrupt data: its CRC-32 does not match", m.where);
  if (r != UNZ_OK) throwError("{}: corrupt compressed data (minizip error {})", m.where, r);
}

std::vector<NpyArrayInfo> readNpzHeaders(const std::string& path, const std::string& shownAs) {
  NpzArchive archive(path, shownAs);
  std::vector<NpyArrayInfo> out;
  for (const NpzMember& m : archive.members()) out.push_back(m.info);
  return out;
}

void checkNpyFileSize(const NpyArrayInfo& a, uint64_t fileBytes, const std::string& shownAs) {
  const uint64_t want = a.dataOffset + a.elementCount() * uint64_t(a.itemBytes);
  if (fileBytes != want)
    throwError("{}: {} .npy file: shape {} of '{}' needs {} bytes, the file has {}", shownAs,
               fileBytes < want ? "truncated" : "malformed", shapeText(a.shape), a.descr, want, fileBytes);
}

std::vector<NpyArrayInfo> readNpyHeader(const std::string& path, const std::string& shownAs) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throwError("{}: cannot open: {}", shownAs, std::strerror(errno));
  struct stat st{};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throwError("{}: not a regular file", shownAs);
  std::string bytes(12, '\0');
  in.read(bytes.data(), 12);
  bytes.resize(size_t(in.gcount()));
  const size_t preamble = npyPreambleBytes(bytes);
  if (preamble && bytes.size() >= preamble) {
    const uint64_t end = std::min<uint64_t>(npyHeaderEnd(bytes), preamble + kMaxHeaderBytes + 1);
    const size_t have = bytes.size();
    bytes.resize(size_t(end));
    in.read(bytes.data() + have, std::streamsize(end - have));
    bytes.resize(have + size_t(in.gcount()));
  }
  NpyArrayInfo a = parseNpyHeader(bytes, shownAs);
  a.name = "data";
  checkNpyFileSize(a, uint64_t(st.st_size), shownAs);
  return {a};
}

std::string shapeText(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace mtlc::rt
