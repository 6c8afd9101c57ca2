#include "runtime/Init.h"

#include "runtime/Error.h"
#include "runtime/Rng.h"

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
    }
  }
}

}  // namespace mtlc::rt
