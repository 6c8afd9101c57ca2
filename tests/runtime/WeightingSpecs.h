// Specs for the weighting tests (test_weighting.cpp, test_loss_methods.cpp).
#pragma once

#include "TestUtil.h"

namespace mtlc::rt::test {

// A spec named "m" with T tasks t0, t1, … and the strategy named `weighting`; no parameters.
inline ModelSpec specWithTasks(int64_t T, const std::string &weighting) {
  ModelSpec s;
  s.name = "m";
  for (int64_t t = 0; t < T; ++t) {
    TaskSpec ts;
    ts.name = "t" + std::to_string(t);
    s.tasks.push_back(ts);
  }
  s.train.weighting = weightingNamed(weighting);
  return s;
}

}  // namespace mtlc::rt::test
