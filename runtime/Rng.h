// Platform-independent random numbers on top of std::mt19937_64.
//
// std::mt19937_64's output sequence is fixed by the C++ standard, but the standard distributions
// (uniform_int_distribution, uniform_real_distribution) are not: libstdc++, libc++ and MSVC give
// different numbers. Everything mtlc draws goes through the two helpers below instead, so a seed
// means the same shuffle and the same initial weights everywhere.
#pragma once

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

// SplitMix64 finaliser: a cheap, well-mixed hash used to derive per-step seeds.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace mtlc::rt
