// Owned memory for the core (and the embedded runtime, which links it): a growable array and a
// growable string on malloc, because operator new and the standard containers live in libstdc++,
// which a C program linking libmtlc_embed.a does not have. An allocation failure is reported by
// the return value (List::push) or the `oom` flag (Text), never thrown.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mtlc::core {

// A growable array of trivially copyable elements.
template <class T>
struct List {
  T *items = nullptr;
  size_t size = 0, cap = 0;
  List() = default;
  List(const List &) = delete;
  List &operator=(const List &) = delete;
  ~List() { std::free(items); }
  bool push(const T &v) {
    if (size == cap) {
      const size_t grown = cap ? 2 * cap : 8;
      void *p = std::realloc(items, grown * sizeof(T));
      if (!p) return false;
      items = static_cast<T *>(p);
      cap = grown;
    }
    items[size++] = v;
    return true;
  }
  T &operator[](size_t i) { return items[i]; }
  const T &operator[](size_t i) const { return items[i]; }
};

// A growable NUL-terminated string; `oom` records a failed allocation (the text is then cut).
struct Text {
  char *s = nullptr;
  size_t len = 0, cap = 0;
  bool oom = false;
  Text() = default;
  Text(const Text &) = delete;
  Text &operator=(const Text &) = delete;
  ~Text() { std::free(s); }
  void append(const char *p, size_t n) {
    if (len + n + 1 > cap) {
      size_t grown = cap ? cap : 64;
      while (grown < len + n + 1) grown *= 2;
      void *q = std::realloc(s, grown);
      if (!q) {
        oom = true;
        return;
      }
      s = static_cast<char *>(q);
      cap = grown;
    }
    std::memcpy(s + len, p, n);
    len += n;
    s[len] = '\0';
  }
  void add(const char *p) { append(p, std::strlen(p)); }
  void addf(const char *format, ...) __attribute__((format(printf, 2, 3))) {
    char buf[512];
    va_list ap;
    va_start(ap, format);
    const int n = std::vsnprintf(buf, sizeof buf, format, ap);
    va_end(ap);
    if (n > 0) append(buf, size_t(n) < sizeof buf ? size_t(n) : sizeof buf - 1);
  }
  void clear() {
    len = 0;
    if (s) s[0] = '\0';
  }
  const char *c_str() const { return s ? s : ""; }
  bool equals(const char *other) const { return std::strcmp(c_str(), other) == 0; }
};

// A malloc'd NUL-terminated copy of s[0, n), or nullptr when out of memory.
inline char *duplicate(const char *s, size_t n) {
  char *p = static_cast<char *>(std::malloc(n + 1));
  if (p) {
    std::memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

}  // namespace mtlc::core
