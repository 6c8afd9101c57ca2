#include "runtime/train/Schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mtlc::rt {

namespace {

// torch's get_lr for last_epoch = e, from the rate `prev` of epoch e − 1 (e ≥ 1).
double nextLr(const ScheduleSpec& s, double base, double prev, int64_t e, int64_t tMax) {
  switch (s.kind) {
    case ScheduleKind::Step: return e % int64_t(s.every) == 0 ? prev * s.gamma : prev;
    case ScheduleKind::MultiStep: {
      for (int64_t at : s.at)
        if (at == e) return prev * s.gamma;  // `at` is increasing: each milestone once
      return prev;
    }
    case ScheduleKind::Exponential: return prev * s.gamma;
    case ScheduleKind::Cosine: {
      const double pi = std::numbers::pi, T = double(tMax);
      const int64_t period = 2 * tMax, phase = ((e - 1 - tMax) % period + period) % period;
      if (phase == 0) return prev + (base - s.etaMin) * (1 - std::cos(pi / T)) / 2;
      return (1 + std::cos(pi * double(e) / T)) / (1 + std::cos(pi * double(e - 1) / T)) * (prev - s.etaMin) +
             s.etaMin;
    }
  }
  return prev;
}

}  // namespace

double epochLr(const TrainSpec& ts, int64_t epoch, int64_t epochs) {
  const double lr = ts.optimizer.lr;
  if (!ts.schedule) return lr;
  const ScheduleSpec& s = *ts.schedule;
  const int64_t tMax = s.tMax > 0 ? int64_t(s.tMax) : std::max<int64_t>(epochs, 1);
  double rate = lr;
  for (int64_t e = 1; e <= epoch; ++e) rate = nextLr(s, lr, rate, e, tMax);
  return rate;
}

double stepLr(const TrainSpec& ts, int64_t step, double epochRate) {
  return step <= ts.warmup ? ts.optimizer.lr * double(step) / double(ts.warmup) : epochRate;
}

}  // namespace mtlc::rt
