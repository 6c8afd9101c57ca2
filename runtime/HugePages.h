// Large buffers on transparent huge pages. A batch gathers random rows of the data set (Fashion-MNIST's
// training images are 188 MB as floats), and with 4 KiB pages nearly every row starts with a TLB
// miss, which a virtual machine's nested page tables make several memory accesses long. Linux
// backs memory with 2 MiB pages where the program asks (madvise(MADV_HUGEPAGE)) when
// /sys/kernel/mm/transparent_hugepage/enabled says `madvise`, the common default; with `always`
// it does anyway, with `never` the advice is ignored and nothing else changes.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mtlc::rt {

// std::allocator, except that blocks of kHugePageBytes or more are 2 MiB-aligned and advised to
// use huge pages before anything touches them.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr size_t kHugePageBytes = size_t(2) << 20;

  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U> &) {}

  T *allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return std::allocator<T>().allocate(n);
    const size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void *p = std::aligned_alloc(kHugePageBytes, rounded);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE);  // advice: failure only means small pages
#endif
    return static_cast<T *>(p);
  }
  void deallocate(T *p, size_t n) {
    if (n * sizeof(T) < kHugePageBytes) std::allocator<T>().deallocate(p, n);
    else std::free(p);
  }
  template <class U>
  bool operator==(const HugePageAllocator<U> &) const { return true; }
};

// The storage of a data set's fields.
using HugeFloats = std::vector<float, HugePageAllocator<float>>;

}  // namespace mtlc::rt
