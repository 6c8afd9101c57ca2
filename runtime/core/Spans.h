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

// Checkpoints hold each arena-sized optimizer array (sgd's momentum, adam's m and v, ...) in table
// order: the parameters as the table lists them, each from a 16-float boundary, padding zero. That
// is the arena as lowering lays it out before it moves sibling products' weights together
// (lower/Lower.cpp), so files read the same whatever the arena's order; an arena whose offsets
// already follow the table is the file as it is. These copy an array between the arena's order and
// the table's; `params` are the table's extents, in its order. False (nothing written) when the
// table does not fit in `paramCount` floats.
// Both sides are float arrays; either may be unaligned (a file's bytes): they are copied with memcpy.
bool arenaToTableOrder(const ParamExtent *params, size_t count, int64_t paramCount, const void *arena, void *table);
bool tableToArenaOrder(const ParamExtent *params, size_t count, int64_t paramCount, const void *table, void *arena);

}  // namespace mtlc::core
