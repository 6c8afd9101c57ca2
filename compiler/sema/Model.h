// The checked, typed model that semantic analysis produces from the AST. Everything a user can get
// wrong has been reported before this exists; lowering trusts it.
#pragma once

#include "spec/ModelSpec.h"
#include "syntax/SourceLoc.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mtlc::sema {

using Shape = std::vector<int64_t>;  // per-sample shape (batch dimension implicit)

std::string shapeStr(const Shape &s);  // "[1, 28, 28]"

// The layers and expert blocks: the rows of spec/Vocabulary.def. Embedding maps per-sample [k]
// integer indices to [k * dim]. Expert blocks (Mixture, Ple, CrossStitch, Mtan) each end their
// shared pipeline: its value is a set of per-task representations that tasks read with gate(NAME)
// (Mixture, Ple) or column(NAME) (CrossStitch, Mtan), never a plain tensor.
using vocab::LayerKind;
const char *layerName(LayerKind k);  // the table's name: "dense", "cross_stitch"

struct Layer {
  LayerKind kind;
  SourceRange loc;
  int64_t units = 0;     // dense(n): n; conv2d(c, ...), conv_transpose2d(c, ...): c
  int64_t kernel = 0;    // conv2d kernel, pool k
  int64_t stride = 1;    // conv2d / pool stride
  int64_t padding = 0;   // conv2d / conv_transpose2d padding
  int64_t outputPadding = 0;  // conv_transpose2d: rows and columns added at the bottom and right
  bool bias = true;      // conv2d / conv_transpose2d(..., bias=false): no bias
  double value = 0;      // leaky_relu slope, dropout p, layernorm / batchnorm eps
  int64_t scale = 0;     // upsample(s): s
  int64_t mode = 0;      // upsample's mode: ir::UpsampleMode's value (0 nearest, 1 bilinear)
  Shape in, out;         // per-sample shapes
  int index = 0;         // position in its pipeline, counting every layer from 0
  // embedding(vocab, dim): vocab here, dim in `units`.
  int64_t vocab = 0;
  // Expert blocks: Mixture uses `experts`; Ple uses levels, sharedExperts, specificExperts.
  int64_t experts = 0, levels = 0, sharedExperts = 0, specificExperts = 0;
  // Mixture with gate=dselect: DSelect-k's gates (`select` selectors, smooth-step `gamma`);
  // sema guarantees experts is a power of two >= 2 and 1 <= select <= experts.
  bool dselect = false;
  int64_t select = 0;
  double gamma = 0;
  std::vector<Layer> expert;               // Mixture / Ple: one expert's layers (indices from 0)
  std::vector<std::vector<Layer>> stages;  // CrossStitch, Mtan: each stage's layers (indices from 0)
  std::vector<int> readers;                // expert blocks: indices of the tasks that read it,
                                           // in task order (gate(NAME) / column(NAME))
  // Ple with levels > 1: one expert's layers at levels 2..L, whose input is the expert output
  // shape `out` (same kinds and arguments as `expert`, shapes re-inferred; sema guarantees that
  // they map `out` to `out` again, and that `out` is 1-D, as the next level's gates read it).
  std::vector<Layer> laterExpert;
  // Residual: y = body(x) + shortcut(x). `body` maps `in` to `out` (indices from 0); the shortcut
  // is x itself when in == out, else (projection) a 1x1 conv2d without bias, stride `stride` (the
  // body's total stride), to out[0] channels, then batchnorm: PyTorch names body.j, shortcut.0, .1.
  std::vector<Layer> body;
  bool projection = false;
  // Expert blocks, in words (docs/mtl-architectures.md has the full semantics):
  //  - Mixture: `in` is the block's input (1-D: each reader's gate is a dense softmax over it);
  //    `out` is one expert's output = what gate(NAME) gives each reader.
  //  - Ple: `in` as Mixture (level 1's experts and gates read it); `out` is one expert's output =
  //    the per-level and final per-task representation. Level l has sharedExperts experts shared
  //    by all readers and specificExperts experts per reader; reader t's gate at level l mixes its
  //    own specificExperts + the sharedExperts experts; for l < levels a shared gate mixes all
  //    sharedExperts + specificExperts * readers experts into the shared input of level l+1, and
  //    reader t's experts (and gate) at level l+1 read reader t's output of level l.
  //  - CrossStitch: `in` any shape; stages[s] maps stage s's input to its output (stage 0's input
  //    is `in`); one column per reader runs its own copy of every stage; between consecutive
  //    stages (not after the last) a cross-stitch unit (a [T, T] matrix, T = readers.size() >= 2)
  //    mixes the columns' stage outputs; `out` is the last stage's output = column(NAME).
  //  - Mtan: the stages are applied once (shared by every reader); stage s maps stage s−1's output
  //    (stage 0: `in`) to p_s = [C_s, H_s, W_s]; sema guarantees each p_s is [C, H, W] and that
  //    H_{s+1}, W_{s+1} equal H_s, W_s or halve them (maxpool(2)'s floor). Each reader has an
  //    attention module per stage and a 3x3 conv block between stages; `out` is the last stage's
  //    output shape = column(NAME), the reader's attended last stage.
  bool hasParams() const {
    if (kind == LayerKind::Residual) {  // its body's, or the projection's
      for (const Layer &l : body)
        if (l.hasParams()) return true;
      return projection;
    }
    return kind == LayerKind::Dense || kind == LayerKind::Conv2d || kind == LayerKind::ConvTranspose2d ||
           kind == LayerKind::LayerNorm ||
           kind == LayerKind::Embedding || kind == LayerKind::BatchNorm || kind == LayerKind::Mixture ||
           kind == LayerKind::Ple || kind == LayerKind::CrossStitch || kind == LayerKind::Mtan;
  }
  bool isExpertBlock() const { return kind == LayerKind::Mixture || kind == LayerKind::Ple ||
                                      kind == LayerKind::CrossStitch || kind == LayerKind::Mtan; }
  bool hasStages() const { return kind == LayerKind::CrossStitch || kind == LayerKind::Mtan; }
};

