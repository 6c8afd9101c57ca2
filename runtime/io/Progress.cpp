#include "runtime/io/Progress.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <unistd.h>

namespace mtlc::rt {

std::string formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  int64_t s = int64_t(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string formatProgress(const ProgressState& s, bool bar) {
  std::string line = fmt::format("epoch {}/{} ", s.epoch, s.epochs);
  if (bar) {
    const int width = 20;
    int filled = s.steps > 0 ? int(width * s.step / s.steps) : width;
    line += "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
  }
  line += fmt::format("{}/{} {:.0f} samples/s ETA {} loss {:.4f}", s.step, s.steps, s.samplesPerSec,
                      formatDuration(s.etaSeconds), s.loss);
  return line;
}

bool Progress::stderrIsTty() { return isatty(fileno(stderr)) == 1; }

Progress::Progress(std::ostream& os, bool tty, bool enabled) : os_(os), tty_(tty), enabled_(enabled) {
  clock = [] {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
  };
}

void Progress::beginEpoch(int64_t epoch, int64_t epochs, int64_t steps) {
  s_ = ProgressState{};
  s_.epoch = epoch;
  s_.epochs = epochs;
  s_.steps = steps;
  start_ = clock();
  lastDraw_ = -1;
  lastDecile_ = 0;
}

void Progress::update(int64_t step, int64_t samples, double loss) {
  if (!enabled_) return;
  const double now = clock();
  const double elapsed = now - start_;
  s_.step = step;
  s_.loss = loss;
  s_.samplesPerSec = elapsed > 0 ? double(samples) / elapsed : 0;
  s_.etaSeconds = step > 0 ? elapsed * double(s_.steps - step) / double(step) : 0;
  const bool last = step >= s_.steps;
  if (tty_) {
    if (!last && lastDraw_ >= 0 && now - lastDraw_ < 0.1) return;  // ≤ 10 redraws a second
    lastDraw_ = now;
    std::string line = formatProgress(s_, true);
    size_t width = line.size();
    if (width < drawnWidth_) line += std::string(drawnWidth_ - width, ' ');  // cover a longer line
    drawnWidth_ = width;
    os_ << '\r' << line << std::flush;
  } else {
    const int64_t decile = s_.steps > 0 ? step * 10 / s_.steps : 10;
    if (decile <= lastDecile_ && !last) return;
    if (last && lastDecile_ >= 10) return;
    lastDecile_ = last ? 10 : decile;
    os_ << formatProgress(s_, false) << '\n' << std::flush;
  }
}

void Progress::endEpoch() {
  if (!enabled_ || !tty_ || drawnWidth_ == 0) return;
  os_ << '\r' << std::string(drawnWidth_, ' ') << '\r' << std::flush;
  drawnWidth_ = 0;
}

}  // namespace mtlc::rt
