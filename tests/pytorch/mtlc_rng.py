"""mtlc's random numbers in plain Python (runtime/Rng.h): std::mt19937_64, uniformBelow, mix64.

The C++ standard fixes mt19937_64's output sequence, so this generator written from its
definition (Matsumoto & Nishimura's MT19937-64 parameters) gives the same numbers as libstdc++.
self_check() asserts the standard's own check value: the 10000th number of a default-seeded
(5489) engine is 9981545732273789042.
"""
MASK = (1 << 64) - 1


class MT19937_64:
    N, M = 312, 156
    MATRIX_A = 0xB5026F5AA96619E9
    UPPER, LOWER = 0xFFFFFFFF80000000, 0x7FFFFFFF

    def __init__(self, seed=5489):
        self.mt = [seed & MASK]
        for i in range(1, self.N):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK)
        self.index = self.N

    def _twist(self):
        mt, n, m = self.mt, self.N, self.M
        for i in range(n):
            y = (mt[i] & self.UPPER) | (mt[(i + 1) % n] & self.LOWER)
            mt[i] = mt[(i + m) % n] ^ (y >> 1) ^ (self.MATRIX_A if y & 1 else 0)
        self.index = 0

    def __call__(self):
        if self.index >= self.N:
            self._twist()
        x = self.mt[self.index]
        self.index += 1
        x ^= (x >> 29) & 0x5555555555555555
        x ^= (x << 17) & 0x71D67FFFEDA60000
        x ^= (x << 37) & 0xFFF7EEE000000000
        x ^= x >> 43
        return x & MASK


def uniform_below(rng, bound):
    """Rng.h uniformBelow: rejection of draws below 2^64 mod bound, then x mod bound."""
    threshold = ((1 << 64) - bound) % bound
    while True:
        x = rng()
        if x >= threshold:
            return x % bound


def mix64(x):
    """Rng.h mix64 (the SplitMix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def shuffle(rng, values):
    """Fisher-Yates as Batcher.h draws it: for i = n-1 down to 1, swap i with uniform_below(i + 1)."""
    for i in range(len(values) - 1, 0, -1):
        j = uniform_below(rng, i + 1)
        values[i], values[j] = values[j], values[i]


def self_check():
    rng = MT19937_64()
    for _ in range(9999):
        rng()
    assert rng() == 9981545732273789042, "mt19937_64 does not match the C++ standard's check value"
