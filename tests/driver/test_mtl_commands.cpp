// The multi-task commands through the real binary: `train --single-task` (Δm against each task
// trained alone), `plot` (a PNG through gnuplot), and a short run of every example.
#include "Run.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct ChangeRow {
  std::string task, metric;
  double multi = 0, single = 0, change = 0;  // change in percent
};

// The rows of the table after the line starting "task  metric", up to the Δm line.
std::vector<ChangeRow> changeRows(const std::string &out) {
  std::vector<ChangeRow> rows;
  std::istringstream in(out);
  std::string line;
  bool inTable = false;
  while (std::getline(in, line)) {
    if (line.rfind("task ", 0) == 0 && line.find("metric") != std::string::npos &&
        line.find("single-task") != std::string::npos) {
      inTable = true;
      continue;
    }
    if (!inTable) continue;
    if (line.rfind("Δm", 0) == 0 || line.empty()) break;
    std::istringstream cells(line);
    ChangeRow r;
    std::string change;
    cells >> r.task >> r.metric >> r.multi >> r.single >> change;
    REQUIRE(!change.empty());
    REQUIRE(change.back() == '%');
    r.change = std::stod(change.substr(0, change.size() - 1));
    rows.push_back(r);
  }
  return rows;
}

// "  test cls: loss 0.0932  accuracy 0.9640" of the last epoch: task -> metric -> value.
std::map<std::string, std::map<std::string, double>> lastTestLines(const std::string &out) {
  std::map<std::string, std::map<std::string, double>> m;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  test ", 0) != 0) continue;
    std::istringstream cells(line.substr(7));
    std::string task, name;
    cells >> task;
    task.pop_back();  // the colon
    double v;
    while (cells >> name >> v) m[task][name] = v;
  }
  return m;
}

// Width and height from a PNG's IHDR chunk (bytes 16..23, big-endian), after checking the
// signature and that IHDR is the first chunk.
std::pair<uint32_t, uint32_t> pngSize(const std::string &bytes) {
  REQUIRE(bytes.size() > 33);
  REQUIRE(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  REQUIRE(bytes.substr(12, 4) == "IHDR");
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = v << 8 | uint8_t(bytes[at + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

}  // namespace

TEST_CASE("--single-task trains each task alone and reports a Δm consistent with its table") {
  const std::string saved = (testDir("single_task") / "multi.safetensors").string();
  fs::remove(saved);
  auto r = runMtlc("train --epochs 3 --quiet --single-task --save '" + saved + "' '" + example("tabular.mtl") + "'");
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);
  // --save is the multi-task model's (the baselines write nothing): all three heads are in it.
  const std::string checkpoint = slurp(saved);
  for (const char *head : {"cls.0.weight", "flag.2.weight", "target.2.weight"})
    CHECK(checkpoint.find(head) != std::string::npos);
  // One baseline per task, each as long as the multi-task run (3 epochs of 2000 rows in batches of 32).
  for (const char *task : {"cls", "flag", "target"})
    CHECK(r.out.find(std::string("  ") + task + ": ") != std::string::npos);
  CHECK(r.out.find("189 steps in") != std::string::npos);

  const std::vector<ChangeRow> rows = changeRows(r.out);
  REQUIRE(rows.size() == 4);  // cls accuracy, flag accuracy + auc, target mae
  const auto test = lastTestLines(r.out);
  std::map<std::string, std::pair<double, int>> perTask;  // task -> (sum of changes, count)
  std::vector<std::string> order;
  for (const ChangeRow &row : rows) {
    INFO(row.task << " " << row.metric);
    // The multi-task column is the run's final test result (printed there with 4 decimals).
    CHECK(row.multi == Approx(test.at(row.task).at(row.metric)).margin(6e-5));
    // Each baseline learnt something: better than chance / than predicting 0.
    if (row.metric == "accuracy") CHECK(row.single > 0.6);
    if (row.metric == "mae") CHECK(row.single < 0.5);
    // change = (−1)^lower-is-better · (multi − single) / single, in percent.
    const double sign = row.metric == "mae" ? -1.0 : 1.0;
    CHECK(row.change == Approx(100 * sign * (row.multi - row.single) / row.single).margin(2e-3));
    if (!perTask.count(row.task)) order.push_back(row.task);
    perTask[row.task].first += row.change;
    perTask[row.task].second += 1;
  }
  REQUIRE(order == std::vector<std::string>{"cls", "flag", "target"});
  double deltaM = 0;
  for (const auto &task : order) deltaM += perTask[task].first / perTask[task].second;
  deltaM /= double(order.size());
  const size_t at = r.out.find("Δm ");
  REQUIRE(at != std::string::npos);
  const double printed = std::stod(r.out.substr(at + std::string("Δm ").size()));
  CHECK(printed == Approx(deltaM).margin(2e-3));
}

TEST_CASE("--single-task on per-pixel tasks: each metric's direction from the vocabulary; the log plots") {
  const std::string program = densePixelProgram(), log = (testDir("dense_pixels") / "run.jsonl").string();
  auto r = runMtlc("train --quiet --single-task --log '" + log + "' '" + program + "'");
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);
  const std::vector<ChangeRow> rows = changeRows(r.out);
  REQUIRE(rows.size() == 4);
  std::vector<std::string> metrics;
  for (const ChangeRow &row : rows) {
    INFO(row.task << " " << row.metric);
    metrics.push_back(row.metric);
    const bool lower = row.metric == "abs_err" || row.metric == "rel_err";
    CHECK(row.change == Approx(100 * (lower ? -1 : 1) * (row.multi - row.single) / row.single).margin(2e-3));
    if (row.metric == "pixel_accuracy") CHECK(row.single > 0.5);  // better than the 1/3 of chance
  }
  CHECK(metrics == std::vector<std::string>{"pixel_accuracy", "miou", "abs_err", "rel_err"});
  CHECK(r.out.find("loss, abs_err and rel_err count lower as better") != std::string::npos);
  // The epoch records carry the metrics; plot draws them (where gnuplot is installed).
  const std::string records = slurp(log);
  for (const char *m : {"\"pixel_accuracy\"", "\"miou\"", "\"abs_err\"", "\"rel_err\""})
    CHECK(records.find(m) != std::string::npos);
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string png = (testDir("dense_pixels") / "run.png").string();
    auto p = runMtlc("plot '" + log + "' -o '" + png + "'");
    INFO(p.out << p.err);
    CHECK(p.exitCode == 0);
    CHECK(std::filesystem::file_size(png) > 1000);
  }
}

