// The npz and npy sources (runtime/data/Npz.cpp): NumPy's own files, written at test time by
// npz_fixtures.py with /usr/bin/python3 and numpy, must read back exactly as NumPy converts them to
// f32; every broken file must give its message; the .npy header parser refuses what NumPy would
// not write; memory-mapped fields bind and train as owned ones.
#include "TestUtil.h"

#include "runtime/data/Batcher.h"
#include "runtime/data/Dataset.h"
#include "spec/NpzFiles.h"
#include "spec/Error.h"

#include <cmath>
#include <cstring>
#include <filesystem>

using namespace mtlc::rt;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// The fixtures' folder, written once per run; empty when numpy is missing (the caller skips).
std::string fixtures() {
  static const std::string dir = [] {
    const fs::path out = fs::path(MTLC_BINARY_DIR) / "test-work" / "npz";
    fs::remove_all(out);
    fs::create_directories(out);
    const std::string cmd = "/usr/bin/python3 '" MTLC_SOURCE_DIR "/tests/runtime/npz_fixtures.py' '" +
                            out.string() + "'";
    const int status = std::system(cmd.c_str());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) return std::string();
    REQUIRE(status == 0);
    return out.string();
  }();
  return dir;
}

std::vector<uint8_t> fileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The field's floats, byte for byte, against NumPy's conversion written at `expectedPath`.
void checkField(const Table& t, const std::string& name, int64_t width, const std::string& expectedPath) {
  const Field* f = t.find(name);
  REQUIRE(f != nullptr);
  CHECK(f->width == width);
  const std::vector<uint8_t> expected = fileBytes(expectedPath);
  REQUIRE(f->data.size() * sizeof(float) == expected.size());
  CHECK(std::memcmp(f->data.bytes(), expected.data(), expected.size()) == 0);
}

NpyArrayInfo header(const std::string& dict, int major = 1) {
  std::string text = dict;
  std::string b = "\x93NUMPY";
  b += char(major);
  b += '\0';
  const size_t len = text.size();
  b += char(len & 0xff);
  b += char((len >> 8) & 0xff);
  if (major > 1) b += std::string(2, '\0');
  return parseNpyHeader(b + text, "h.npy");
}

}  // namespace

TEST_CASE("npz: every dtype, byte order, memory order and compression reads as NumPy converts it",
          "[data][npz]") {
  const std::string dir = fixtures();
  if (dir.empty()) {
    WARN("skipped: numpy is not installed for /usr/bin/python3 (python3-numpy)");
    return;
  }
  int archives = 0, views = 0, arrays = 0;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "good")) {
    const std::string path = e.path().string(), stem = (e.path().parent_path() / e.path().stem()).string();
    if (e.path().extension() == ".npz") {
      INFO(path);
      Table t = readNpz(path);
      REQUIRE(t.rows == 5);
      CHECK(t.minusOneUnlabelled);
      checkField(t, "x", 12, stem + ".x.f32");
      checkField(t, "y", 1, stem + ".y.f32");
      // f32, little-endian, C order, stored: used in place, not copied.
      const bool inPlace = e.path().stem().string() == "f4_le_C_stored";
      CHECK(t.find("x")->data.isView() == inPlace);
      views += inPlace;
      ++archives;
    } else if (e.path().extension() == ".npy") {
      INFO(path);
      Table t = readNpy(path);
      REQUIRE(t.rows == 5);
      checkField(t, "data", 12, stem + ".data.f32");
      ++arrays;
    }
  }
  CHECK(archives == 12 * 2 * 2 * 2);  // dtypes x byte orders x memory orders x compressions
  CHECK(arrays == 12 * 2 * 2);
  CHECK(views == 1);
}

