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
//   npz            {PATH}                      NumPy's archive: one field per array (Npz.cpp)
//   npy            {PATH}                      one NumPy array: the field `data` (Npz.cpp)
//   synthetic_mmoe options correlation=0.5, samples=12000, dim=100, seed=0   (see Synthetic.cpp)
//   multi_fashion  {"train"|"test"}            two Fashion-MNIST items overlaid (see Synthetic.cpp)
//   multi_fashion_dense {"train"|"test"}       the same, with per-pixel targets (see Synthetic.cpp)
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
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace mtlc::rt {

// The floats of a field: its own (huge pages: batches gather random rows), or a read-only view of
// floats that live in a memory-mapped file (an npz member stored as little-endian f32), kept
// mapped while any copy of the view lives. A view is not copied into memory. The Batcher reads a
// view's rows with pread from the file (readRows) rather than through the mapping: a mapped page
// read at random stays in the process's resident set, and the kernel maps the file's large page
// cache folios whole, so random batches would soon map the whole archive; pread leaves the pages
// in the page cache alone, so a data set larger than memory trains with a small resident set.
// A view's floats may be misaligned (an npz member starts at any byte of its archive), so the
// readers of a field copy them with memcpy (Batcher) or own them first (labels: bindTable).
// Writing through a view (the non-const accessors) first makes the floats the store's own.
class FloatStore {
 public:
  FloatStore() = default;
  FloatStore(HugeFloats owned) : owned_(std::move(owned)) {}  // NOLINT: implicit, as a vector
  FloatStore(std::initializer_list<float> values) : owned_(values) {}
  // `fd` stays open while `mapping` lives; `values` lie at byte `fileOffset` of its file.
  static FloatStore view(std::shared_ptr<const void> mapping, const float* values, size_t count, int fd,
                         uint64_t fileOffset);

  bool isView() const { return mapping_ != nullptr; }
  // Copies `count` floats from index `first` into `out`: from the file for a view (see above),
  // from memory otherwise. False (errno set) when the file cannot be read.
  bool readFloats(size_t first, size_t count, float* out) const;
  size_t size() const { return mapping_ ? viewCount_ : owned_.size(); }
  bool empty() const { return size() == 0; }
  // A view's pointer may be misaligned: read it through at() or bytes() (memcpy from bytes), never
  // as floats in place.
  const float* data() const { return mapping_ ? reinterpret_cast<const float*>(view_) : owned_.data(); }
  const unsigned char* bytes() const { return mapping_ ? view_ : reinterpret_cast<const unsigned char*>(owned_.data()); }
  float at(size_t i) const {
    float v;
    std::memcpy(&v, bytes() + i * sizeof(float), sizeof v);
    return v;
  }
  const float* begin() const { return data(); }
  const float* end() const { return data() + size(); }
  const float& operator[](size_t i) const { return data()[i]; }

  float* data() { return own().data(); }
  float* begin() { return own().data(); }
  float* end() { return own().data() + owned_.size(); }
  float& operator[](size_t i) { return own()[i]; }
  void push_back(float v) { own().push_back(v); }
  void resize(size_t n) { own().resize(n); }
  void clear() { own().clear(); }
  HugeFloats& own();  // a view's floats become the store's own

  friend bool operator==(const FloatStore& a, const FloatStore& b);
  friend bool operator!=(const FloatStore& a, const FloatStore& b) { return !(a == b); }

 private:
  HugeFloats owned_;
  std::shared_ptr<const void> mapping_;  // null: owned_ holds the floats
  const unsigned char* view_ = nullptr;  // may be misaligned for float
  size_t viewCount_ = 0;
  int fd_ = -1;
  uint64_t fileOffset_ = 0;
};

// A float matrix [rows, width], row-major, with a name.
struct Field {
  std::string name;
  int64_t width = 0;
  FloatStore data;  // rows * width
};

// What a source holds: named fields over the same rows.
struct Table {
  std::string origin;        // for messages: "data/x.csv", "fashion_mnist(\"train\")"
  int64_t rows = 0;
  std::vector<Field> fields;
  bool columnar = false;     // a csv: every field is one column, in file order
  std::vector<int64_t> rowLine;  // csv: the 1-based file line of each row (empty otherwise)
  bool minusOneUnlabelled = false;  // npz/npy: a class-index label -1 is missing (the contract)

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
  bool minusOneUnlabelled = false;  // from the Table
  std::string rowPos(int64_t row) const;
};

// ---- sources ------------------------------------------------------------------------------------

// `split` ("train" | "test") only matters to generators, which draw different samples per split.
// `wanted`: the fields the bindings read, for sources that can skip the others (npz).
// `progress`: a long read (a big compressed npz member) may show progress on a terminal.
Table loadSource(const SourceSpec& source, const std::string& split = "train",
                 const std::vector<std::string>& wanted = {}, bool progress = true);

Table readCsv(const std::string& path);
// NumPy files (Npz.cpp; the format: spec/NpzFiles.h): `wanted` names the arrays to load (all when
// empty); the others' headers are still checked.
Table readNpz(const std::string& path, const std::vector<std::string>& wanted = {}, bool progress = true);
Table readNpy(const std::string& path);
Table readIdx(const std::string& imagesPath, const std::string& labelsPath);
Table fashionMnist(const std::string& split, const std::string& dir = "");
std::string fashionMnistDir();  // $MTLC_FASHION_MNIST_DIR or the Debian location

// Generators (Synthetic.cpp).
Table syntheticMmoe(double correlation, int64_t samples, int64_t dim, uint64_t seed,
                    const std::string& split = "train");
Table multiFashion(const std::string& split, const std::string& dir = "");
Table multiFashionDense(const std::string& split, const std::string& dir = "");

// ---- bindings -----------------------------------------------------------------------------------

// Evaluates every binding against the source's table. Each result must have Binding::width
// floats per sample. Throws Error naming the source and the binding otherwise, and when the source
// has no rows.
Dataset loadDataset(const SourceSpec& source, const std::vector<Binding>& inputs,
                    const std::vector<Binding>& labels, const std::string& split = "train",
                    bool progress = true);
Dataset bindTable(Table table, const std::vector<Binding>& inputs,
                  const std::vector<Binding>& labels);

// For a source where −1 marks an unlabelled sample (npz, npy: Dataset::minusOneUnlabelled), makes
// every −1 of a cross_entropy task's label NaN, the missing value the loss kernels and metrics skip.
void markUnlabelled(const std::vector<TaskSpec>& tasks, Dataset& data);

// Checks every label against its task's loss: cross_entropy labels are integers in
// [0, outWidth); bce labels are 0 or 1 (any value in [0, 1] is accepted: soft labels); mse/l1 labels
// are finite. A NaN label (an empty csv cell or `nan`) is absent and accepted: the loss kernels
// mask it and the metrics skip it. Throws Error naming the row ("data/x.csv:17: task `kind` label 12 is out of range [0, 10)").
void validateLabels(const std::vector<TaskSpec>& tasks, const Dataset& data);

// Checks inputs that index an embedding (InputSpec::categories > 0): every value an integer in
// [0, categories). Inputs are matched to buffers by name.
void validateInputs(const std::vector<InputSpec>& inputs, const Dataset& data);

}  // namespace mtlc::rt
