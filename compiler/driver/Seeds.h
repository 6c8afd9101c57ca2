// `mtlc train --seeds N`: the run repeated with seeds s, s+1, …, s+N−1 (s: --seed, else the
// program's `seed`), in that order, each exactly as `mtlc train --seed s+i` would run it (with
// --single-task: its baselines and Δm too, trained with the same seed), then a summary: each
// task's test metrics (the train split's running metrics without a test source) and Δm as
// mean ± standard deviation over the runs. The deviation is the sample one (divisor N − 1), as
// numpy.std(ddof=1) and LibMTL's multi-seed tables report it; N = 1 prints ± 0.
//
// The files of --log, --save and --save-best get a per-seed suffix before their extension:
// run.jsonl → run.seed7.jsonl (no extension: run → run.seed7), so that no run overwrites another.
// --resume continues one run and makes no sense with N > 1: parseOptions refuses it.
#pragma once

#include "runtime/train/Trainer.h"

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace mtlc::driver {

// `path` with ".seed<seed>" before its extension (the last dot of the file name); "" stays "".
std::string seedPath(const std::string &path, uint64_t seed);

// The runs' results, gathered one seed at a time and summarised at the end.
class SeedSummary {
 public:
  // One run's report and its Δm (NaN: not asked for, or undefined).
  void add(uint64_t seed, const rt::TrainReport &report, double deltaM);
  // The table: per task and metric, and Δm (as a percentage), mean ± std over the runs.
  void print(std::ostream &out) const;

 private:
  struct Run {
    uint64_t seed;
    std::vector<rt::TaskResult> metrics;
    double deltaM;
    double seconds;
  };
  std::vector<Run> runs_;
  bool fromTest_ = true;
};

// Mean and sample standard deviation (n − 1; 0 for one value) of the finite values; NaN mean when
// there is none.
std::pair<double, double> meanAndStd(const std::vector<double> &values);

}  // namespace mtlc::driver
