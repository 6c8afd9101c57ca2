// The one exception type for errors a user can cause at run time: a missing or corrupt file, a bad
// CSV cell, a label out of range, a checkpoint that does not fit the model, a loss that diverged.
// The message is complete and ready to print; it starts with the position when there is one
// ("data/x.csv:17: expected 12 columns, found 11").
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace mtlc::rt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Error("file.csv:3: bad cell `x`") in one call: throwError("{}:{}: bad cell `{}`", f, l, x).
template <typename... Args>
[[noreturn]] void throwError(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace mtlc::rt
