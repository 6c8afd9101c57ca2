#include "runtime/core/Spans.h"

#include <cstring>

namespace mtlc::core {

size_t trainableSpans(const ParamExtent *params, size_t count, int64_t paramCount, Span *out) {
  bool anyFrozen = false;
  for (size_t i = 0; i < count; ++i) anyFrozen = anyFrozen || params[i].frozen;
  if (!anyFrozen) {
    out[0] = {0, paramCount};
    return 1;
  }
  size_t n = 0;
  for (size_t i = 0; i < count; ++i) {
    const ParamExtent &p = params[i];
    if (p.frozen || p.size <= 0) continue;
    const Span s{p.offset, p.offset + p.size};
    size_t k = n++;
    for (; k > 0 && (out[k - 1].begin > s.begin || (out[k - 1].begin == s.begin && out[k - 1].end > s.end)); --k)
      out[k] = out[k - 1];
    out[k] = s;
  }
  size_t merged = 0;
  for (size_t i = 0; i < n; ++i) {
    if (merged > 0 && out[i].begin <= out[merged - 1].end) {
      if (out[i].end > out[merged - 1].end) out[merged - 1].end = out[i].end;
    } else {
      out[merged++] = out[i];
    }
  }
  return merged;
}

namespace {

constexpr int64_t kTableAlign = 16;

int64_t tableSize(int64_t size) { return (size + kTableAlign - 1) / kTableAlign * kTableAlign; }

// Every parameter inside [0, paramCount) in both orders.
bool fits(const ParamExtent *params, size_t count, int64_t paramCount) {
  int64_t top = 0;
  for (size_t i = 0; i < count; ++i) {
    const ParamExtent &p = params[i];
    if (p.size < 0 || p.offset < 0 || p.offset + p.size > paramCount || top + p.size > paramCount) return false;
    top += tableSize(p.size);
  }
  return true;
}

// The arena is already in the table's order (as every arena was before sibling weights moved,
// and as hand-built tables are): the file holds it as it is.
bool inTableOrder(const ParamExtent *params, size_t count) {
  for (size_t i = 1; i < count; ++i)
    if (params[i].offset < params[i - 1].offset + params[i - 1].size) return false;
  return true;
}

bool copyOrder(const ParamExtent *params, size_t count, int64_t paramCount, const void *fromBytes, void *toBytes,
               bool toTable) {
  const auto *from = static_cast<const unsigned char *>(fromBytes);
  auto *to = static_cast<unsigned char *>(toBytes);
  constexpr size_t F = sizeof(float);
  if (inTableOrder(params, count)) {
    std::memcpy(to, from, size_t(paramCount) * F);
    return true;
  }
  if (!fits(params, count, paramCount)) return false;
  if (toTable) std::memset(to, 0, size_t(paramCount) * F);
  int64_t top = 0;
  for (size_t i = 0; i < count; ++i) {
    const int64_t src = toTable ? params[i].offset : top, dst = toTable ? top : params[i].offset;
    std::memcpy(to + size_t(dst) * F, from + size_t(src) * F, size_t(params[i].size) * F);
    top += tableSize(params[i].size);
  }
  return true;
}

}  // namespace

bool arenaToTableOrder(const ParamExtent *params, size_t count, int64_t paramCount, const void *arena, void *table) {
  return copyOrder(params, count, paramCount, arena, table, true);
}

bool tableToArenaOrder(const ParamExtent *params, size_t count, int64_t paramCount, const void *table, void *arena) {
  return copyOrder(params, count, paramCount, table, arena, false);
}

}  // namespace mtlc::core
