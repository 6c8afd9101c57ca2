// The one JSON reader of the runtime, enough for safetensors headers (core/SafeTensors): it walks
// a byte range in place, decodes strings and non-negative integers, and validates (or skips) every
// other value, with no tree of values and no allocation besides the strings it is asked for. The
// trainer keeps nlohmann::json for its logs; everything that reads a checkpoint reads it here.
#pragma once

#include "runtime/core/Text.h"

#include <cstddef>
#include <cstdint>

namespace mtlc::core {

struct JsonReader {
  const char *begin, *s, *e;  // the whole text, the read position, its end
  const char *error = nullptr;  // where the text stopped being JSON, after a failed call

  JsonReader(const char *text, size_t size) : begin(text), s(text), e(text + size) {}

  void ws();
  bool peek(char c);  // the next character, after white space, is c (not consumed)
  bool lit(char c);   // consumes c after white space
  bool atEnd();       // only white space is left

  // A string into `out` (appended), escapes decoded, \uXXXX (and surrogate pairs) as UTF-8.
  bool string(Text &out);
  // A JSON integer without sign, fraction or exponent that fits uint64_t. On false, the position
  // is unchanged (the value may still be valid JSON of another kind).
  bool unsignedInteger(uint64_t &v);
  // Validates and skips one value of any kind (objects and arrays nest at most 64 deep).
  bool skip(int depth = 0);
  // Skips one value and appends its text to `out` with the white space between tokens removed,
  // as a compact dump prints it ("[-2, 3]" -> "[-2,3]").
  bool compact(Text &out);

  size_t offset() const { return size_t((error ? error : s) - begin); }

 private:
  bool fail() { return error = s, false; }
  bool number();
  bool word(const char *w);
  bool unicodeEscape(Text &out);
};

// Appends s as a JSON string literal: `"` and `\` escaped, control characters as \b \f \n \r \t
// or \u00xx, every other byte as it is (the spelling of nlohmann::json's dump, so that headers
// written before the core are byte-identical to those written by it).
void appendJsonString(Text &out, const char *s);

}  // namespace mtlc::core