TEST_CASE("npz: broken files give a message naming the file and the member", "[data][npz]") {
  const std::string dir = fixtures();
  if (dir.empty()) {
    WARN("skipped: numpy is not installed for /usr/bin/python3 (python3-numpy)");
    return;
  }
  const std::string bad = dir + "/bad/";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated.npz", "truncated.npz: not a ZIP archive, or a truncated or corrupt one"},
      {"empty.npz", "empty.npz: not a ZIP archive"},
      {"not_zip.npz", "not_zip.npz: not a ZIP archive"},
      {"crc.npz", "crc.npz: member `x.npy`: corrupt"},  // the stream's error, or its CRC
      {"counts.npz", "counts.npz: the arrays have different sample counts: `x` [4, 3] has 4, `y` [5] has 5"},
      {"pickled.npz", "pickled.npz: member `names.npy`: the array holds Python objects (dtype '|O'), which "
                      "NumPy stores pickled: not supported"},
      {"complex.npz", "complex.npz: member `z.npy`: dtype '<c8' is not supported (supported: float16, float32, "
                      "float64, int8..int64, uint8..uint64 and bool)"},
      {"structured.npz", "structured.npz: member `r.npy`: a structured dtype (a list of fields) is not supported"},
      {"strings.npz", "strings.npz: member `s.npy`: dtype '<U1' is not supported"},
      {"inexact.npz", "inexact.npz: member `big.npy`: element 2 is 16777217, an integer f32 cannot hold exactly"},
      {"magic.npz", "magic.npz: member `x.npy`: not a .npy array"},
      {"short_member.npz", "short_member.npz: member `x.npy`: truncated .npy array: shape [4, 3] of '<f4' needs "
                           "48 bytes after its header, the member has 40"},
      {"not_npy.npz", "not_npy.npz: member `readme.txt`: not a .npy array (an .npz holds only NAME.npy members"},
      {"bzip2.npz", "bzip2.npz: member `x.npy`: compression method 12 is not supported"},
      {"version.npz", "version.npz: member `x.npy`: .npy format version 4.0 is not supported"},
      {"scalars.npz", "scalars.npz: no array with a sample dimension"},
      {"no_such.npz", "no_such.npz: cannot open: No such file or directory"},
  };
  for (const auto& [file, message] : cases) {
    INFO(file);
    CHECK_THROWS_WITH(readNpz(bad + file), Contains(message));
  }
  CHECK_THROWS_WITH(readNpy(bad + "truncated.npy"),
                    Contains("truncated.npy: truncated .npy file: shape [4, 3] of '<f4' needs 176 bytes, the file has 172"));
  CHECK_THROWS_WITH(readNpz(bad + "good.npz", {"x", "z"}),
                    Contains("good.npz: no array `z` (arrays with a sample dimension: x, y)"));
  // The headers alone (what the compiler reads) already show the header errors.
  CHECK_THROWS_WITH(readNpzHeaders(bad + "pickled.npz", "p.npz"), Contains("p.npz: member `names.npy`: the array holds"));
  CHECK_NOTHROW(readNpzHeaders(bad + "inexact.npz", "i.npz"));  // a value: found when the data is read
}

TEST_CASE("npy header: NumPy's dict, strictly", "[data][npz]") {
  NpyArrayInfo a = header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }   \n");
  CHECK(a.kind == NpyKind::Float);
  CHECK(a.itemBytes == 4);
  CHECK_FALSE(a.bigEndian);
  CHECK_FALSE(a.fortranOrder);
  CHECK(a.shape == std::vector<int64_t>{3, 4});
  CHECK(a.dataOffset == 10 + 63);
  a = header("{\"shape\": (7,), \"fortran_order\": True, \"descr\": \">u2\"}\n", 2);
  CHECK((a.kind == NpyKind::Unsigned && a.itemBytes == 2 && a.bigEndian && a.fortranOrder));
  CHECK(a.shape == std::vector<int64_t>{7});
  CHECK(header("{'descr': '|b1', 'fortran_order': False, 'shape': (), }\n", 3).shape.empty());
  CHECK(header("{'descr': '|b1', 'fortran_order': False, 'shape': (), }\n", 3).kind == NpyKind::Bool);

  auto refused = [](const std::string& dict, const std::string& message) {
    INFO(dict);
    CHECK_THROWS_WITH(header(dict), Contains(message));
  };
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", "no '\\n' at the end");
  refused("{'descr': '<f4', 'fortran_order': False}\n", "no 'shape' key");
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }\n", "a 1-tuple without its comma");
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }\n", "expected a non-negative integer");
  refused("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}\n", "the key 'descr' twice");
  refused("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}\n", "expected True or False");
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}\n", "an unknown key 'x'");
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk\n", "text after the dict");
  refused("{'descr': '<f16', 'fortran_order': False, 'shape': (3,)}\n", "dtype '<f16' is not supported");
  refused("{'descr': '<f1', 'fortran_order': False, 'shape': (3,)}\n", "dtype '<f1' is not supported");
  refused("{'descr': '|O', 'fortran_order': False, 'shape': (3,)}\n", "holds Python objects (dtype '|O')");
  refused("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}\n", "a structured dtype");
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (1125899906842625,)}\n", "a dimension that large");
  refused("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576, 1048576)}\n", "implausibly many");
  refused("{'descr': '\xc3\xa9', 'fortran_order': False, 'shape': (3,)}\n", "a non-ASCII byte");
  using namespace std::string_literals;
  CHECK_THROWS_WITH(parseNpyHeader("\x93NUMPY\x01\x00\x40\x00{'descr'"s, "h.npy"),
                    Contains("h.npy: truncated .npy header: it has 64 bytes, 8 are there"));
  CHECK_THROWS_WITH(parseNpyHeader("\x93NUMPZ\x01\x00"s, "h.npy"), Contains("not a .npy array: the first 8"));
  CHECK_THROWS_WITH(parseNpyHeader("\x93NUMPY\x02\x00\x40\x00"s, "h.npy"),
                    Contains("h.npy: truncated .npy header: 10 bytes, the version 2 preamble has 12"));
}

