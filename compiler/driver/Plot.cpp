#include "Plot.h"

#include "spec/Error.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <fcntl.h>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace mtlc::driver {

namespace {

using ojson = nlohmann::ordered_json;

struct Point {
  double x, y;
};

struct TaskCurves {
  std::string name;
  std::vector<Point> trainLoss, weight, testLoss;
  std::vector<std::pair<std::string, std::vector<Point>>> metrics;  // in the log's order

  std::vector<Point> &metric(const std::string &m) {
    for (auto &[name, points] : metrics)
      if (name == m) return points;
    return metrics.emplace_back(m, std::vector<Point>{}).second;
  }
};

struct Curves {
  std::vector<TaskCurves> tasks;
  std::vector<Point> lr;  // each step's learning rate (logs before it was logged have none)
  int64_t steps = 0, epochs = 0;
  std::map<int64_t, int64_t> epochEnds;  // epoch -> its last step

  TaskCurves &task(const std::string &name) {
    for (TaskCurves &t : tasks)
      if (t.name == name) return t;
    tasks.push_back({name, {}, {}, {}, {}});
    return tasks.back();
  }
};

bool isNumber(const ojson &j) { return j.is_number(); }

// Reads the log: step records {"step", "epoch", "loss", "lr", "tasks": {t: {"loss", "weight"}}} and
// test records {"epoch", "test": {t: {"loss", metric: value|null}}}. A test record is drawn at
// the last step of its epoch (the step the evaluation followed).
Curves readLog(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) rt::throwError("{}: cannot read the log: {}", path, std::strerror(errno));
  Curves c;
  std::map<int64_t, int64_t> &lastStepOfEpoch = c.epochEnds;
  std::vector<std::pair<int64_t, ojson>> tests;  // line, record
  std::string line;
  for (int64_t lineNo = 1; std::getline(in, line); ++lineNo) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ojson j = ojson::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      rt::throwError("{}:{}: not a JSON object (a `mtlc train --log` file has one per line)", path, lineNo);
    auto bad = [&](const char *what) {
      rt::throwError("{}:{}: {} (expected {{\"step\": N, \"epoch\": E, \"loss\": L, \"tasks\": {{...}}}} or "
                     "{{\"epoch\": E, \"test\": {{...}}}})",
                     path, lineNo, what);
    };
    if (j.contains("step")) {
      if (!j["step"].is_number_integer() || !j.contains("epoch") || !j["epoch"].is_number_integer())
        bad("a step record needs integer `step` and `epoch`");
      if (!j.contains("tasks") || !j["tasks"].is_object() || j["tasks"].empty())
        bad("a step record needs a `tasks` object");
      const int64_t step = j["step"].get<int64_t>(), epoch = j["epoch"].get<int64_t>();
      if (j.contains("lr")) {
        if (!isNumber(j["lr"])) bad("`lr` must be a number");
        c.lr.push_back({double(step), j["lr"].get<double>()});
      }
      for (const auto &[name, v] : j["tasks"].items()) {
        if (!v.is_object() || !v.contains("loss") || !v.contains("weight") || !isNumber(v["loss"]) ||
            !isNumber(v["weight"]))
          bad(fmt::format("task `{}` needs numeric `loss` and `weight`", name).c_str());
        TaskCurves &t = c.task(name);
        t.trainLoss.push_back({double(step), v["loss"].get<double>()});
        t.weight.push_back({double(step), v["weight"].get<double>()});
      }
      c.steps = std::max(c.steps, step);
      c.epochs = std::max(c.epochs, epoch);
      lastStepOfEpoch[epoch] = std::max(lastStepOfEpoch[epoch], step);
    } else if (j.contains("test")) {
      if (!j.contains("epoch") || !j["epoch"].is_number_integer() || !j["test"].is_object())
        bad("a test record needs an integer `epoch` and a `test` object");
      tests.emplace_back(lineNo, std::move(j));
    } else {
      bad("neither a step record nor a test record");
    }
  }
  if (c.tasks.empty())
    rt::throwError("{}: no step records (is this the --log file of `mtlc train`?)", path);
  for (auto &[lineNo, j] : tests) {
    const int64_t epoch = j["epoch"].get<int64_t>();
    auto it = lastStepOfEpoch.find(epoch);
    const double x = it != lastStepOfEpoch.end() ? double(it->second) : 0.0;  // evaluated before training
    for (const auto &[name, v] : j["test"].items()) {
      if (!v.is_object())
        rt::throwError("{}:{}: test results of task `{}` are not an object", path, lineNo, name);
      TaskCurves &t = c.task(name);
      for (const auto &[metric, value] : v.items()) {
        if (value.is_null()) continue;  // the metric had no labels to work on
        if (!value.is_number())
          rt::throwError("{}:{}: test `{}` of task `{}` is not a number", path, lineNo, metric, name);
        if (metric == "loss") t.testLoss.push_back({x, value.get<double>()});
        else t.metric(metric).push_back({x, value.get<double>()});
      }
    }
  }
  return c;
}

