// How a run reports itself: numbers as the console shows them, a task's metrics as a line and as
// the log's JSON, the optimizer as written in the program, and the final table. Internal to train/.
#pragma once

#include "runtime/train/Trainer.h"
#include "spec/ModelSpec.h"

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

namespace mtlc::rt {

// 4 decimals, or 3 significant digits in exponent form for small values; "-" for NaN.
std::string fmtValue(double v);
// "loss 0.1234  accuracy 0.9000  auc 0.9500": the loss, then the task's metrics in program order.
std::string metricsLine(const TaskSpec& task, const TaskResult& r);
// {"loss": ..., "<metric>": ...} with null for what does not apply.
nlohmann::ordered_json metricsJson(const TaskSpec& task, const TaskResult& r);
// "adam(lr=0.001)", "sgd(lr=0.1, momentum=0.9)": the settings that differ from the defaults.
std::string optimizerString(const OptimizerSpec& o);
// "cosine(t_max=10), warmup 500": the schedule and warm-up as a program spells them ("" for none).
std::string scheduleString(const TrainSpec& ts);
// The final table: one row per task and data split, one column per metric that any task has.
void printSummary(std::ostream& out, const ModelSpec& spec, const TrainReport& r);
std::vector<std::string> taskNames(const ModelSpec& spec);

}  // namespace mtlc::rt
