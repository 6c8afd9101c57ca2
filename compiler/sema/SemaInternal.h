// Internals of semantic analysis shared by its source files (not part of the public API).
//   Sema.cpp            driver of the analysis: model, names, inputs, tasks, train block
//   Args.cpp            binding call arguments to a parameter list (types, ranges, defaults)
//   ShapeInference.cpp  the layer table, layer arguments, shape rules through a pipeline
//   DataBinding.cpp     the data block: sources, field expressions, widths
#pragma once

#include "sema/Sema.h"

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mtlc::sema::detail {

constexpr int64_t kMaxInt = 2147483647;  // largest dimension / count accepted anywhere

// ---- Arguments ------------------------------------------------------------------------------------

struct ParamDef {
  enum class Type { Int, Real, String, Bool };
  std::string name;
  Type type = Type::Real;
  bool required = false;
  double def = 0;                        // default of an optional Int / Real
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool loOpen = false, hiOpen = false;   // lo < v rather than lo <= v (likewise hi)
  std::vector<std::string> choices;      // String: the allowed values (empty = any)
};

ParamDef intParam(std::string name, bool required, double def = 0, double lo = 1);
ParamDef realParam(std::string name, bool required, double def = 0);
ParamDef stringParam(std::string name, bool required, std::vector<std::string> choices = {});

struct ArgValue {
  bool given = false;
  double number = 0;      // Int / Real / Bool (0 or 1)
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

// Where a shape came from, for the note under a shape error.
struct Origin {
  SourceRange loc;
  std::string what;   // "maxpool(2) produces [32, 13, 13]"
};

class Analyzer {
public:
  Analyzer(const ast::Program &program, const std::string &file, Diagnostics &diags)
      : prog_(program), diags_(diags) {
    model_.file = file;
  }
  std::optional<Model> run();

  // ShapeInference.cpp: checks the layers of `ap` (arguments, then shapes from `in`, unknown when
  // nullopt) and appends them to `out.layers`; returns the output shape (nullopt if unknown).
  std::optional<Shape> checkLayers(const std::vector<ast::LayerCall> &calls, std::optional<Shape> in,
                                   Origin origin, Pipeline &out);
  // DataBinding.cpp
  void checkData();

private:
  void checkModelDecl();
  void declareNames();
  void checkInputs();
  void checkShared();
  void checkTasks();
  void checkTrain();
  void checkTask(const ast::TaskDecl &t, size_t index);
  // Resolves a pipeline's source; fills out.source/sourceIsInput/sourceIndex/inShape. Returns the
  // source's shape (nullopt if unknown or erroneous) and its origin for notes.
  std::optional<Shape> resolveSource(const ast::Pipeline &ap, bool isShared, size_t sharedIndex,
                                     Pipeline &out, Origin &origin, bool &ok);
  void checkOptimizer(const ast::Setting &s);
  void checkWeighting(const ast::Setting &s);

public:
  const ast::Program &prog_;
  Diagnostics &diags_;
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
};

}  // namespace mtlc::sema::detail
