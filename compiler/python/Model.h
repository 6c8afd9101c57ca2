// mtlc.Model: one compiled program, its parameters and, once it has trained, the trainer's last
// checkpoint (parameters, optimizer and weighting state, where the run stood), from which the next
// fit continues. Training is rt::train (the trainer `mtlc train` runs); predict and evaluate run
// the compiled predict / eval_step entry points over the caller's arrays.
#pragma once

#include "driver/Pipeline.h"
#include "runtime/Arena.h"
#include "runtime/parallel/ThreadPool.h"
#include "runtime/train/Trainer.h"

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

namespace mtlc::python {

namespace py = pybind11;

// A program with errors: what() is the rendered diagnostics (file:line:col: error: ..., the line
// and a caret). Python: mtlc.CompileError.
struct CompileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What compile() takes besides the program.
struct CompileSettings {
  int threads = 0;                 // kernel threads (0: every CPU), also LLVM's
  std::optional<uint64_t> seed;    // overrides the program's `seed`
  std::string weighting;           // overrides the program's `weighting` (empty: the program's)
  std::optional<double> weightingParam;  // dwa's temperature or gradnorm's alpha
  bool quiet = false;              // no progress display, nothing printed
  bool optimize = true;            // false: every pass off (-O0)
};

// What fit() takes.
struct FitSettings {
  std::optional<int64_t> epochs, steps;
  std::optional<uint64_t> seed;
  std::optional<int> threads;
  std::optional<bool> quiet;
  std::string logPath;
};

class Model {
 public:
  // Exactly one of `path` and `source`; `baseDir` resolves the data paths of `source`.
  Model(const std::optional<std::string>& path, const std::optional<std::string>& source,
        const std::string& baseDir, const CompileSettings& settings);
  ~Model();

  py::dict fit(const py::object& data, const py::object& test, const FitSettings& settings);
  py::dict predict(const py::dict& inputs);
  py::dict evaluate(const py::dict& data);
  py::dict stateDict() const;
  void loadStateDict(const py::dict& stateDict);
  void save(const std::string& path) const;
  void load(const std::string& path);

  const rt::ModelSpec& spec() const { return compiled_.spec; }
  int64_t steps() const { return steps_; }
  std::string summary() const;

 private:
  // What the model's parameters came from: the seed (not trained yet), the trainer (statePath_
  // holds its last checkpoint) or load_state_dict / load without a training position.
  enum class Origin { Seed, Trained, Loaded };

  rt::ThreadPool& pool();
  void continueFrom(rt::TrainOptions& to, const rt::Dataset* train, const FitSettings& fs);
  void applyWeighting();

  driver::CheckedProgram checked_;
  driver::CompiledProgram compiled_;
  CompileSettings settings_;
  rt::Arena params_;
  Origin origin_ = Origin::Seed;
  int64_t steps_ = 0;
  bool lastFitOnProgramData_ = false;  // the state's position is in the program's training set
  std::string stateDir_, statePath_;  // a private folder for the trainer's checkpoint
  std::unique_ptr<rt::ThreadPool> pool_;
};

}  // namespace mtlc::python
