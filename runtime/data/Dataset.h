// Data sources and the data a model trains on.
//
//   source (SourceSpec)  ──loadSource──►  Table (named float fields)
//   Table + bindings     ──loadDataset─►  Dataset (one contiguous [rows, width] buffer per model
//                                          input and per task label, in model order)
//
// Sources (SourceSpec::kind, args):
//   fashion_mnist  {"train"|"test"}            Debian's dataset-fashion-mnist files, or
//                  {"train"|"test", DIR}       the same file names inside DIR (see below)
//   idx            {IMAGES, LABELS}            any IDX pair, gzipped or not
//   csv            {PATH}                      header row + numeric cells
//   synthetic_mmoe options correlation=0.5, samples=12000, dim=100, seed=0   (see Synthetic.cpp)
//   multi_fashion  {"train"|"test"}            two Fashion-MNIST items overlaid (see Synthetic.cpp)
//
// Fields: image sources give `pixels` [N, H*W] (u8 scaled to [0, 1]) and `label` [N, 1]; a csv
// gives one width-1 field per column, named by the header, in column order.
//
// The Fashion-MNIST directory is /usr/share/datasets/fashion-mnist unless the environment
// variable MTLC_FASHION_MNIST_DIR names another; it holds train-images-idx3-ubyte(.gz),
// train-labels-idx1-ubyte(.gz) (split "train") and t10k-images-idx3-ubyte(.gz),
// t10k-labels-idx1-ubyte(.gz) (split "test"; `test-` is accepted in place of `t10k-`).
#pragma once

#include "runtime/HugePages.h"
#include "spec/DataFiles.h"  // sourceFromPath: `--data train=PATH`
#include "spec/ModelSpec.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mtlc::rt {

// A float matrix [rows, width], row-major, with a name.
struct Field {
  std::string name;
  int64_t width = 0;
  HugeFloats data;  // rows * width (huge pages: batches gather random rows)
};

// What a source holds: named fields over the same rows.
struct Table {
  std::string origin;        // for messages: "data/x.csv", "fashion_mnist(\"train\")"
  int64_t rows = 0;
  std::vector<Field> fields;
  bool columnar = false;     // a csv: every field is one column, in file order
  std::vector<int64_t> rowLine;  // csv: the 1-based file line of each row (empty otherwise)

  const Field* find(const std::string& name) const;
  std::string fieldNames() const;          // "a, b, c" for messages
  std::string rowPos(int64_t row) const;   // "data/x.csv:17" or "fashion_mnist(\"train\") sample 17"
};

// The model's view of a source: one buffer per input binding and per label binding.
struct Dataset {
  std::string origin;
  int64_t rows = 0;
  std::vector<Field> inputs;   // Field::name = binding target (the input name)
  std::vector<Field> labels;   // Field::name = binding target (the task name)
  std::vector<int64_t> rowLine;
  std::string rowPos(int64_t row) const;
};

// ---- sources ------------------------------------------------------------------------------------

// `split` ("train" | "test") only matters to generators, which draw different samples per split.
Table loadSource(const SourceSpec& source, const std::string& split = "train");

Table readCsv(const std::string& path);
Table readIdx(const std::string& imagesPath, const std::string& labelsPath);
Table fashionMnist(const std::string& split, const std::string& dir = "");
std::string fashionMnistDir();  // $MTLC_FASHION_MNIST_DIR or the Debian location

// Generators (Synthetic.cpp).
Table syntheticMmoe(double correlation, int64_t samples, int64_t dim, uint64_t seed,
                    const std::string& split = "train");
Table multiFashion(const std::string& split, const std::string& dir = "");

// ---- bindings -----------------------------------------------------------------------------------

// Evaluates every binding against the source's table. Each result must have Binding::width
// floats per sample. Throws Error naming the source and the binding otherwise, and when the source
// has no rows.
Dataset loadDataset(const SourceSpec& source, const std::vector<Binding>& inputs,
                    const std::vector<Binding>& labels, const std::string& split = "train");
Dataset bindTable(Table table, const std::vector<Binding>& inputs,
                  const std::vector<Binding>& labels);

// Checks every label against its task's loss: cross_entropy labels are integers in
// [0, outWidth); bce labels are 0 or 1 (any value in [0, 1] is accepted: soft labels); mse/l1 labels
// are finite. A NaN label (an empty csv cell or `nan`) is absent and accepted: the loss kernels
// mask it and the metrics skip it. Throws Error naming the row ("data/x.csv:17: task `kind` label 12 is out of range [0, 10)").
void validateLabels(const std::vector<TaskSpec>& tasks, const Dataset& data);

// Checks inputs that index an embedding (InputSpec::categories > 0): every value an integer in
// [0, categories). Inputs are matched to buffers by name.
void validateInputs(const std::vector<InputSpec>& inputs, const Dataset& data);

}  // namespace mtlc::rt
