// A flat, 64-byte aligned float buffer: the params, grads, activation and optimizer arenas are all
// one of these. Zero-filled on allocation; movable, not copyable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace mtlc::rt {

class Arena {
 public:
  Arena() = default;
  explicit Arena(int64_t floats) { resize(floats); }

  // Reallocates (dropping the contents) and zero-fills.
  void resize(int64_t floats) {
    size_ = floats < 0 ? 0 : floats;
    // aligned_alloc wants a size that is a multiple of the alignment; allocate at least one line.
    size_t bytes = (size_t(size_) * sizeof(float) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    data_.reset(static_cast<float*>(p));
  }
  void zero() {
    if (size_) std::memset(data_.get(), 0, size_t(size_) * sizeof(float));
  }

  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  int64_t size() const { return size_; }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t size_ = 0;
};

}  // namespace mtlc::rt
