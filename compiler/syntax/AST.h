// The abstract syntax tree of a .mtl program: plain structs, one per construct of grammar/MTL.g4,
// each with the SourceRange it was parsed from. Nothing here is checked beyond the grammar: names,
// argument values, order and multiplicity are semantic analysis's business (compiler/sema/).
#pragma once

#include "syntax/SourceLoc.h"

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace mtlc::ast {

// An argument or setting value: `3`, `-0.5`, `1e-3`, `"train"`, `true`, `relu`.
struct Value {
  enum class Kind { Number, String, Name, List };
  Kind kind = Kind::Number;
  double number = 0;      // Number: the value (sign applied)
  bool isInteger = false; // Number: written without '.' or exponent (`3`, `-2`)
  std::string text;       // Number: as written ("1e-3"); String: the contents, escapes resolved;
                          // Name: the identifier
  std::vector<Value> items; // List: the numbers between the braces (`{15, 30}`)
  SourceRange loc;
};

// `kernel=3`
struct KeywordArg {
  std::string key;
  SourceRange keyLoc;
  Value value;
  SourceRange loc;        // from the key to the end of the value
};

// A layer, loss, optimizer, weighting or data source: `relu`, `dense(64)`, `conv2d(32, kernel=3)`,
// `adam(lr=0.001)`, `fashion_mnist("train")`; or, as a pipeline stage, an expert block with a body
// in braces: `mixture(experts=8) { dense(16) -> relu }`, `cross_stitch { dense(8) ; dense(4) }`
// (hasBody; `body` holds the stages split at ';', one for mixture / ple / cgc).
struct Call {
  std::string name;
  SourceRange nameLoc;
  bool hasParens = false;            // `relu()` vs `relu`
  std::vector<Value> positional;     // in order
  std::vector<KeywordArg> keyword;   // in order
  bool hasBody = false;              // `NAME(...) { ... }`
  std::vector<std::vector<Call>> body;  // hasBody: each stage's layers (at least one stage, each
                                        // with at least one layer)
  SourceRange bodyLoc;               // hasBody: from '{' to '}'
  SourceRange loc;                   // the whole call (with a body, up to its closing '}')
  bool hasArgs() const { return !positional.empty() || !keyword.empty(); }
};
using LayerCall = Call;

// A name used as an argument of a pipeline source: the `a` of `concat(a, b)`.
struct NameRef {
  std::string name;
  SourceRange loc;
};

// SOURCE -> layer -> layer ...
struct Pipeline {
  enum class SourceKind {
    Name,      // an input or a shared block: `image`, `trunk`
    Gate,      // gate(experts): a task's softmax gate over an expert block
    Call,      // FUNC(a, b, ...): `column(cs)`, `concat(a, b)` (sema checks FUNC)
  };
  SourceKind sourceKind = SourceKind::Name;
  std::string source;                // Name: the name; Gate: the block's name; Call: FUNC
  SourceRange sourceLoc;             // the source construct (`image`, `gate(experts)`, `concat(a, b)`)
  SourceRange sourceNameLoc;         // Name / Gate: the referenced name; Call: FUNC
  std::vector<NameRef> sourceArgs;   // Call: the names in parentheses
  std::vector<LayerCall> layers;
  SourceRange loc;                   // from the source to the last layer
};

struct ModelDecl {
  std::string name;
  SourceRange nameLoc;
  SourceRange loc;
};

// input NAME : f32[1, 28, 28]
struct InputDecl {
  std::string name;
  SourceRange nameLoc;
  std::string dtype;
  SourceRange dtypeLoc;
  std::vector<Value> dims;
  SourceRange shapeLoc;              // from the dtype to ']'
  SourceRange loc;
};

// shared NAME = PIPELINE
struct SharedDecl {
  std::string name;
  SourceRange nameLoc;
  Pipeline pipeline;
  SourceRange loc;
};

// `metric accuracy, auc`
struct MetricName {
  std::string name;
  SourceRange loc;
};

// task NAME { ... }. Statements are kept as written (any order, possibly repeated or missing);
// sema requires exactly one pipeline and one loss, at most one weight.
struct TaskDecl {
  std::string name;
  SourceRange nameLoc;
  std::vector<Pipeline> pipelines;
  std::vector<Call> losses;          // `loss cross_entropy`
  std::vector<Value> weights;        // `weight 0.5`
  std::vector<MetricName> metrics;   // every `metric` statement's names, in order
  SourceRange loc;                   // `task` to '}'
};

// One value of a train setting: a number, or a name / call.
struct SettingValue {
  std::string key;                   // `trunk=0.1` (lr_scale): "trunk", and `value` the number
  SourceRange keyLoc;
  bool isCall = false;               // the value is a name or a call (then `call` holds it)
  Call call;                         // isCall: `adam(lr=0.001)`, `fixed` (no parens), `false`
  Value value;                       // !isCall: a number
  SourceRange loc;
};

// `batch 64`, `optimizer adam(lr=0.001)`, `weighting fixed`, `shuffle false`, `freeze a, b`
struct Setting {
  std::string name;
  SourceRange nameLoc;
  bool isCall = false;               // the (first) value is a name or a call (then `call` holds it)
  Call call;                         // isCall: `adam(lr=0.001)`, `fixed` (no parens), `false`
  Value value;                       // !isCall: a number
  SourceRange valueLoc;
  std::string key;                   // the first value's `NAME=` (lr_scale), else empty
  SourceRange keyLoc;
  std::vector<SettingValue> more;    // the values after the first, for `freeze a, b, c`
  SourceRange loc;
};

struct TrainBlock {
  std::vector<Setting> settings;
  SourceRange keywordLoc;            // the `train` word
  SourceRange loc;
};

// `train fashion_mnist("train")`, `test csv("t.csv")`
struct DataSource {
  std::string role;                  // "train", "test" or whatever was written (sema checks)
  SourceRange roleLoc;
  Call call;
  SourceRange loc;
};

// One selector inside columns(...): "a" or 3 or 3..10
struct ColumnSel {
  bool isName = false;
  std::string name;                  // isName
  int64_t first = 0, last = 0;       // !isName: both ends included (first == last for `3`)
  bool isRange = false;              // written as `a..b`
  bool overflow = false;             // an integer too large to represent
  SourceRange loc;
};

// `pixels`, `label`, `price`, `columns("a", "b")`, `columns(3..10)`
struct FieldRef {
  std::string name;
  SourceRange nameLoc;
  bool hasParens = false;
  std::vector<ColumnSel> columns;
  SourceRange loc;
};

// FIELD [transform]
struct BindExpr {
  enum class Op { Field, Div, Mul, Add, Sub, In, Eq, Ne, Gt, Ge, Lt, Le };
  FieldRef field;
  Op op = Op::Field;
  SourceRange opLoc;
  Value operand;                     // Div..Le except In
  std::vector<Value> set;            // In {5, 7, 9}
  SourceRange loc;
};
const char *opSpelling(BindExpr::Op op);   // "/", "in", "==", ... ("" for Field)

// NAME = EXPR
struct Binding {
  std::string target;
  SourceRange targetLoc;
  BindExpr expr;
  SourceRange loc;
};

struct DataBlock {
  std::vector<DataSource> sources;
  std::vector<Binding> bindings;
  SourceRange keywordLoc;            // the `data` word
  SourceRange loc;
};

// A whole file. Declarations are grouped by kind, each list in source order; `order` records the
// kinds in source order for the checks that care (model first).
struct Program {
  enum class ItemKind { Model, Input, Shared, Task, Train, Data };
  struct ItemRef {
    ItemKind kind;
    size_t index;                    // into the list of that kind
    SourceRange loc;
  };
  std::vector<ModelDecl> models;
  std::vector<InputDecl> inputs;
  std::vector<SharedDecl> shared;
  std::vector<TaskDecl> tasks;
  std::vector<TrainBlock> trains;
  std::vector<DataBlock> datas;
  std::vector<ItemRef> order;
};

// `--emit=ast`: an indented tree, one node per line, with `<line:col-line:col>` ranges. Stable text
// (used by golden tests).
void dump(const Program &program, std::ostream &os);
std::string dumpToString(const Program &program);

// Source spelling helpers used by the dump and by diagnostics.
std::string str(const Value &v);       // 3, 1e-3, "train", relu
std::string str(const Call &c);        // conv2d(32, kernel=3); mixture(experts=2) { dense(4) }
std::string sourceStr(const Pipeline &p);  // image, gate(experts), concat(a, b)
std::string str(const FieldRef &f);    // columns(3..10)
std::string str(const BindExpr &e);    // label in {5, 7, 9}
std::string str(const SourceRange &r); // <6:31-6:48>

}  // namespace mtlc::ast
