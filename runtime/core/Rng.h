// Platform-independent random numbers on top of std::mt19937_64.
//
// std::mt19937_64's output sequence is fixed by the C++ standard, but the standard distributions
// (uniform_int_distribution, uniform_real_distribution) are not: libstdc++, libc++ and MSVC give
// different numbers. Everything mtlc draws goes through the two helpers below instead, so a seed
// means the same shuffle and the same initial weights everywhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace mtlc::rt {

using Rng = std::mt19937_64;

// Uniform double in [0, 1): the top 53 bits of one draw, times 2^-53.
inline double uniform01(Rng& rng) { return double(rng() >> 11) * 0x1.0p-53; }

// Uniform integer in [0, bound), bound >= 1, without modulo bias: draws below
// threshold = 2^64 mod bound are rejected, so the accepted range is a multiple of bound.
inline uint64_t uniformBelow(Rng& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // == 2^64 mod bound
  for (;;) {
    uint64_t x = rng();
    if (x >= threshold) return x % bound;
  }
}

// Standard normal N(0, 1) by Box–Muller from two uniform01 draws (the cosine branch only).
inline double standardNormal(Rng& rng) {
  const double u1 = 1.0 - uniform01(rng);  // (0, 1]: the log is finite
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// SplitMix64 finaliser: a cheap, well-mixed hash used to derive per-step seeds.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace mtlc::rt
