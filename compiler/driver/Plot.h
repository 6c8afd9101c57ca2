// `mtlc plot LOG.jsonl -o curves.png`: draws a `mtlc train --log` file through gnuplot (run as a
// process, the data fed to it inline): one row of three panels per task —
//   loss     the training loss per step (raw, and a moving mean when there are many steps) and the
//            test loss after each epoch (plotted at that epoch's last step); log scale when the
//            losses span more than a factor of 20
//   metrics  the task's test metrics after each epoch
//   weight   tasks.<t>.weight per step (what the loss weighting gave the task)
// Errors (rt::Error, exit 1): a log that cannot be read, a line that is not JSON or not a record
// of the log format (named as LOG:LINE), a log without step records, gnuplot missing from PATH or
// failing (its message is shown).
#pragma once

#include <ostream>
#include <string>

namespace mtlc::driver {

// Returns the exit status (0); user errors are thrown as rt::Error.
int plotLog(const std::string &logPath, const std::string &pngPath, std::ostream &out);

}  // namespace mtlc::driver