TEST_CASE("npz: --data paths, mapped inputs, owned labels, -1 unlabelled for class indices", "[data][npz]") {
  CHECK(sourceFromPath("a/train.npz").kind == "npz");
  CHECK(sourceFromPath("a/train.NPY").kind == "npy");
  CHECK(sourceFromPath("a/train.npy").args == std::vector<std::string>{"a/train.npy"});
  const std::string dir = fixtures();
  if (dir.empty()) {
    WARN("skipped: numpy is not installed for /usr/bin/python3 (python3-numpy)");
    return;
  }
  SourceSpec s;
  s.kind = "npz";
  s.args = {dir + "/good/f4_le_C_stored.npz"};
  Binding x{"image", {}, 12}, y{"kind", {}, 1}, scaled{"scaled", {}, 12};
  x.expr.ref.field = "x";
  y.expr.ref.field = "y";
  Dataset d = loadDataset(s, {x}, {y});
  CHECK(d.minusOneUnlabelled);
  CHECK(d.inputs[0].data.isView());   // read where it lies in the archive
  CHECK_FALSE(d.labels[0].data.isView());  // the checks and metrics read labels in place
  const std::vector<uint8_t> expected = fileBytes(dir + "/good/f4_le_C_stored.x.f32");
  const FloatStore &view = d.inputs[0].data;  // const: reading does not make the floats owned
  CHECK(std::memcmp(view.bytes(), expected.data(), expected.size()) == 0);
  // The Batcher reads a view's rows from the file: the batches of the same floats owned.
  Dataset owned = d;
  owned.inputs[0].data.own();
  {
    Batcher fromFile(d, 2, true, 7), fromMemory(owned, 2, true, 7);
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      fromFile.startEpoch(epoch);
      fromMemory.startEpoch(epoch);
      for (int64_t b = 0; b < fromMemory.batches(); ++b) {
        const int64_t n = fromFile.gather(b);
        REQUIRE(fromMemory.gather(b) == n);
        CHECK(std::memcmp(fromFile.inputs()[0], fromMemory.inputs()[0], size_t(n * 12) * sizeof(float)) == 0);
      }
    }
  }
  CHECK(view.isView());
  // A file cut short under a loaded view: the batch that reads past its end says so.
  const std::string cut = dir + "/cut.npz";
  fs::copy_file(s.args[0], cut, fs::copy_options::overwrite_existing);
  SourceSpec cutSource = s;
  cutSource.args = {cut};
  Dataset shortened = loadDataset(cutSource, {x}, {y});
  fs::resize_file(cut, 64);
  Batcher reader(shortened, 2, false, 0);
  CHECK_THROWS_WITH(reader.gather(0), Contains("cut.npz: cannot read its samples: Input/output error"));
  // A transform reads the mapped floats into its own.
  scaled.expr.ref.field = "x";
  scaled.expr.op = BindExpr::Op::Mul;
  scaled.expr.value = 2;
  Dataset two = loadDataset(s, {scaled}, {y});
  CHECK_FALSE(two.inputs[0].data.isView());
  CHECK(two.inputs[0].data[2] == 3.0f);  // 1.5 * 2

  Table t;
  t.origin = "t.npz";
  t.rows = 3;
  t.minusOneUnlabelled = true;
  t.fields = {Field{"c", 1, HugeFloats{2, -1, 0}}, Field{"r", 1, HugeFloats{-1, 1, 2}}};
  Binding c{"cls", {}, 1}, r{"reg", {}, 1};
  c.expr.ref.field = "c";
  r.expr.ref.field = "r";
  Dataset labels = bindTable(t, {}, {c, r});
  TaskSpec cls, reg;
  cls.name = "cls", cls.loss = LossKind::CrossEntropy, cls.outWidth = 3, cls.labelWidth = 1;
  reg.name = "reg", reg.loss = LossKind::MSE, reg.outWidth = 1, reg.labelWidth = 1;
  markUnlabelled({cls, reg}, labels);
  CHECK(labels.labels[0].data[0] == 2.0f);
  CHECK(std::isnan(labels.labels[0].data[1]));  // class index -1: unlabelled
  CHECK(labels.labels[1].data[0] == -1.0f);     // a real value -1 is a value
  CHECK_NOTHROW(validateLabels({cls, reg}, labels));
  // `c in {2}` reads class indices: -1 stays unlabelled (NaN), not a 0.
  Binding isTwo{"two", {}, 1};
  isTwo.expr.ref.field = "c";
  isTwo.expr.op = BindExpr::Op::In;
  isTwo.expr.set = {2};
  Dataset set = bindTable(t, {}, {isTwo});
  CHECK(set.labels[0].data[0] == 1.0f);
  CHECK(std::isnan(set.labels[0].data[1]));
  CHECK(set.labels[0].data[2] == 0.0f);
  // Not from NumPy (a csv): -1 stays, and is no class index.
  t.minusOneUnlabelled = false;
  Dataset csv = bindTable(t, {}, {c, r});
  markUnlabelled({cls, reg}, csv);
  CHECK_THROWS_WITH(validateLabels({cls, reg}, csv), Contains("label -1 is not a class index"));
}
