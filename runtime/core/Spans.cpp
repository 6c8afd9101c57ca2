#include "runtime/core/Spans.h"

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

}  // namespace mtlc::core