// A trailing mean over `window` points.
std::vector<Point> movingMean(const std::vector<Point> &p, size_t window) {
  std::vector<Point> out;
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    sum += p[i].y;
    if (i >= window) sum -= p[i - window].y;
    out.push_back({p[i].x, sum / double(std::min(i + 1, window))});
  }
  return out;
}

// gnuplot single-quoted string: only the quote itself needs doubling.
std::string quoted(const std::string &s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("''") : std::string(1, ch);
  return q + "'";
}

class Script {
 public:
  // Defines datablock $dN with the points; returns its name.
  std::string data(const std::vector<Point> &points) {
    std::string name = fmt::format("$d{}", blocks_++);
    text += name + " << EOD\n";
    for (const Point &p : points) text += fmt::format("{:.9g} {:.9g}\n", p.x, p.y);
    text += "EOD\n";
    return name;
  }
  std::string text;

 private:
  int blocks_ = 0;
};

const std::string kOffsets = "set offsets 0, 0, graph 0.05, graph 0.05\n";
const char *kMetricColours[] = {"#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};

// A y range with some room when every value is the same (gnuplot would warn and guess).
void flatRange(Script &s, const std::vector<Point> &p) {
  if (p.empty()) return;
  auto [lo, hi] = std::minmax_element(p.begin(), p.end(), [](const Point &a, const Point &b) { return a.y < b.y; });
  if (hi->y - lo->y > 1e-9 * std::max(1.0, std::fabs(hi->y))) return;
  const double pad = std::max(0.05, 0.1 * std::fabs(lo->y));
  s.text += fmt::format("set yrange [{:.9g}:{:.9g}]\n", lo->y - pad, hi->y + pad);
}

void emptyPanel(Script &s, const std::string &message) {
  s.text += fmt::format("set xrange [0:1]\nset yrange [0:1]\nunset xtics\nunset ytics\n"
                        "set label 1 {} at graph 0.5, 0.5 center\nplot -1 notitle\nunset label 1\nset xtics\nset ytics\n",
                        quoted(message));
}

std::string buildScript(const Curves &c, const std::string &logPath, const std::string &pngPath, int width,
                        int height) {
  Script s;
  // noenhanced: names are shown as written (enhanced text would make `_f` a subscript).
  s.text += fmt::format("set terminal pngcairo noenhanced size {},{} font 'DejaVu Sans,10' linewidth 1.2\n", width, height);
  s.text += fmt::format("set output {}\n", quoted(pngPath));
  // Keys under each panel, so they never hide a curve; a little room above and below the data.
  s.text += "set grid lc rgb '#dddddd'\nset key below horizontal font ',9' spacing 1\nset tics nomirror\n" + kOffsets;
  // Dotted lines at the epoch boundaries (where the test points are), when there are few enough.
  if (c.epochs > 1 && c.epochs <= 50)
    for (const auto &[epoch, step] : c.epochEnds)
      if (step < c.steps)
        s.text += fmt::format("set arrow from {0}, graph 0 to {0}, graph 1 nohead dt 3 lc rgb '#aaaaaa'\n", step);
  const std::string title = fmt::format("{}: {} task{}, {} steps, {} epoch{}   (x: optimizer step; dotted: epoch ends)",
                                        std::filesystem::path(logPath).filename().string(), c.tasks.size(),
                                        c.tasks.size() == 1 ? "" : "s", c.steps, c.epochs, c.epochs == 1 ? "" : "s");
  s.text += fmt::format("set multiplot layout {},3 title {} font ',13'\n", c.tasks.size(), quoted(title));
  const size_t window = std::max<size_t>(1, size_t(c.steps) / 40);
  const std::string xlabel = "unset xlabel\nset xrange [0:*]\n";
  for (const TaskCurves &t : c.tasks) {
    // loss
    s.text += "set autoscale y\n" + xlabel;
    s.text += fmt::format("set title {}\nset ylabel 'loss'\n", quoted(fmt::format("{}: loss", t.name)));
    double lo = INFINITY, hi = -INFINITY;
    for (const auto *series : {&t.trainLoss, &t.testLoss})
      for (const Point &p : *series) lo = std::min(lo, p.y), hi = std::max(hi, p.y);
    const bool logScale = lo > 0 && hi / lo > 20;
    if (logScale) s.text += "set logscale y\nset offsets 0, 0, 0, 0\n";  // graph offsets would add decades
    std::vector<std::string> plots;
    const std::string raw = s.data(t.trainLoss);
    if (window > 1) {
      plots.push_back(fmt::format("{} with lines lc rgb '#b8cbe0' title 'train (each step)'", raw));
      plots.push_back(fmt::format("{} with lines lw 2 lc rgb '#1f77b4' title 'train (mean of {} steps)'",
                                  s.data(movingMean(t.trainLoss, window)), window));
    } else {
      plots.push_back(fmt::format("{} with lines lw 2 lc rgb '#1f77b4' title 'train'", raw));
    }
    if (!t.testLoss.empty())
      plots.push_back(fmt::format("{} with linespoints lw 2 pt 7 ps 0.8 lc rgb '#d62728' title 'test (end of epoch)'",
                                  s.data(t.testLoss)));
    s.text += fmt::format("plot {}\n", fmt::join(plots, ", \\\n     "));
    if (logScale) s.text += "unset logscale y\n" + kOffsets;
    // metrics
    s.text += "set autoscale y\n" + xlabel;
    s.text += fmt::format("set title {}\nset ylabel 'value'\n", quoted(fmt::format("{}: test metrics", t.name)));
    if (t.metrics.empty()) {
      emptyPanel(s, "no test metrics in the log");
      s.text += xlabel;
    } else {
      plots.clear();
      for (size_t m = 0; m < t.metrics.size(); ++m)
        plots.push_back(fmt::format("{} with linespoints lw 2 pt 7 ps 0.8 lc rgb '{}' title {}",
                                    s.data(t.metrics[m].second), kMetricColours[m % std::size(kMetricColours)],
                                    quoted(t.metrics[m].first)));
      s.text += fmt::format("plot {}\n", fmt::join(plots, ", \\\n     "));
    }
    // weight
    s.text += "set autoscale y\n" + xlabel;
    s.text += fmt::format("set title {}\nset ylabel 'weight'\n", quoted(fmt::format("{}: loss weight", t.name)));
    flatRange(s, t.weight);
    std::string lr;  // the learning rate on the right axis, when the log has it
    if (!c.lr.empty()) {
      s.text += "set y2tics nomirror\nset y2range [0:*]\nset y2label 'lr'\n";
      lr = fmt::format(", \\\n     {} axes x1y2 with lines lw 1.5 dt 2 lc rgb '#7f7f7f' title 'lr (right axis)'",
                       s.data(c.lr));
    }
    s.text += fmt::format("plot {} with lines lw 2 lc rgb '#2ca02c' title 'tasks.{}.weight'{}\n", s.data(t.weight),
                          t.name, lr);
    if (!c.lr.empty()) s.text += "unset y2tics\nunset y2label\n";
  }
  s.text += "unset multiplot\nset output\n";
  return s.text;
}

// The executable `name` on PATH, or "" when there is none.
std::string findOnPath(const std::string &name) {
  const char *path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// Runs gnuplot with the script on its standard input; returns its standard error text and exit
// status (127 when it could not be started).
std::pair<int, std::string> runGnuplot(const std::string &exe, const std::string &script) {
  int in[2], err[2];
  if (::pipe(in) != 0 || ::pipe(err) != 0) rt::throwError("cannot create a pipe for gnuplot: {}", std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) rt::throwError("cannot start gnuplot: {}", std::strerror(errno));
  if (pid == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    const int devNull = ::open("/dev/null", O_WRONLY);  // gnuplot writes the image to stdout
    if (devNull >= 0) ::dup2(devNull, STDOUT_FILENO);   // when `set output` fails
    ::close(in[0]), ::close(in[1]), ::close(err[0]), ::close(err[1]);
    ::execl(exe.c_str(), "gnuplot", static_cast<char *>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(err[1]);
  std::string errors;
  std::thread reader([&] {  // drained while the script is written, so neither side can block
    char buf[4096];
    for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0;) errors.append(buf, size_t(n));
  });
  auto previous = std::signal(SIGPIPE, SIG_IGN);  // gnuplot may stop reading early on an error
  for (size_t done = 0; done < script.size();) {
    const ssize_t n = ::write(in[1], script.data() + done, script.size() - done);
    if (n <= 0) break;
    done += size_t(n);
  }
  ::close(in[1]);
  reader.join();
  ::close(err[0]);
  std::signal(SIGPIPE, previous);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), errors};
}

}  // namespace