TEST_CASE("--single-task needs test data, and a model each task can form alone") {
  auto noTest = writeFile("single_no_test.mtl",
                          "model m\ninput x : f32[8]\nshared t = x -> dense(4)\n"
                          "task a { t -> dense(1) loss mse }\ntask b { t -> dense(1) loss mse }\n"
                          "data { train csv(\"" + example("tabular.csv") + "\") x = columns(0..7) a = target b = target }\n");
  auto r = runMtlc("train --quiet --single-task '" + noTest + "'");
  CHECK(r.exitCode == 1);
  CHECK(r.err.find("--single-task compares test metrics, but model `m` has no `test` source") != std::string::npos);
  CHECK(r.out.find("epoch 1") == std::string::npos);  // refused before training

  auto stitch = runMtlc("train --quiet --single-task '" + example("cross_stitch.mtl") + "'");
  CHECK(stitch.exitCode == 1);
  CHECK(stitch.err.find("--single-task: task `y1` cannot be trained alone") != std::string::npos);
  CHECK(stitch.err.find("cross_stitch.mtl:7:8: error: cross_stitch block 'stitch'") != std::string::npos);
  CHECK(stitch.out.find("epoch 1") == std::string::npos);
}

TEST_CASE("mtlc plot draws a log as a PNG; missing, corrupt or empty logs and a missing gnuplot are errors") {
  auto dir = testDir("plot");
  const std::string log = (dir / "tabular.jsonl").string(), png = (dir / "curves.png").string();
  auto t = runMtlc("train --epochs 2 --quiet --log '" + log + "' '" + example("tabular.mtl") + "'");
  REQUIRE(t.exitCode == 0);

  fs::remove(png);
  auto r = runMtlc("plot '" + log + "' -o '" + png + "'");
  INFO(r.out << r.err);
  REQUIRE(r.exitCode == 0);
  CHECK(r.out.find("3 tasks x 3 panels, 126 steps, 2 epochs") != std::string::npos);
  const std::string bytes = slurp(png);
  auto [w, h] = pngSize(bytes);
  CHECK(w == 1500);
  CHECK(h == 60 + 330 * 3);
  CHECK(bytes.size() > 30000);  // nine panels of curves, not a blank canvas
  CHECK(bytes.substr(bytes.size() - 8, 4) == "IEND");

  // `mtlc plot LOG -o PNG` must fail with exit 1 and this message.
  auto fails = [&](const std::string &logPath, const std::string &message, const std::string &env = "") {
    auto f = runMtlc("plot '" + logPath + "' -o '" + png + "'", ".", env);
    INFO(logPath << ": " << f.err);
    CHECK(f.exitCode == 1);
    CHECK(f.err.find(message) != std::string::npos);
  };
  fails((dir / "nope.jsonl").string(), "nope.jsonl: cannot read the log");
  const std::string logText = slurp(log);
  fails(writeFile("corrupt.jsonl", logText.substr(0, logText.find('\n') + 1) + "{\"step\": 2, oops\n"),
        "corrupt.jsonl:2: not a JSON object");
  fails(writeFile("foreign.jsonl", "{\"hello\": 1}\n"), "foreign.jsonl:1: neither a step record nor a test record");
  fails(writeFile("empty.jsonl", ""), "empty.jsonl: no step records");
  fails(log, "gnuplot, which is not on PATH (Debian: apt-get install gnuplot-nox)", "PATH=/nonexistent");

  auto badOut = runMtlc("plot '" + log + "' -o /nonexistent/dir/x.png");
  CHECK(badOut.exitCode == 1);
  CHECK(badOut.err.find("gnuplot could not draw /nonexistent/dir/x.png") != std::string::npos);
  CHECK(badOut.out.empty());  // no image bytes on stdout

  CHECK(runMtlc("plot '" + log + "'").exitCode == 2);  // -o is required
}

TEST_CASE("every example trains (a short run of each)") {
  int examples = 0;
  for (const auto &e : fs::directory_iterator(fs::path(MTLC_SOURCE_DIR) / "examples")) {
    if (e.path().extension() != ".mtl") continue;
    ++examples;
    DYNAMIC_SECTION(e.path().filename().string()) {
      auto r = runMtlc("train --steps 2 --quiet '" + e.path().string() + "'");
      INFO(r.out << r.err);
      CHECK(r.exitCode == 0);
      CHECK(r.out.find("trained 2 steps") != std::string::npos);
    }
  }
  CHECK(examples >= 8);
}
