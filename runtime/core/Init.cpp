#include "runtime/core/Init.h"

#include <cmath>

namespace mtlc::core {

bool initTensor(rt::Init init, float *w, int64_t size, int64_t fanIn, int64_t rows, rt::Rng &rng,
                double bound) {
  switch (init) {
    case rt::Init::UniformFanIn:
    case rt::Init::Uniform: {
      if (init == rt::Init::UniformFanIn) bound = 1.0 / std::sqrt(double(fanIn > 0 ? fanIn : 1));
      for (int64_t i = 0; i < size; ++i) w[i] = float(-bound + 2.0 * bound * rt::uniform01(rng));
      return true;
    }
    case rt::Init::Ones:
      for (int64_t i = 0; i < size; ++i) w[i] = 1.0f;
      return true;
    case rt::Init::Zeros:
      for (int64_t i = 0; i < size; ++i) w[i] = 0.0f;
      return true;
    case rt::Init::Normal:
      for (int64_t i = 0; i < size; ++i) w[i] = float(rt::standardNormal(rng));
      return true;
    case rt::Init::CrossStitch: {
      const int64_t T = rows;
      if (T * T != size) return false;
      const float off = T > 1 ? 0.1f / float(T - 1) : 0.0f;
      for (int64_t r = 0; r < T; ++r)
        for (int64_t c = 0; c < T; ++c) w[r * T + c] = r == c ? (T > 1 ? 0.9f : 1.0f) : off;
      return true;
    }
  }
  return false;
}

}  // namespace mtlc::core
