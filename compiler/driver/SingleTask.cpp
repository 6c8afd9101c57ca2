#include "SingleTask.h"

#include "runtime/io/Checkpoint.h"
#include "spec/Error.h"
#include "runtime/train/Init.h"
#include "runtime/train/Metrics.h"
#include "sema/Sema.h"
#include "syntax/AST.h"
#include "syntax/Parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <sstream>
#include <unistd.h>

namespace mtlc::driver {

namespace {

// "a", "a and b", "a, b and c".
std::string joinAnd(const std::vector<std::string> &words) {
  std::string s;
  for (size_t i = 0; i < words.size(); ++i) s += (i == 0 ? "" : i + 1 == words.size() ? " and " : ", ") + words[i];
  return s;
}

// The program with only task `keep`: the other task declarations and their data bindings go,
// and so does the `weighting` setting (the strategies that balance tasks need two or more).
ast::Program onlyTask(const ast::Program &program, size_t keep) {
  ast::Program p = program;
  std::vector<std::string> dropped;
  for (size_t t = 0; t < program.tasks.size(); ++t)
    if (t != keep) dropped.push_back(program.tasks[t].name);
  p.tasks = {program.tasks[keep]};
  p.order.clear();
  for (ast::Program::ItemRef r : program.order) {
    if (r.kind == ast::Program::ItemKind::Task) {
      if (r.index != keep) continue;
      r.index = 0;
    }
    p.order.push_back(r);
  }
  for (ast::DataBlock &d : p.datas)
    std::erase_if(d.bindings, [&](const ast::Binding &b) {
      return std::find(dropped.begin(), dropped.end(), b.target) != dropped.end();
    });
  for (ast::TrainBlock &t : p.trains)
    std::erase_if(t.settings, [](const ast::Setting &s) { return s.name == "weighting"; });
  return p;
}

// The multi-task run's initial parameters as a file --init can read: the user's --init file, or
// the seed's initialisation written to a temporary file (removed when this goes away).
class InitialParams {
 public:
  InitialParams(const rt::ModelSpec &spec, const rt::TrainOptions &options) {
    if (!options.initPath.empty()) {
      path_ = options.initPath;
      return;
    }
    path_ = (std::filesystem::temp_directory_path() / fmt::format("mtlc-single-task-{}.safetensors", getpid()))
                .string();
    std::vector<float> params(static_cast<size_t>(spec.paramCount), 0.0f);
    rt::initParams(spec, options.seed.value_or(spec.train.seed), params.data());
    rt::saveCheckpoint(path_, spec, params.data());
    owned_ = true;
  }
  ~InitialParams() {
    if (owned_) std::filesystem::remove(path_);
  }
  InitialParams(const InitialParams &) = delete;
  InitialParams &operator=(const InitialParams &) = delete;
  const std::string &path() const { return path_; }

