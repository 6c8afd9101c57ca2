#include "syntax/SourceFile.h"

#include "syntax/Limits.h"

#include <fstream>

namespace mtlc {

bool readSourceFile(const std::string &path, std::string &text) {
  text.clear();
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  text.resize(limits::kMaxProgramBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return !in.bad();
}

}  // namespace mtlc
