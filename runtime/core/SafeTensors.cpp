#include "runtime/core/SafeTensors.h"

#include "runtime/core/Json.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mtlc::core {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

TensorTable::~TensorTable() {
  for (size_t i = 0; i < tensors.size; ++i) std::free(tensors[i].name);
  for (size_t i = 0; i < metadata.size; ++i) std::free(metadata[i].key), std::free(metadata[i].value);
}

const TensorEntry *TensorTable::find(const char *name) const {
  for (size_t i = 0; i < tensors.size; ++i)
    if (!std::strcmp(tensors[i].name, name)) return &tensors[i];
  return nullptr;
}

const char *TensorTable::metadataValue(const char *key) const {
  const char *value = nullptr;  // the last of repeated keys wins, as in a JSON object
  for (size_t i = 0; i < metadata.size; ++i)
    if (!std::strcmp(metadata[i].key, key)) value = metadata[i].value;
  return value;
}

void appendShape(Text &out, const int64_t *shape, int rank) {
  out.add("[");
  for (int i = 0; i < rank; ++i) out.addf("%s%lld", i ? ", " : "", (long long)shape[i]);
  out.add("]");
}

bool isStateTensor(const char *name) {
  static const char *const kPrefixes[] = {"optim.", "mtl.", "train."};
  for (const char *prefix : kPrefixes)
    if (!std::strncmp(name, prefix, std::strlen(prefix))) return true;
  return false;
}

namespace {

using ull = unsigned long long;

// One tensor's header entry, checked in the order of its messages; `value` positions the reader
// on the entry's object (already validated as JSON).
struct EntryParser {
  JsonReader &r;
  const char *path, *name;
  uint64_t dataSize;
  Failure &f;

  Status fail(const char *what) { return f.fail(Status::Format, "%s: tensor `%s`: %s", path, name, what); }

  // The positions of the three values; a repeated key: the last one, as in a JSON object.
  Status locate(const char *&dtype, const char *&shape, const char *&offsets) {
    dtype = shape = offsets = nullptr;
    if (!r.peek('{')) return fail("expected an object with dtype, shape and data_offsets");
    r.lit('{');
    if (!r.peek('}')) do {
        Text key;
        if (!r.string(key) || !r.lit(':')) return f.fail(Status::NoMem, "out of memory");
        r.ws();
        if (key.equals("dtype")) dtype = r.s;
        else if (key.equals("shape")) shape = r.s;
        else if (key.equals("data_offsets")) offsets = r.s;
        r.skip();
      } while (r.peek(',') && r.lit(','));
    r.lit('}');
    if (!dtype || !shape || !offsets) return fail("expected an object with dtype, shape and data_offsets");
    return Status::Ok;
  }

  Status readShape(const char *at, TensorEntry &t) {
    r.s = at;
    if (!r.peek('[')) return fail("shape is not a list");
    r.lit('[');
    t.rank = 0;
    if (!r.peek(']')) do {
        uint64_t d;
        const bool tooMany = t.rank == kMaxTensorRank;
        if (tooMany || !r.unsignedInteger(d)) {
          r.s = at;
          Text shape;
          r.compact(shape);
          return f.fail(Status::Format, "%s: tensor `%s`: shape %s has %s", path, name, shape.c_str(),
                        tooMany ? "more than 8 dimensions" : "a non-integer or negative dimension");
        }
        t.shape[t.rank++] = int64_t(d);
      } while (r.peek(',') && r.lit(','));
    return Status::Ok;
  }

  Status readOffsets(const char *at, uint64_t (&offsets)[2]) {
    r.s = at;
    int n = 0;
    bool ok = r.lit('[');
    if (ok && !r.peek(']')) do {
        ok = n < 2 && r.unsignedInteger(offsets[n++]);
      } while (ok && r.peek(',') && r.lit(','));
    if (!ok || n != 2 || !r.peek(']')) return fail("data_offsets must be two non-negative integers");
    return Status::Ok;
  }

