// `mtlc repl`: the state of one interactive session (ReplSession.cpp) and its commands
// (ReplCommands.cpp). The line editor is ReplLineEditor.h.
//
// The session keeps the program as source text, one entry per declaration (model, input, shared,
// task, train, data), each remembering where it was typed or loaded from. A declaration typed at
// the prompt replaces the one with the same name (input / shared / task share one namespace;
// `model`, `train` and `data` are singletons) in place, or is appended. After every change the
// whole program is re-parsed and re-checked (it is small); errors are mapped back to the line and
// column where the offending text was typed (`<input>:LINE:COL`) or loaded (`file.mtl:LINE:COL`).
//
// Recompiling: when the program checks, its *structure* (everything except the train and data
// blocks, plus the batch size, weighting and freeze list, which change the generated code) is
// compared with the compiled one. Unchanged structure → no recompile: new train/data settings
// (lr, epochs, seed, shuffle, sources) are applied to the live model. Changed structure → the
// IR module is lowered again and compiled by the session's jit::IncrementalCompiler: new entry
// points, and only the kernels whose code changed (a new head's); the others are reused as
// machine code from earlier compiles (ORC resource trackers, one per kernel). Every
// parameter tensor whose name and shape are unchanged (`trunk.0.weight [32, 1, 3, 3]`) is copied
// from the old arena into the new one, with its optimizer state; only new or reshaped tensors are
// initialised. So a head can be swapped while the trained trunk stays bit-for-bit.
#pragma once

#include "driver/Pipeline.h"
#include "jit/Compile.h"
#include "runtime/Arena.h"
#include "runtime/data/Dataset.h"
#include "runtime/io/Checkpoint.h"
#include "spec/ModelSpec.h"
#include "runtime/train/Optimizer.h"
#include "runtime/parallel/ThreadPool.h"

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace mtlc::rt {
class Batcher;
class Weighting;
}

namespace mtlc::driver {

struct ReplCommandInfo {
  const char *name;   // ":train"
  const char *args;   // "[N steps | N epochs]"
  const char *help;   // one line
};

class ReplSession {
 public:
  // `out` gets results, `err` diagnostics and progress. `colour`: ANSI colours in diagnostics.
  ReplSession(std::ostream &out, std::ostream &err, bool colour, bool optimize);
  ~ReplSession();

  // One complete input: a `:command` line, or one or more declarations (braces balanced).
  // `firstLine` is the 1-based line of the session's input where it starts; the text must already
  // have been appended with addInputLine. Returns false when the session should end (:quit).
  bool handle(const std::string &chunk, int firstLine);
  // Every line read from the user, in order (the `<input>` text that diagnostics quote).
  void addInputLine(const std::string &line);

  // Loads a .mtl file as the session's program (what `mtlc repl FILE` and :load do).
  bool load(const std::string &path);

  int errorCount() const { return errors_; }

  // For completion: the commands, and the names worth completing (declared names, layers, ...).
  static const std::vector<ReplCommandInfo> &commands();
  std::vector<std::string> completionWords() const;
  std::vector<std::string> declaredNames() const;
  std::vector<std::string> taskNames() const;

