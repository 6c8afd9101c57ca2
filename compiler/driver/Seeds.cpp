#include "Seeds.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace mtlc::driver {

std::string seedPath(const std::string &path, uint64_t seed) {
  if (path.empty()) return path;
  const size_t slash = path.find_last_of('/');
  const size_t dot = path.find_last_of('.');
  const std::string suffix = fmt::format(".seed{}", seed);
  // A dot that starts the file name (".hidden") or belongs to a folder is not an extension.
  const size_t nameStart = slash == std::string::npos ? 0 : slash + 1;
  if (dot == std::string::npos || dot <= nameStart) return path + suffix;
  return path.substr(0, dot) + suffix + path.substr(dot);
}

std::pair<double, double> meanAndStd(const std::vector<double> &values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values)
    if (std::isfinite(v)) sum += v, ++n;
  if (n == 0) return {std::nan(""), std::nan("")};
  const double mean = sum / double(n);
  if (n == 1) return {mean, 0.0};
  double squares = 0;
  for (double v : values)
    if (std::isfinite(v)) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / double(n - 1))};
}

void SeedSummary::add(uint64_t seed, const rt::TrainReport &report, double deltaM) {
  if (runs_.empty()) fromTest_ = !report.test.empty();
  runs_.push_back({seed, fromTest_ ? report.test : report.train, deltaM, report.seconds});
}

void SeedSummary::print(std::ostream &out) const {
  if (runs_.empty()) return;
  const Run &first = runs_.front();
  size_t width = 4;
  for (const rt::TaskResult &t : first.metrics) width = std::max(width, t.task.size());
  out << fmt::format("\nover {} seeds ({}…{}): {} metrics, mean ± sample standard deviation (n − 1)\n",
                     runs_.size(), first.seed, runs_.back().seed, fromTest_ ? "test" : "train (last epoch, running)");
  out << fmt::format("{:<{}}  {:<8}  {:>12}   {}\n", "task", width, "metric", "mean", "std");
  for (size_t t = 0; t < first.metrics.size(); ++t)
    for (const auto &[metric, unused] : first.metrics[t].metrics) {
      std::vector<double> values;
      for (const Run &r : runs_) values.push_back(r.metrics.at(t).metrics.at(metric));
      const auto [mean, sd] = meanAndStd(values);
      out << fmt::format("{:<{}}  {:<8}  {:>12.6g} ± {:.4g}\n", first.metrics[t].task, width, metric, mean, sd);
    }
  std::vector<double> deltas, seconds;
  for (const Run &r : runs_) deltas.push_back(100 * r.deltaM), seconds.push_back(r.seconds);
  const auto [dm, dmSd] = meanAndStd(deltas);
  if (!std::isnan(dm)) out << fmt::format("Δm {:+.4f}% ± {:.4f}%\n", dm, dmSd);
  const auto [s, sSd] = meanAndStd(seconds);
  out << fmt::format("training time {:.2f}s ± {:.2f}s per run\n", s, sSd) << std::flush;
}

}  // namespace mtlc::driver
