// The progress display: the line's format, plain-line decimation, throttled redraws on a tty.
#include "TestUtil.h"

#include "runtime/io/Progress.h"

#include <sstream>

using namespace mtlc::rt;

TEST_CASE("progress line format and durations", "[progress]") {
  ProgressState s;
  s.epoch = 1;
  s.epochs = 2;
  s.step = 312;
  s.steps = 938;
  s.samplesPerSec = 1234.4;
  s.etaSeconds = 12.2;
  s.loss = 0.43214;
  CHECK(formatProgress(s, true) == "epoch 1/2 [######..............] 312/938 1234 samples/s ETA 0:12 loss 0.4321");
  CHECK(formatProgress(s, false) == "epoch 1/2 312/938 1234 samples/s ETA 0:12 loss 0.4321");
  CHECK(formatDuration(0) == "0:00");
  CHECK(formatDuration(754) == "12:34");
  CHECK(formatDuration(3723) == "1:02:03");
}

TEST_CASE("progress without a tty: a plain line per ~10% and at the end", "[progress]") {
  std::ostringstream os;
  Progress p(os, /*tty=*/false, /*enabled=*/true);
  double t = 0;
  p.clock = [&] { return t; };
  p.beginEpoch(1, 1, 25);
  for (int step = 1; step <= 25; ++step) {
    t += 0.5;
    p.update(step, step * 10, 1.0 / step);
  }
  p.endEpoch();
  std::string text = os.str();
  int lines = 0;
  for (char c : text) lines += c == '\n';
  CHECK(lines == 10);  // steps 3, 5, 8, 10, 13, 15, 18, 20, 23 and 25
  CHECK(text.find('\r') == std::string::npos);
  CHECK(text.find("epoch 1/1 25/25 20 samples/s ETA 0:00 loss 0.0400\n") != std::string::npos);
  CHECK(text.rfind("epoch 1/1 3/25 20 samples/s ETA 0:11 loss 0.3333\n", 0) == 0);
}

TEST_CASE("progress on a tty: redrawn in place at most 10 times a second, then erased", "[progress]") {
  std::ostringstream os;
  Progress p(os, /*tty=*/true, /*enabled=*/true);
  double t = 0;
  p.clock = [&] { return t; };
  p.beginEpoch(2, 3, 100);
  for (int step = 1; step <= 100; ++step) {
    t += 0.01;  // 100 steps in one second
    p.update(step, step, 0.5);
  }
  std::string text = os.str();
  int draws = 0;
  for (char c : text) draws += c == '\r';
  CHECK(draws >= 10);
  CHECK(draws <= 12);
  CHECK(text.find("\repoch 2/3 [####################] 100/100 100 samples/s ETA 0:00 loss 0.5000") != std::string::npos);
  CHECK(text.find('\n') == std::string::npos);
  p.endEpoch();
  CHECK(os.str().back() == '\r');

  std::ostringstream quiet;
  Progress q(quiet, true, /*enabled=*/false);
  q.beginEpoch(1, 1, 1);
  q.update(1, 1, 0);
  q.endEpoch();
  CHECK(quiet.str().empty());
}
