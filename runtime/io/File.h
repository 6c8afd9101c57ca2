// Reading whole files into memory, with transparent gzip decompression.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mtlc::rt {

// The file's bytes. Throws Error("PATH: cannot open: <reason>") when it cannot be read.
std::vector<uint8_t> readFileBytes(const std::string& path);

// The file's bytes, gunzipped when the file starts with the gzip magic 0x1f 0x8b (several
// concatenated gzip members are joined, as `gunzip` does). A truncated or corrupt stream is an
// Error naming the file.
std::vector<uint8_t> readMaybeGzip(const std::string& path);

// Decompresses a gzip stream held in memory; `what` names it in error messages.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& what);

bool isGzip(const std::vector<uint8_t>& bytes);

}  // namespace mtlc::rt