// Where a pipeline starts.
enum class SourceKind {
  Input,   // an input (sourceIndex into Model::inputs)
  Shared,  // a shared block's tensor (sourceIndex into Model::shared)
  Gate,    // gate(NAME): this task's gated output of the expert block ending shared[sourceIndex]
  Column,  // column(NAME): this task's column of the cross_stitch / mtan block ending shared[sourceIndex]
  Concat,  // concat(a, b, ...): `concat` lists the parts (each Input or Shared), joined along the
           // feature axis (every part must be 1-D per sample)
};

struct SourcePart {
  SourceKind kind = SourceKind::Input;  // Input or Shared
  int index = 0;
  std::string name;
};

// A pipeline: SOURCE -> layer -> layer ...; `name` is the shared block or task it defines, which
// is also the prefix of its parameters' checkpoint names ("trunk.0.weight").
// A shared pipeline may end with an expert block (only as its last layer); its outShape is then
// the per-task representation (the block layer's `out`), which only tasks read, through
// gate(NAME) / column(NAME). Gate / Column sources only start task pipelines; a shared block
// never reads an expert block.
struct Pipeline {
  std::string name;
  std::string source;          // an input or a shared block (for Concat: "concat")
  bool sourceIsInput = false;  // == (sourceKind == SourceKind::Input)
  int sourceIndex = 0;         // index into Model::inputs or Model::shared
  SourceKind sourceKind = SourceKind::Input;
  std::vector<SourcePart> concat;  // SourceKind::Concat only
  std::vector<Layer> layers;
  Shape inShape, outShape;
  SourceRange loc;
};

struct Input {
  std::string name;
  Shape shape;
  int64_t categories = 0;      // > 0: the input feeds embedding(categories, dim) layers, so its
                               // values are class indices in [0, categories) (InputSpec::categories)
  SourceRange loc;
};

struct Task {
  std::string name;
  Pipeline head;               // head.source is the shared block or input it reads
  rt::LossKind loss = rt::LossKind::MSE;
  std::vector<rt::Metric> metrics;
  double weight = 1.0;
  int64_t labelWidth = 1;      // 1 for cross_entropy / bce (H·W for cross_entropy on [C, H, W]);
                               // the head's values for mse / l1 / cosine
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

  // The shared block whose output every task's head starts from directly (MGDA-UB's "shared
  // boundary", where mgda and rep_grad=true take the task gradients), or -1 when the heads do not
  // all read one such block (an input, a gate, a column, a concat, or different blocks).
  int sharedBoundary() const {
    int z = -1;
    for (const Task &t : tasks) {
      if (t.head.sourceKind != SourceKind::Shared || (z >= 0 && z != t.head.sourceIndex)) return -1;
      z = t.head.sourceIndex;
    }
    return z;
  }
};

}  // namespace mtlc::sema
