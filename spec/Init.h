// How a parameter tensor is initialised (PyTorch's defaults for each layer kind). Its own header,
// free of the standard library, because the embedded runtime reads it too: an AOT bundle's
// description names each parameter's initialiser by these numbers (compiler/aot/Aot.cpp).
#pragma once

namespace mtlc::rt {

enum class Init {
  UniformFanIn = 0,  // U(-1/sqrt(fan_in), +1/sqrt(fan_in)): nn.Linear / nn.Conv2d weight and bias
  Ones = 1,          // nn.LayerNorm weight
  Zeros = 2,         // nn.LayerNorm bias
  Normal = 3,        // N(0, 1): nn.Embedding weight
  CrossStitch = 4,   // a [T, T] mixing matrix: 0.9 on the diagonal, 0.1/(T-1) elsewhere (T = rows)
  Uniform = 5,       // U(-bound, +bound), the bound given (ParamSpec::bound): DSelect-k's gates
};

}  // namespace mtlc::rt
