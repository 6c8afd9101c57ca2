// Reading a .mtl file for the parser, bounded by limits::kMaxProgramBytes.
#pragma once

#include <string>

namespace mtlc {

// Reads `path` into `text`, at most limits::kMaxProgramBytes + 1 bytes: one byte past the limit is
// enough for parseProgram to report an oversized program, without reading all of a huge (or
// endless: /dev/zero) file into memory. False when the file cannot be opened or read.
bool readSourceFile(const std::string &path, std::string &text);

}  // namespace mtlc
