#include "runtime/train/Init.h"

#include "spec/Error.h"
#include "runtime/core/Init.h"
#include "runtime/core/Rng.h"

namespace mtlc::rt {

void initParams(const ModelSpec& spec, uint64_t seed, float* params) {
  Rng rng(seed);
  for (const ParamSpec& p : spec.params) {
    if (p.offset < 0 || p.size < 0 || p.offset + p.size > spec.paramCount)
      throwError("internal: parameter `{}` [{}, {}) lies outside the {}-element arena", p.name, p.offset,
                 p.offset + p.size, spec.paramCount);
    const int64_t rows = p.shape.empty() ? 1 : p.shape[0];
    if (!core::initTensor(p.init, params + p.offset, p.size, p.fanIn, rows, rng, p.bound))
      throwError("internal: cross-stitch parameter `{}` has {} elements, expected {}x{}", p.name, p.size, rows, rows);
  }
}

}  // namespace mtlc::rt
