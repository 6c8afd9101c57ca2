#include "runtime/train/Init.h"

#include "runtime/Error.h"
#include "runtime/core/Rng.h"

#include <cmath>

namespace mtlc::rt {

void initParams(const ModelSpec& spec, uint64_t seed, float* params) {
  Rng rng(seed);
  for (const ParamSpec& p : spec.params) {
    if (p.offset < 0 || p.size < 0 || p.offset + p.size > spec.paramCount)
      throwError("internal: parameter `{}` [{}, {}) lies outside the {}-element arena", p.name, p.offset,
                 p.offset + p.size, spec.paramCount);
    float* w = params + p.offset;
    switch (p.init) {
      case Init::UniformFanIn: {
        const double bound = 1.0 / std::sqrt(double(p.fanIn > 0 ? p.fanIn : 1));
        for (int64_t i = 0; i < p.size; ++i) w[i] = float(-bound + 2.0 * bound * uniform01(rng));
        break;
      }
      case Init::Ones:
        for (int64_t i = 0; i < p.size; ++i) w[i] = 1.0f;
        break;
      case Init::Zeros:
        for (int64_t i = 0; i < p.size; ++i) w[i] = 0.0f;
        break;
      case Init::Normal:
        for (int64_t i = 0; i < p.size; ++i) w[i] = float(standardNormal(rng));
        break;
      case Init::CrossStitch: {
        const int64_t T = p.shape.empty() ? 1 : p.shape[0];
        if (T * T != p.size)
          throwError("internal: cross-stitch parameter `{}` has {} elements, expected {}x{}", p.name, p.size, T, T);
        const float off = T > 1 ? 0.1f / float(T - 1) : 0.0f;
        for (int64_t r = 0; r < T; ++r)
          for (int64_t c = 0; c < T; ++c) w[r * T + c] = r == c ? (T > 1 ? 0.9f : 1.0f) : off;
        break;
      }
    }
  }
}

}  // namespace mtlc::rt