 private:
  std::string path_;
  bool owned_ = false;
};

// The program parsed again (the checked program keeps only its typed model).
ast::Program parseAgain(const CheckedProgram &checked) {
  Diagnostics diags(checked.displayName, checked.text);
  std::optional<ast::Program> program = parseProgram(checked.displayName, checked.text, diags);
  if (!program) rt::throwError("internal: {} no longer parses", checked.displayName);
  return std::move(*program);
}

// Task `t` alone, checked; an Error with sema's located diagnostics when it is not a valid model
// (a cross_stitch block needs two columns).
sema::Model checkAlone(const CheckedProgram &checked, const ast::Program &program, size_t t) {
  Diagnostics diags(checked.displayName, checked.text);
  std::optional<sema::Model> model =
      sema::analyze(onlyTask(program, t), checked.path, diags, checked.dataOverrides);
  if (!model)
    rt::throwError("--single-task: task `{}` cannot be trained alone:\n{}", program.tasks[t].name,
                   diags.str(false));
  model->tasks.front().weight = 1.0;
  return std::move(*model);
}

// Task `t` of the program trained alone: its test results.
std::vector<rt::TaskResult> trainAlone(const Options &o, const CheckedProgram &checked, const ast::Program &program,
                                       size_t t, const rt::TrainOptions &options, const std::string &initPath,
                                       std::ostream &out) {
  const std::string &name = program.tasks[t].name;
  sema::Model model = checkAlone(checked, program, t);
  CheckedProgram alone;
  alone.path = checked.path;
  alone.displayName = checked.displayName;
  alone.text = checked.text;
  alone.dataOverrides = checked.dataOverrides;
  alone.model = std::move(model);
  CompiledProgram compiled = compileProgram(alone, o.optLevel > 0, false);

  rt::TrainOptions single = options;
  single.initPath = initPath;
  single.logPath.clear();  // the files named on the command line belong to the multi-task run
  single.savePath.clear();
  single.saveBestPath.clear();
  single.resumePath.clear();
  single.checkpointEvery = 0;
  single.quiet = true;
  std::ostringstream trainerOutput;  // the usual report, not repeated for every baseline
  rt::TrainReport r = rt::train(compiled.spec, single, trainerOutput);
  if (r.interruptedBy)
    rt::throwError("--single-task: interrupted by {} while training task `{}` alone (no Δm)",
                   r.interruptedBy == SIGINT ? "SIGINT" : "SIGTERM", name);
  int64_t parameters = 0;
  for (const rt::ParamSpec &p : compiled.spec.params) parameters += p.size;
  out << fmt::format("  {}: {} parameters, {} steps in {:.1f}s\n", name, parameters, r.steps, r.seconds)
      << std::flush;
  return r.test;
}

}  // namespace

void checkSingleTaskPossible(const CheckedProgram &checked, const rt::ModelSpec &spec,
                             const rt::TrainOptions &options) {
  if (!spec.data.test.present() && !options.dataOverrides.count("test"))
    rt::throwError("--single-task compares test metrics, but model `{}` has no `test` source in its data block "
                   "(add one, or pass --data test=PATH)",
                   spec.name);
  const ast::Program program = parseAgain(checked);
  for (size_t t = 0; t < program.tasks.size(); ++t) checkAlone(checked, program, t);
}

double reportSingleTask(const Options &o, const CheckedProgram &checked, const rt::ModelSpec &spec,
                        const rt::TrainReport &multi, const rt::TrainOptions &options, std::ostream &out) {
  const ast::Program program = parseAgain(checked);
  const InitialParams init(spec, options);

  out << "\nsingle-task baselines (each task alone: same blocks, head, loss, data and settings; weight 1, "
         "fixed weighting; the multi-task run's initial parameters):\n";
  std::vector<std::vector<rt::TaskResult>> single;
  for (size_t t = 0; t < spec.tasks.size(); ++t)
    single.push_back(trainAlone(o, checked, program, t, options, init.path(), out));

  size_t taskWidth = 4, metricWidth = 8;
  std::vector<std::string> lowerBetter{"loss"};  // the footer's list, in the order first met
  for (const rt::TaskSpec &t : spec.tasks) {
    taskWidth = std::max(taskWidth, t.name.size());
    for (rt::Metric m : t.metrics) {
      const std::string name = rt::metricName(m);
      metricWidth = std::max(metricWidth, name.size());
      if (rt::lowerIsBetter(name) && std::find(lowerBetter.begin(), lowerBetter.end(), name) == lowerBetter.end())
        lowerBetter.push_back(name);
    }
  }
  out << fmt::format("\n{:<{}}  {:<{}}  {:>12}  {:>12}  {:>10}\n", "task", taskWidth, "metric", metricWidth,
                     "multi-task", "single-task", "change");
  double sum = 0;
  int64_t tasksCounted = 0;
  std::vector<std::string> undefined;
  for (size_t t = 0; t < spec.tasks.size(); ++t) {
    const rt::TaskSpec &task = spec.tasks[t];
    std::vector<std::string> metrics;
    for (rt::Metric m : task.metrics) metrics.push_back(rt::metricName(m));
    if (metrics.empty()) metrics.push_back("loss");
    double taskSum = 0;
    int64_t counted = 0;
    for (const std::string &m : metrics) {
      const double a = multi.test.at(t).metrics.at(m), b = single.at(t).front().metrics.at(m);
      const double change = rt::relativeImprovement(m, a, b);
      std::string shown = std::isnan(change) ? "undefined" : fmt::format("{:+.4f}%", 100 * change);
      out << fmt::format("{:<{}}  {:<{}}  {:>12.6g}  {:>12.6g}  {:>10}\n", task.name, taskWidth, m, metricWidth, a, b,
                         shown);
      if (std::isnan(change)) {
        undefined.push_back(task.name + " " + m);
        continue;
      }
      taskSum += change;
      ++counted;
    }
    if (counted > 0) sum += taskSum / double(counted), ++tasksCounted;
  }
  if (!undefined.empty())
    out << fmt::format("left out (a baseline of 0 or no value): {}\n", fmt::join(undefined, ", "));
  const double deltaM = tasksCounted > 0 ? sum / double(tasksCounted) : std::nan("");
  if (std::isnan(deltaM))
    out << "Δm undefined (no metric could be compared)\n";
  else
    out << fmt::format("Δm {:+.4f}% (mean over {} task{} of each task's mean relative change; positive: the "
                       "multi-task model is better; {} count{} lower as better)\n",
                       100 * deltaM, tasksCounted, tasksCounted == 1 ? "" : "s", joinAnd(lowerBetter),
                       lowerBetter.size() == 1 ? "s" : "");
  out << std::flush;
  return deltaM;
}

}  // namespace mtlc::driver
