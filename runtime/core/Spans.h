// The element ranges of the parameter arena that the optimizer updates: every parameter that is
// not frozen (`freeze BLOCK`), adjacent ranges merged. Shared by the trainer and the embedded runtime.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mtlc::core {

struct Span {
  int64_t begin, end;  // [begin, end) elements
};

struct ParamExtent {
  int64_t offset, size;
  bool frozen;
};

// Writes the spans to `out` (room for max(count, 1)) and returns how many: one span
// [0, paramCount) when nothing is frozen; otherwise the non-empty unfrozen parameters, sorted by
// offset, overlapping or adjacent ones merged.
size_t trainableSpans(const ParamExtent *params, size_t count, int64_t paramCount, Span *out);

}  // namespace mtlc::core
