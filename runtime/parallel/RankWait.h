// Waiting for the other ranks of a data-parallel job (MpiCommunicator.cpp, SharedGradientSum.cpp):
// the clock the waits are timed with, and the error when the others stop answering.
#pragma once

#include "spec/Error.h"

#include <chrono>

namespace mtlc::rt {

inline double monotonicSeconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// No progress for `timeout` seconds (MTLC_MPI_TIMEOUT) while `what`: the job is stuck.
[[noreturn]] inline void throwNoAnswer(int rank, int size, double timeout, const char* what) {
  throwError("rank {} of {}: no answer from the other ranks for {:.0f} s while {} (a rank is lost or stuck; "
             "MTLC_MPI_TIMEOUT sets the limit)",
             rank, size, timeout, what);
}

}  // namespace mtlc::rt