  Status parse(const unsigned char *data, TensorEntry &t) {
    const char *dtypeAt, *shapeAt, *offsetsAt;
    if (Status st = locate(dtypeAt, shapeAt, offsetsAt); st != Status::Ok) return st;
    const char *end = r.s;
    r.s = dtypeAt;
    Text dtype;
    if (!r.peek('"')) return fail("dtype is not a string");
    if (!r.string(dtype)) return f.fail(Status::NoMem, "out of memory");
    t.i64 = dtype.equals("I64");
    if (!dtype.equals("F32") && !t.i64)
      return f.fail(Status::Format, "%s: tensor `%s` has dtype %s; mtlc reads F32 and I64 tensors only", path,
                    name, dtype.c_str());
    const uint64_t width = t.i64 ? 8 : 4;
    if (Status st = readShape(shapeAt, t); st != Status::Ok) return st;
    uint64_t count = 1;
    for (int i = 0; i < t.rank; ++i) {
      const uint64_t d = uint64_t(t.shape[i]);
      if (d != 0 && count > dataSize / d) {  // cannot fit (and the product might overflow)
        count = dataSize / width + 1;
        break;
      }
      count *= d;
    }
    uint64_t off[2];
    if (Status st = readOffsets(offsetsAt, off); st != Status::Ok) return st;
    r.s = end;
    if (off[0] > off[1] || off[1] > dataSize)
      return f.fail(Status::Format, "%s: tensor `%s`: data_offsets [%llu, %llu] lie outside the %llu-byte data section",
                    path, name, ull(off[0]), ull(off[1]), ull(dataSize));
    if (off[1] - off[0] != count * width) {
      Text shape;
      appendShape(shape, t.shape, t.rank);
      return f.fail(Status::Format, "%s: tensor `%s`: shape %s needs %llu bytes, data_offsets [%llu, %llu] give %llu",
                    path, name, shape.c_str(), ull(count * width), ull(off[0]), ull(off[1]), ull(off[1] - off[0]));
    }
    t.data = data + off[0];
    t.count = int64_t(count);
    return Status::Ok;
  }
};

// `__metadata__`: an object of string values, kept in header order.
Status readMetadata(JsonReader &r, const char *path, TensorTable &table, Failure &f) {
  if (!r.peek('{')) return f.fail(Status::Format, "%s: __metadata__ must be an object of strings", path);
  r.lit('{');
  if (r.peek('}')) return r.lit('}'), Status::Ok;
  do {
    Text key, value;
    if (!r.string(key) || !r.lit(':')) return f.fail(Status::NoMem, "out of memory");
    if (!r.peek('"')) return f.fail(Status::Format, "%s: __metadata__ value for `%s` is not a string", path, key.c_str());
    if (!r.string(value)) return f.fail(Status::NoMem, "out of memory");
    MetadataEntry m{duplicate(key.c_str(), key.len), duplicate(value.c_str(), value.len)};
    if (!m.key || !m.value || !table.metadata.push(m)) {
      std::free(m.key), std::free(m.value);
      return f.fail(Status::NoMem, "out of memory");
    }
  } while (r.peek(',') && r.lit(','));
  r.lit('}');
  return Status::Ok;
}

// The tensors must tile the data section exactly, as the reference implementation demands: in
// offset order (header order among equal offsets), each starts where the previous one ended.
Status checkTiling(const TensorTable &table, const unsigned char *data, uint64_t dataSize, const char *path,
                   Failure &f) {
  const size_t n = table.tensors.size;
  size_t *order = static_cast<size_t *>(std::malloc((n ? n : 1) * sizeof(size_t)));
  if (!order) return f.fail(Status::NoMem, "out of memory");
  auto beginOf = [&](size_t i) { return uint64_t(table.tensors[i].data - data); };
  for (size_t i = 0; i < n; ++i) {
    size_t k = i;
    for (; k > 0 && beginOf(order[k - 1]) > beginOf(i); --k) order[k] = order[k - 1];
    order[k] = i;
  }
  uint64_t at = 0;
  Status st = Status::Ok;
  for (size_t k = 0; k < n && st == Status::Ok; ++k) {
    const TensorEntry &t = table.tensors[order[k]];
    const uint64_t begin = beginOf(order[k]);
    if (begin != at)
      st = f.fail(Status::Format, "%s: tensor `%s` starts at byte %llu of the data section, expected %llu (%s)", path,
                  t.name, ull(begin), ull(at), begin < at ? "it overlaps the previous tensor" : "there is a gap");
    at = begin + uint64_t(t.count) * (t.i64 ? 8 : 4);
  }
  std::free(order);
  if (st == Status::Ok && at != dataSize)
    st = f.fail(Status::Format, "%s: the data section has %llu bytes, the tensors cover %llu", path, ull(dataSize),
                ull(at));
  return st;
}

}  // namespace

