// Training progress on stderr.
//   On a terminal: one line redrawn in place with \r, at most 10 times a second,
//     epoch 1/2 [#####...............] 312/938 1234 samples/s ETA 0:12 loss 0.4321
//   and erased at the end of the epoch (the trainer then prints the epoch's summary).
//   Otherwise (a file or a pipe): the same facts as a plain line each time another ~10% of the
//   epoch is done, and at its end.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

namespace mtlc::rt {

struct ProgressState {
  int64_t epoch = 1, epochs = 1;  // 1-based
  int64_t step = 0, steps = 1;    // batches done in this epoch / in the whole epoch
  double samplesPerSec = 0;
  double etaSeconds = 0;
  double loss = 0;                // running mean of the total loss over the epoch
};

// "epoch 1/2 [#####...............] 312/938 1234 samples/s ETA 0:12 loss 0.4321"; without the
// bar when `bar` is false.
std::string formatProgress(const ProgressState& s, bool bar);
std::string formatDuration(double seconds);  // 0:05, 12:34, 1:02:03

class Progress {
 public:
  // `tty`: redraw in place; otherwise plain lines. Nothing is written when `enabled` is false.
  Progress(std::ostream& os, bool tty, bool enabled);
  // Whether stderr is a terminal.
  static bool stderrIsTty();

  void beginEpoch(int64_t epoch, int64_t epochs, int64_t steps);
  // After each batch: batches done in the epoch, samples done in the epoch, running mean loss.
  void update(int64_t step, int64_t samples, double loss);
  void endEpoch();

  std::function<double()> clock;  // seconds; steady_clock by default (tests replace it)

 private:
  std::ostream& os_;
  bool tty_, enabled_;
  ProgressState s_;
  double start_ = 0, lastDraw_ = -1;
  int64_t lastDecile_ = 0;
  size_t drawnWidth_ = 0;
};

}  // namespace mtlc::rt
