// The checked, typed model that semantic analysis produces from the AST. Everything a user can get
// wrong has been reported before this exists; lowering trusts it.
#pragma once

#include "runtime/ModelSpec.h"
#include "syntax/SourceLoc.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mtlc::sema {

using Shape = std::vector<int64_t>;  // per-sample shape (batch dimension implicit)

std::string shapeStr(const Shape &s);  // "[1, 28, 28]"

enum class LayerKind {
  Dense, Conv2d, MaxPool, AvgPool, Flatten, Relu, LeakyRelu, Sigmoid, Tanh, Gelu, Dropout, LayerNorm
};
const char *layerName(LayerKind k);

struct Layer {
  LayerKind kind;
  SourceRange loc;
  int64_t units = 0;     // dense(n): n; conv2d(c, ...): c
  int64_t kernel = 0;    // conv2d kernel, pool k
  int64_t stride = 1;    // conv2d / pool stride
  int64_t padding = 0;   // conv2d padding
  double value = 0;      // leaky_relu slope, dropout p, layernorm eps
  Shape in, out;         // per-sample shapes
  int index = 0;         // position in its pipeline, counting every layer from 0
  bool hasParams() const { return kind == LayerKind::Dense || kind == LayerKind::Conv2d ||
                                  kind == LayerKind::LayerNorm; }
};

// A pipeline: SOURCE -> layer -> layer ...; `name` is the shared block or task it defines, which
// is also the prefix of its parameters' checkpoint names ("trunk.0.weight").
struct Pipeline {
  std::string name;
  std::string source;          // an input or a shared block
  bool sourceIsInput = false;
  int sourceIndex = 0;         // index into Model::inputs or Model::shared
  std::vector<Layer> layers;
  Shape inShape, outShape;
  SourceRange loc;
};

struct Input {
  std::string name;
  Shape shape;
  SourceRange loc;
};

struct Task {
  std::string name;
  Pipeline head;               // head.source is the shared block or input it reads
  rt::LossKind loss = rt::LossKind::MSE;
  std::vector<rt::Metric> metrics;
  double weight = 1.0;
  int64_t labelWidth = 1;      // 1 for cross_entropy / bce; head width for mse / l1
  SourceRange loc;
};

struct Model {
  std::string name;
  std::string file;            // the .mtl path (data paths are relative to its directory)
  std::vector<Input> inputs;
  std::vector<Pipeline> shared;  // in dependency order: a block only reads inputs or earlier blocks
  std::vector<Task> tasks;
  rt::TrainSpec train;
  rt::DataSpec data;           // bindings in input order and task order
};

}  // namespace mtlc::sema
