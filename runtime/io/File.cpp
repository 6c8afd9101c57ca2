#include "runtime/io/File.h"

#include "spec/Error.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mtlc::rt {

std::vector<uint8_t> readFileBytes(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throwError("{}: cannot open: {}", path, std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  for (;;) {
    size_t got = std::fread(chunk, 1, sizeof chunk, f);
    bytes.insert(bytes.end(), chunk, chunk + got);
    if (got < sizeof chunk) break;
  }
  bool failed = std::ferror(f);
  int err = errno;
  std::fclose(f);
  if (failed) throwError("{}: read error: {}", path, std::strerror(err));
  return bytes;
}

bool isGzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& what) {
  std::vector<uint8_t> out;
  out.reserve(in.size() * 4);
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip wrapper (header + CRC-32 trailer) rather than raw zlib.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throwError("{}: zlib initialisation failed", what);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = uInt(in.size());
  uint8_t chunk[1 << 16];
  for (;;) {
    zs.next_out = chunk;
    zs.avail_out = sizeof chunk;
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.insert(out.end(), chunk, chunk + (sizeof chunk - zs.avail_out));
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (as `cat a.gz b.gz` produces); anything else is an error.
      if (zs.avail_in == 0) break;
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      inflateEnd(&zs);
      throwError("{}: {} bytes of garbage after the gzip stream", what, zs.avail_in);
    }
    if (rc == Z_OK) continue;
    std::string msg = zs.msg ? zs.msg : "";
    inflateEnd(&zs);
    if (rc == Z_BUF_ERROR)  // no progress possible: the input ended before the stream did
      throwError("{}: truncated gzip stream (ends after {} compressed bytes)", what, in.size());
    throwError("{}: corrupt gzip stream: {}", what, msg.empty() ? fmt::format("zlib error {}", rc) : msg);
  }
  inflateEnd(&zs);
  return out;
}

std::vector<uint8_t> readMaybeGzip(const std::string& path) {
  std::vector<uint8_t> bytes = readFileBytes(path);
  if (isGzip(bytes)) return gunzip(bytes, path);
  return bytes;
}

}  // namespace mtlc::rt
