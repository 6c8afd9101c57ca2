#include "runtime/train/Report.h"

#include "runtime/train/Metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace mtlc::rt {

using ojson = nlohmann::ordered_json;

// 4 decimals, or 3 significant digits in exponent form for small values (a loss of 2.1e-05
// should not print as 0.0000); "-" for a metric that does not apply.
std::string fmtValue(double v) {
  if (std::isnan(v)) return "-";
  if (v != 0 && std::fabs(v) < 1e-3) return fmt::format("{:.2e}", v);
  return fmt::format("{:.4f}", v);
}

// "loss 0.1234  accuracy 0.9000  auc 0.9500": the loss, then the task's metrics in program order.
std::string metricsLine(const TaskSpec& task, const TaskResult& r) {
  std::string s = fmt::format("loss {}", fmtValue(r.metrics.at("loss")));
  for (Metric m : task.metrics) s += fmt::format("  {} {}", metricName(m), fmtValue(r.metrics.at(metricName(m))));
  return s;
}

ojson metricsJson(const TaskSpec& task, const TaskResult& r) {
  ojson j = ojson::object();
  const double loss = r.metrics.at("loss");
  j["loss"] = std::isnan(loss) ? ojson(nullptr) : ojson(loss);  // no label of the task in the data
  for (Metric m : task.metrics) {
    double v = r.metrics.at(metricName(m));
    j[metricName(m)] = std::isnan(v) ? ojson(nullptr) : ojson(v);
  }
  return j;
}

namespace {

// A vocabulary row's call as a program spells it: each argument that is required, named `always`
// or not at its default (`list` holds an IntList argument's values).
template <class Spec>
std::string callString(const vocab::Entry& row, const Spec& spec, const std::vector<int64_t>& list,
                       const char* always = "") {
  std::vector<std::string> args;
  for (const vocab::Arg& a : row.args) {
    if (!a.name) break;
    if (a.type == vocab::ArgType::IntList) {
      args.push_back(fmt::format("{}={{{}}}", a.name, fmt::join(list, ", ")));
      continue;
    }
    const double v = *spec.setting(a.name);
    if (!a.required && v == a.def && std::string(a.name) != always) continue;
    if (a.type == vocab::ArgType::Bool) args.push_back(fmt::format("{}={}", a.name, v != 0));
    else args.push_back(fmt::format("{}={}", a.name, v));
  }
  return args.empty() ? row.name : fmt::format("{}({})", row.name, fmt::join(args, ", "));
}

}  // namespace

// The optimizer as a program spells it: the learning rate, then each argument that is not its
// vocabulary default ("sgd(lr=0.1, momentum=0.9)").
std::string optimizerString(const OptimizerSpec& o) { return callString(vocab::row(o.kind), o, {}, "lr"); }

std::string scheduleString(const TrainSpec& ts) {
  std::vector<std::string> parts;
  if (ts.schedule) parts.push_back(callString(vocab::row(ts.schedule->kind), *ts.schedule, ts.schedule->at));
  if (ts.warmup > 0) parts.push_back(fmt::format("warmup {}", ts.warmup));
  return fmt::format("{}", fmt::join(parts, ", "));
}

// The final table: one row per task and data split, one column per metric that any task has.
void printSummary(std::ostream& out, const ModelSpec& spec, const TrainReport& r) {
  std::vector<std::string> cols{"loss"};
  for (const TaskSpec& t : spec.tasks)
    for (Metric m : t.metrics)
      if (std::find(cols.begin(), cols.end(), metricName(m)) == cols.end()) cols.push_back(metricName(m));
  size_t taskWidth = 4;
  for (const TaskSpec& t : spec.tasks) taskWidth = std::max(taskWidth, t.name.size());
  std::string head = fmt::format("{:<{}}  {:<5}", "task", taskWidth, "data");
  for (const std::string& c : cols) head += fmt::format("  {:>{}}", c, std::max<size_t>(9, c.size()));
  out << head << '\n';
  for (size_t t = 0; t < spec.tasks.size(); ++t)
    for (const auto* results : {&r.train, &r.test}) {
      if (t >= results->size()) continue;
      const TaskResult& res = (*results)[t];
      std::string line = fmt::format("{:<{}}  {:<5}", res.task, taskWidth, results == &r.train ? "train" : "test");
      for (const std::string& c : cols) {
        auto it = res.metrics.find(c);
        line += fmt::format("  {:>{}}", it == res.metrics.end() ? "" : fmtValue(it->second),
                            std::max<size_t>(9, c.size()));
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();  // blank cells at the end
      out << line << '\n';
    }
}

std::vector<std::string> taskNames(const ModelSpec& spec) {
  std::vector<std::string> names;
  for (const TaskSpec& t : spec.tasks) names.push_back(t.name);
  return names;
}

}  // namespace mtlc::rt
