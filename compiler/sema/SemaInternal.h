// Internals of semantic analysis shared by its source files (not part of the public API).
//   Sema.cpp            driver of the analysis: model, names, inputs, tasks, train block
//   Args.cpp            binding call arguments to a parameter list (types, ranges, defaults)
//   Vocabulary.cpp      the vocabulary table (spec/Vocabulary.def) as name lists and parameters
//   ShapeInference.cpp  layer arguments, shape rules through a pipeline
//   Blocks.cpp          expert blocks (mixture, ple, cgc, cross_stitch) and the sources that read
//                       them (gate, column), concat, the readers of each block
//   DataBinding.cpp     the data block: sources, field expressions, widths
//   StepSize.cpp        one training step's activations against limits::kMaxStepValues
#pragma once

#include "sema/Sema.h"
#include "syntax/Limits.h"

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mtlc::sema::detail {

constexpr int64_t kMaxInt = limits::kMaxDim;  // largest dimension / count accepted anywhere

// ---- Arguments ------------------------------------------------------------------------------------

struct ParamDef {
  enum class Type { Int, Real, String, Bool, IntList, Choice };  // Choice: a bare word of `choices`
  std::string name;
  Type type = Type::Real;
  bool required = false;
  double def = 0;                        // default of an optional Int / Real
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool loOpen = false, hiOpen = false;   // lo < v rather than lo <= v (likewise hi)
  std::vector<std::string> choices;      // String: the allowed values (empty = any); Choice: the
                                         // words, bound as the chosen one's index
};

ParamDef intParam(std::string name, bool required, double def = 0, double lo = 1);
ParamDef realParam(std::string name, bool required, double def = 0);
ParamDef stringParam(std::string name, bool required, std::vector<std::string> choices = {});

struct ArgValue {
  bool given = false;
  double number = 0;      // Int / Real / Bool (0 or 1) / Choice (the word's index)
  std::vector<int64_t> list;  // IntList
  std::string text;       // String
  SourceRange loc;        // of the value (or of the call when defaulted)
};

struct BoundArgs {
  std::map<std::string, ArgValue> values;  // every parameter, given or defaulted
  bool ok = true;                          // no error was reported
  double num(const std::string &name) const;
  const ArgValue &at(const std::string &name) const;
};

// Binds `call`'s arguments to `params` (positional in order, then keywords), reporting too many
// arguments, unknown or repeated keywords, missing required ones, wrong types and out-of-range
// values, each at the offending argument. `what` names the callee in messages ("conv2d",
// "optimizer 'adam'"); `example` is shown when a required argument is missing.
BoundArgs bindArgs(const ast::Call &call, const std::string &what,
                   const std::vector<ParamDef> &params, const std::string &example,
                   Diagnostics &diags);

// A vocabulary row's arguments (spec/Vocabulary.def) as a parameter list; Int arguments are capped
// at kMaxInt.
std::vector<ParamDef> paramsOf(const vocab::Entry &row);

// "a, b and c" (last = "and") or "a, b or c".
std::string joinWords(const std::vector<std::string> &words, const char *last);

// A number as written in messages: 3, 0.5, 1e-08.
std::string fmtNum(double v);

// ---- The analysis -----------------------------------------------------------------------------

enum class NameKind { Input, Shared, Task };
const char *nameKindWord(NameKind k);  // "input", "shared block", "task"

struct NameInfo {
  NameKind kind;
  size_t index;       // into Model::inputs / shared / tasks
  SourceRange loc;    // the name in its declaration
};

// The expert block that ends a shared block (None for a plain one).
enum class BlockKind { None, Unknown, Mixture, Ple, CrossStitch, Mtan };  // Unknown: a misspelt block
BlockKind blockKind(LayerKind k);      // None for a layer that is no expert block
const char *blockWord(BlockKind k);    // "mixture", "ple", "cross_stitch", "mtan"
const char *readWord(BlockKind k);     // "gate", "column"

// Learnable parameters of one checked layer (not an expert block) from its input shape `in`; -1
// past int64.
int64_t layerParams(const Layer &l);

// Recomputes the shapes of already-checked layers for another input (PLE's later levels); false,
// with the reason in `why`, when a layer cannot take it.
bool reinferShapes(std::vector<Layer> &layers, const Shape &in, std::string &why);

// What a list of layers belongs to, for the rules that depend on it.
struct LayerContext {
  bool isShared = false;      // a shared block's pipeline (expert blocks may end it)
  bool inBody = false;        // the body of an expert block
  int inputIndex = -1;        // the pipeline starts from this input (embedding may come first);
                              // -2: its source is erroneous (already reported)
};

// Where a shape came from, for the note under a shape error.
struct Origin {
  SourceRange loc;
  std::string what;   // "maxpool(2) produces [32, 13, 13]"
};

// DataBinding.cpp: what flows between the steps of checkData.
struct DataSources;
struct BoundTargets;
struct TargetWidth;

// One analysis of one program. Its steps are spread over the files listed at the top; only the
// constructor and run() are its interface.
class Analyzer {
public:
  Analyzer(const ast::Program &program, const std::string &file, Diagnostics &diags,
           const DataOverrides &dataOverrides)
      : prog_(program), diags_(diags), dataOverrides_(dataOverrides) {
    model_.file = file;
  }
  std::optional<Model> run();

private:
  // ShapeInference.cpp: checks the layers of `ap` (arguments, then shapes from `in`, unknown when
  // nullopt) and appends them to `out.layers`; returns the output shape (nullopt if unknown).
  std::optional<Shape> checkLayers(const std::vector<ast::LayerCall> &calls, std::optional<Shape> in,
                                   Origin origin, Pipeline &out, const LayerContext &ctx = {});
  // Blocks.cpp: an expert block stage (its arguments, body and shapes) into `layer`; returns the
  // per-task representation's shape.
  std::optional<Shape> checkBlock(const ast::Call &call, std::optional<Shape> in,
                                  const Origin &origin, Layer &layer);
  // Blocks.cpp: an mtan block's stage outputs: [C, H, W], each the previous one's size or half.
  bool checkMtanStages(const ast::Call &call, const Layer &layer);
  // Blocks.cpp: gate(NAME), column(NAME), concat(...) sources; reading an expert block by name.
  std::optional<Shape> resolveBlockSource(const ast::Pipeline &ap, bool isShared, size_t sharedIndex,
                                          int taskIndex, Pipeline &out, Origin &origin, bool &ok);
  bool rejectBlockRead(const std::string &name, SourceRange at, size_t sharedIndex, bool isShared);
  std::optional<Shape> resolveBlockRead(const ast::Pipeline &ap, bool isShared, int taskIndex, Pipeline &out,
                                        Origin &origin, bool &ok);
  std::optional<Shape> resolveConcat(const ast::Pipeline &ap, bool isShared, size_t sharedIndex, Pipeline &out,
                                     Origin &origin, bool &ok);
  // Blocks.cpp: after the tasks: blocks nobody reads, cross_stitch with one column, parameters.
  void finishBlocks();
  // DataBinding.cpp: the data block; its steps: the sources (the train/test comparison with
  // them), each binding (its target, expression and width), every input and label bound.
  void checkData();
  DataSources checkDataSources(const ast::DataBlock &block);
  void checkBinding(const ast::Binding &b, const DataSources &sources, BoundTargets &bound);
  // The input or task a binding names, or null after reporting a name that is neither, a shared
  // block or one bound before.
  const NameInfo *checkBindingTarget(const ast::Binding &b, BoundTargets &bound);
  TargetWidth targetWidth(const NameInfo &target) const;
  // Moves the bindings into the model; reports each input and task label left unbound.
  void checkEveryTargetBound(const ast::DataBlock &block, const BoundTargets &bound);

  void checkModelDecl();
  void declareNames();
  void checkInputs();
  void checkShared();
  void checkTasks();
  void checkTrain();
  void checkStepSize();  // StepSize.cpp
  void checkTask(const ast::TaskDecl &t, size_t index);
  // The steps of checkTask.
  std::vector<ast::Pipeline> taskPipelines(const ast::TaskDecl &t, bool &lossMisspelt);
  std::optional<Shape> checkHead(const ast::TaskDecl &t, size_t index, const std::vector<ast::Pipeline> &pipelines,
                                 Task &task, SourceRange &lastLoc);
  bool checkLoss(const ast::TaskDecl &t, bool lossMisspelt, Task &task);
  bool checkHeadWidth(const ast::TaskDecl &t, const Shape &out, SourceRange lastLoc, Task &task);
  void checkTaskWeight(const ast::TaskDecl &t, Task &task);
  void checkMetrics(const ast::TaskDecl &t, bool lossOk, Task &task);
  // A bare word in a task that names a metric (`metric auc accuracy`, a comma missing): reports
  // it and returns true; false when the word is not a metric.
  bool reportStrayMetric(const ast::TaskDecl &t, const ast::Pipeline &word);
  // Resolves a pipeline's source; fills out.source/sourceIsInput/sourceIndex/inShape. Returns the
  // source's shape (nullopt if unknown or erroneous) and its origin for notes.
  std::optional<Shape> resolveSource(const ast::Pipeline &ap, bool isShared, size_t sharedIndex,
                                     int taskIndex, Pipeline &out, Origin &origin, bool &ok);
  // ShapeInference.cpp: the steps of checkLayers for one call.
  bool checkBlockStage(const ast::LayerCall &call, const vocab::Entry *row, std::optional<Shape> &cur,
                       const Origin &origin, Pipeline &out, const LayerContext &ctx, Layer &layer);
  std::optional<Shape> checkResidual(const ast::LayerCall &call, const vocab::Entry &row, std::optional<Shape> in,
                                     Origin &origin, Layer &layer);
  bool checkShortcut(const ast::LayerCall &call, const Shape &in, const Shape &out, const Origin &origin,
                     Layer &layer);
  void reportUnknownLayer(const ast::LayerCall &call);
  bool bindLayerArgs(const ast::LayerCall &call, const vocab::Entry &row, Layer &layer);
  bool checkEmbeddingPlace(const ast::LayerCall &call, const Layer &layer, const LayerContext &ctx, bool argsOk);
  std::optional<Shape> inferLayer(const ast::LayerCall &call, const Shape &s, Layer &layer, Origin &origin);
  void checkOptimizer(const ast::Setting &s);
  void checkSchedule(const ast::Setting &s);
  void checkSelect(const ast::Setting &s);
  void checkWeighting(const ast::Setting &s);
  void checkAccumulate(const std::map<std::string, SourceRange> &seen);
  void checkGradientWeighting(const ast::Call &c);
  void checkRepGrad(const ast::Call &c, SourceRange argLoc);
  void checkFreeze(const ast::Setting &s);
  void checkLrScale(const ast::Setting &s);
  bool checkBlockName(const std::string &name, SourceRange loc, const std::string &setting);
  bool firstMention(std::map<std::string, SourceRange> &seen, const std::string &name, SourceRange loc,
                    const std::string &error, const char *note);
  void checkIntegerSetting(const ast::Setting &s);

  const ast::Program &prog_;
  Diagnostics &diags_;
  const DataOverrides &dataOverrides_;
  Model model_;
  std::map<std::string, NameInfo> names_;
  // Per model input / shared block / task: whether its shape (or head width) is known and valid.
  std::vector<bool> inputOk_;
  std::vector<std::optional<Shape>> sharedOut_;
  std::vector<Origin> sharedOrigin_;
  std::vector<bool> taskHeadOk_;              // head width and loss known
  std::vector<const ast::TaskDecl *> taskDecls_;
  std::vector<const ast::InputDecl *> inputDecls_;
  std::vector<const ast::SharedDecl *> sharedDecls_;
  int64_t totalParams_ = 0;
  bool paramLimitReported_ = false;
  // Per shared block: the expert block ending it (from the AST, known even when it has errors),
  // and that block's call.
  std::vector<BlockKind> sharedBlock_;
  std::vector<const ast::Call *> sharedBlockCall_;
  // Per input: where an embedding first fixed its `categories` (line 0: none yet).
  std::vector<SourceRange> categoriesLoc_;
  // Adds `n` learnable parameters (-1: too many to count) to the model's total; false, reported at
  // `at` once per model, past limits::kMaxParams.
  bool addParams(int64_t n, SourceRange at, const std::string &what);
};

}  // namespace mtlc::sema::detail