int plotLog(const std::string &logPath, const std::string &pngPath, std::ostream &out) {
  const Curves curves = readLog(logPath);
  const std::string gnuplot = findOnPath("gnuplot");
  if (gnuplot.empty())
    rt::throwError("mtlc plot draws through gnuplot, which is not on PATH (Debian: apt-get install gnuplot-nox)");
  const int width = 1500, height = 60 + 330 * int(curves.tasks.size());
  std::error_code ec;
  std::filesystem::remove(pngPath, ec);  // so a stale picture is never mistaken for this one
  auto [status, errors] = runGnuplot(gnuplot, buildScript(curves, logPath, pngPath, width, height));
  if (status != 0 || !std::filesystem::exists(pngPath) || std::filesystem::file_size(pngPath) == 0)
    rt::throwError("gnuplot could not draw {} (exit status {}){}{}", pngPath, status, errors.empty() ? "" : ":\n",
                   errors);
  out << fmt::format("wrote {} ({}x{} px): {} task{} x 3 panels, {} steps, {} epoch{}\n", pngPath, width, height,
                     curves.tasks.size(), curves.tasks.size() == 1 ? "" : "s", curves.steps, curves.epochs,
                     curves.epochs == 1 ? "" : "s");
  return 0;
}

}  // namespace mtlc::driver