Status parseSafeTensors(const unsigned char *bytes, size_t size, const char *path, TensorTable &table, Failure &f) {
  if (size < 8)
    return f.fail(Status::Format, "%s: not a safetensors file: %zu bytes, too short for the header length", path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  if (n > size - 8 || n > kMaxHeaderBytes)
    return f.fail(Status::Format, "%s: not a safetensors file: header length %llu does not fit the file size %zu",
                  path, ull(n), size);
  const char *header = reinterpret_cast<const char *>(bytes + 8);
  JsonReader check(header, size_t(n));
  if (!check.skip() || !check.atEnd())
    return f.fail(Status::Format, "%s: the safetensors header is not valid JSON: syntax error at byte %zu", path,
                  check.offset());
  JsonReader r(header, size_t(n));
  if (!r.peek('{')) return f.fail(Status::Format, "%s: the safetensors header is not a JSON object", path);
  const unsigned char *data = bytes + 8 + n;
  const uint64_t dataSize = size - 8 - n;
  r.lit('{');
  if (!r.peek('}')) do {
      Text name;
      if (!r.string(name) || !r.lit(':')) return f.fail(Status::NoMem, "out of memory");
      if (name.equals("__metadata__")) {
        if (Status st = readMetadata(r, path, table, f); st != Status::Ok) return st;
        continue;
      }
      if (table.find(name.c_str()))
        return f.fail(Status::Format, "%s: tensor `%s` appears twice in the header", path, name.c_str());
      TensorEntry t{};
      EntryParser entry{r, path, name.c_str(), dataSize, f};
      if (Status st = entry.parse(data, t); st != Status::Ok) return st;
      t.name = duplicate(name.c_str(), name.len);
      if (!t.name || !table.tensors.push(t)) {
        std::free(t.name);
        return f.fail(Status::NoMem, "out of memory");
      }
    } while (r.peek(',') && r.lit(','));
  return checkTiling(table, data, dataSize, path, f);
}

void readFloats(const TensorEntry &t, float *out) {
  if (!t.i64) {
    if (t.count) std::memcpy(out, t.data, size_t(t.count) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < t.count; ++i) {
    int64_t v;
    std::memcpy(&v, t.data + 8 * i, sizeof v);
    out[i] = float(v);
  }
}

namespace {

// The header as nlohmann::ordered_json dumped it: metadata (keys sorted) first, then the tensors;
// padded with spaces so that the data starts 8-byte aligned.
Status buildHeader(Text &h, const TensorView *tensors, size_t count, const MetadataPair *metadata,
                   size_t metadataCount, const char *path, Failure &f) {
  h.add("{");
  if (metadataCount) {
    const MetadataPair **sorted = static_cast<const MetadataPair **>(std::malloc(metadataCount * sizeof(void *)));
    if (!sorted) return f.fail(Status::NoMem, "out of memory");
    for (size_t i = 0; i < metadataCount; ++i) {
      size_t k = i;
      for (; k > 0 && std::strcmp(sorted[k - 1]->key, metadata[i].key) > 0; --k) sorted[k] = sorted[k - 1];
      sorted[k] = &metadata[i];
    }
    h.add("\"__metadata__\":{");
    for (size_t i = 0; i < metadataCount; ++i) {
      if (i && !std::strcmp(sorted[i]->key, sorted[i - 1]->key)) continue;  // one value per key
      if (i) h.add(",");
      appendJsonString(h, sorted[i]->key);
      h.add(":");
      appendJsonString(h, sorted[i]->value);
    }
    h.add("}");
    std::free(sorted);
  }
  uint64_t at = 0;
  for (size_t i = 0; i < count; ++i) {
    const TensorView &t = tensors[i];
    for (size_t k = 0; k < i; ++k)
      if (!std::strcmp(tensors[k].name, t.name))
        return f.fail(Status::Format, "%s: tensor `%s` would be written twice", path, t.name);
    uint64_t elements = 1;
    for (int r = 0; r < t.rank; ++r) elements *= uint64_t(t.shape[r]);
    if (metadataCount || i) h.add(",");
    appendJsonString(h, t.name);
    const uint64_t width = t.i64 ? 8 : 4;
    h.add(t.i64 ? ":{\"dtype\":\"I64\",\"shape\":[" : ":{\"dtype\":\"F32\",\"shape\":[");
    for (int r = 0; r < t.rank; ++r) h.addf("%s%lld", r ? "," : "", (long long)t.shape[r]);
    h.addf("],\"data_offsets\":[%llu,%llu]}", ull(at), ull(at + elements * width));
    at += elements * width;
  }
  h.add("}");
  while ((8 + h.len) % 8) h.add(" ");
  return h.oom ? f.fail(Status::NoMem, "out of memory") : Status::Ok;
}

// A file descriptor being written; a failure closes it and removes the temporary file.
struct TempFile {
  int fd;
  const char *tmp, *path;
  Failure &f;
  Status fail(const char *what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp);
    return f.fail(Status::Io, "%s: %s: %s", path, what, std::strerror(err));
  }
  bool put(const void *p, size_t size) {
    const char *c = static_cast<const char *>(p);
    while (size) {
      const ssize_t w = ::write(fd, c, size);
      if (w < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      c += w;
      size -= size_t(w);
    }
    return true;
  }
};

}  // namespace

Status writeSafeTensors(const char *path, const TensorView *tensors, size_t count, const MetadataPair *metadata,
                        size_t metadataCount, Failure &f) {
  Text h;
  if (Status st = buildHeader(h, tensors, count, metadata, metadataCount, path, f); st != Status::Ok) return st;
  // The temporary file lives next to the target (a rename does not cross file systems).
  Text dir, tmp;
  dir.add(path);
  char *slash = dir.s ? std::strrchr(dir.s, '/') : nullptr;
  const char *name = slash ? path + (slash - dir.s) + 1 : path;
  if (!slash) dir.clear(), dir.add(".");
  else if (slash == dir.s) slash[1] = '\0', dir.len = 1;  // the root directory
  else *slash = '\0', dir.len = size_t(slash - dir.s);
  tmp.add(dir.c_str());
  if (dir.len && dir.s[dir.len - 1] != '/') tmp.add("/");
  tmp.addf(".%s.tmp-XXXXXX", name);
  if (dir.oom || tmp.oom) return f.fail(Status::NoMem, "out of memory");
  const int fd = ::mkstemp(tmp.s);
  if (fd < 0) return f.fail(Status::Io, "%s: cannot create a temporary file in %s: %s", path, dir.c_str(), std::strerror(errno));
  TempFile out{fd, tmp.c_str(), path, f};
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = (unsigned char)(uint64_t(h.len) >> (8 * i));
  if (!out.put(length, 8) || !out.put(h.s, h.len)) return out.fail("write failed");
  for (size_t i = 0; i < count; ++i) {
    uint64_t elements = 1;
    for (int r = 0; r < tensors[i].rank; ++r) elements *= uint64_t(tensors[i].shape[r]);
    if (tensors[i].i64) {  // integer-valued floats, one at a time (these tensors are tiny)
      for (uint64_t k = 0; k < elements; ++k) {
        const int64_t v = int64_t(tensors[i].data[k]);
        if (!out.put(&v, sizeof v)) return out.fail("write failed");
      }
    } else if (elements && !out.put(tensors[i].data, size_t(elements) * 4)) {
      return out.fail("write failed");
    }
  }
  if (::fchmod(fd, 0644) != 0) return out.fail("chmod failed");
  if (::fsync(fd) != 0) return out.fail("fsync failed");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return f.fail(Status::Io, "%s: close failed: %s", path, std::strerror(err));
  }
  if (::rename(tmp.c_str(), path) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return f.fail(Status::Io, "%s: cannot rename the temporary file into place: %s", path, std::strerror(err));
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);  // makes the rename itself durable
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok;
}

}  // namespace mtlc::core
