"""Replays of the random draws of the loss-level weightings (runtime/train/Weighting.h), from
their documentation alone: RLW's per-step weights."""
import math

import mtlc_rng


def uniform01(rng):
    return (rng() >> 11) * 2.0 ** -53


def rlw_draw(seed, step, T):
    """Weighting.h rlwWeights before the softmax: an mt19937_64 seeded with
    mix64(mix64(seed) ^ step) ^ 0x524C, one Box-Muller (cosine branch) normal per task in order."""
    rng = mtlc_rng.MT19937_64(mtlc_rng.mix64(mtlc_rng.mix64(seed) ^ step) ^ 0x524C)
    z = []
    for _ in range(T):
        u1 = 1.0 - uniform01(rng)
        u2 = uniform01(rng)
        z.append(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))
    return z