 private:
  struct Origin {
    std::string name, text;  // "<input>" (grows as lines are typed) or a file
  };
  struct Decl {
    std::string kind;        // model | input | shared | task | train | data
    std::string name;        // declared name ("" for train / data)
    std::string text;        // verbatim lines; the part of the first line before it is blanked
    int origin = 0;          // index into origins_; -1: synthesised (`model repl`)
    int firstLine = 1;       // line of text's first line within the origin
    int combinedLine = 0;    // where it starts in the last combined program text
  };
  // The program as compiled and running.
  struct Live {
    CheckedProgram checked;  // what it was compiled from (its model is the live model)
    CompiledProgram compiled;
    std::string structureKey;
    rt::Arena params, grads, acts;
    std::unique_ptr<rt::Optimizer> optimizer;
  };
  // Everything :load replaces, kept aside until the new file checks (restoreSession).
  struct Saved {
    std::vector<Origin> origins;
    std::vector<Decl> decls;
    std::string basePath, dataKey;
    std::optional<sema::Model> checkedModel;
    std::unique_ptr<Live> live;
    std::optional<rt::Dataset> trainData, testData;
    std::unique_ptr<rt::Batcher> batcher;
    int64_t epoch = 0, batchPos = 0, stepCount = 0;
    std::unique_ptr<rt::Weighting> weighting;
    rt::WeightingKind weightingKey = rt::WeightingKind::Fixed;
  };
  struct Timing {
    double parseMs = 0, semaMs = 0, lowerMs = 0, codegenMs = 0;
    int compiles = 0;
    std::string lastReason;
    double lastCompileMs = 0;
    std::vector<std::pair<std::string, double>> history;  // (reason, total ms) per compile
    int64_t trainSteps = 0, trainSamples = 0;
    double trainSeconds = 0, lastStepMs = 0, evalSeconds = 0;
  };

  // ---- state (ReplSession.cpp)
  bool addDeclarations(const std::string &text, int origin, int firstLine);
  bool rebuild(const std::string &reason);   // re-check, recompile if needed; false on errors
  std::string combinedText();
  void renderDiagnostics(const Diagnostics &diags);
  bool ensureLive(const char *what);         // a compiled, checked model exists (else an error)
  Saved takeSession();                       // moves the program, model and training out
  void restoreSession(Saved saved);
  void install(CheckedProgram checked, CompiledProgram compiled, std::string key);
  void applySettings(const sema::Model &model);
  const rt::Dataset &dataset(const std::string &split);
  void trainSteps(int64_t steps);
  void trainDelegated(int64_t steps);        // weightings the REPL's loop does not implement
  rt::TrainPosition delegatedPosition();
  void resetTrainingPosition();
  std::string setTrainSetting(const std::string &key, const std::string &value);
  std::string setThreads(const std::string &value);  // `:set threads=N`: a session setting
  void error(const std::string &message);

  // ---- commands (ReplCommands.cpp)
  bool command(const std::string &line);
  void cmdHelp(const std::string &kind);
  void cmdShow(const std::string &name);
  void cmdIr(const std::string &name);
  void cmdLlvm(const std::string &name);
  void cmdTrain(const std::string &args);
  void cmdEval();
  void cmdPredict(const std::string &args);
  void cmdSet(const std::string &args);
  void cmdSave(const std::string &path);
  void cmdInit(const std::string &path);
  void cmdTime();
  void cmdReset();

  std::ostream &out_, &err_;
  bool colour_, optimize_;
  std::vector<Origin> origins_;
  std::vector<Decl> decls_;
  std::string basePath_ = "repl.mtl";  // data paths resolve against its directory
  std::optional<sema::Model> checkedModel_;  // the last program that checked (may be uncompiled)
  jit::IncrementalCompiler incremental_;     // before live_: outlives the code it compiled
  std::unique_ptr<Live> live_;
  // Training position and data.
  std::string dataKey_;
  std::optional<rt::Dataset> trainData_, testData_;
  std::unique_ptr<rt::Batcher> batcher_;
  int64_t epoch_ = 0, batchPos_ = 0, stepCount_ = 0;
  Timing time_;
  // The kernels' threads (`:set threads=N`; 0 = every CPU, the default as in `mtlc train`).
  std::unique_ptr<rt::ThreadPool> pool_ = std::make_unique<rt::ThreadPool>(0);
  // The weighting state of adaptive strategies between :train runs (trainDelegated), for the
  // live model and the strategy named by weightingKey_.
  std::unique_ptr<rt::Weighting> weighting_;
  rt::WeightingKind weightingKey_ = rt::WeightingKind::Fixed;
  std::optional<rt::TrainPosition> delegated_;  // where the last delegated run stopped
  int errors_ = 0;
  bool quiet_ = false;                  // check without printing diagnostics
  std::vector<size_t> errorDecls_;      // declarations that the last check's errors point into
};

}  // namespace mtlc::driver
