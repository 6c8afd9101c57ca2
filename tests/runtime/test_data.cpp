// Data sources: IDX (plain, gzipped, truncated, other dtypes), CSV, Fashion-MNIST, --data paths.
#include "TestUtil.h"

#include "runtime/data/Dataset.h"
#include "spec/Error.h"

#include <cmath>
#include <filesystem>

using namespace mtlc::rt;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;

namespace {

// 3 images of 2x2 pixels and their labels.
const std::vector<uint8_t> kPixels{0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0};
const std::vector<uint8_t> kLabels{7, 0, 9};

const Field& field(const Table& t, const std::string& name) {
  const Field* f = t.find(name);
  REQUIRE(f != nullptr);
  return *f;
}

}  // namespace

TEST_CASE("idx: plain and gzipped u8 pairs give pixels in [0,1] and labels", "[data][idx]") {
  TempDir dir;
  for (bool gz : {false, true}) {
    auto images = idxU8({3, 2, 2}, kPixels), labels = idxU8({3}, kLabels);
    if (gz) images = gzipBytes(images), labels = gzipBytes(labels);
    writeBytes(dir / "img", images);
    writeBytes(dir / "lab", labels);
    Table t = readIdx(dir / "img", dir / "lab");
    REQUIRE(t.rows == 3);
    const Field& px = field(t, "pixels");
    REQUIRE(px.width == 4);
    CHECK(px.data[0] == 0.0f);
    CHECK(px.data[1] == 1.0f);
    CHECK(px.data[2] == Approx(0.2f));
    CHECK(px.data[3] == Approx(0.4f));
    CHECK(px.data[4] == Approx(1.0f / 255));
    const Field& lab = field(t, "label");
    REQUIRE(lab.width == 1);
    CHECK(lab.data == HugeFloats{7, 0, 9});
  }
}

TEST_CASE("idx: i32 and f32 element types are read big-endian, unscaled", "[data][idx]") {
  TempDir dir;
  // 2 images of 1 i32 value each: 258 and -1; labels f32 1.5, -2.0.
  std::vector<uint8_t> img{0, 0, 0x0C, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2, 0xff, 0xff, 0xff, 0xff};
  std::vector<uint8_t> lab{0, 0, 0x0D, 1, 0, 0, 0, 2, 0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0};
  writeBytes(dir / "img", img);
  writeBytes(dir / "lab", lab);
  Table t = readIdx(dir / "img", dir / "lab");
  CHECK(field(t, "pixels").data == HugeFloats{258, -1});
  CHECK(field(t, "label").data == HugeFloats{1.5f, -2.0f});
}

TEST_CASE("idx: truncated, corrupt and mismatched files are errors naming the file", "[data][idx]") {
  TempDir dir;
  writeBytes(dir / "lab", idxU8({3}, kLabels));
  auto full = idxU8({3, 2, 2}, kPixels);

  SECTION("truncated data") {
    auto cut = full;
    cut.resize(cut.size() - 5);
    writeBytes(dir / "img", cut);
    CHECK_THROWS_WITH(readIdx(dir / "img", dir / "lab"),
                      dir / "img" + ": truncated IDX data: dimensions 3x2x2 need 28 bytes, file has 23");
  }
  SECTION("truncated gzip stream") {
    auto gz = gzipBytes(full);
    gz.resize(gz.size() / 2);
    writeBytes(dir / "img.gz", gz);
    CHECK_THROWS_WITH(readIdx(dir / "img.gz", dir / "lab"), Contains(dir / "img.gz") && Contains("truncated gzip stream"));
  }
  SECTION("corrupt gzip stream") {
    auto gz = gzipBytes(full);
    for (size_t i = 10; i < gz.size() - 8; ++i) gz[i] ^= 0x5a;
    writeBytes(dir / "img.gz", gz);
    CHECK_THROWS_WITH(readIdx(dir / "img.gz", dir / "lab"), Contains(dir / "img.gz") && Contains("gzip"));
  }
  SECTION("truncated header") {
    writeBytes(dir / "img", {0, 0, 8, 3, 0, 0, 0, 3, 0, 0});
    CHECK_THROWS_WITH(readIdx(dir / "img", dir / "lab"),
                      dir / "img" + ": truncated IDX header: 3 dimensions need 16 bytes, file has 10");
  }
  SECTION("bad magic") {
    auto bad = full;
    bad[0] = 0x50;
    writeBytes(dir / "img", bad);
    CHECK_THROWS_WITH(readIdx(dir / "img", dir / "lab"), Contains("not an IDX file: magic starts 50 00"));
  }
  SECTION("unknown dtype") {
    auto bad = full;
    bad[2] = 0x07;
    writeBytes(dir / "img", bad);
    CHECK_THROWS_WITH(readIdx(dir / "img", dir / "lab"), Contains("unknown IDX element type 0x07"));
  }
  SECTION("trailing bytes") {
    auto bad = full;
    bad.push_back(1);
    writeBytes(dir / "img", bad);
    CHECK_THROWS_WITH(readIdx(dir / "img", dir / "lab"), Contains("1 unexpected bytes after the IDX data"));
  }
  SECTION("label count differs") {
    writeBytes(dir / "img", full);
    writeBytes(dir / "lab2", idxU8({2}, {1, 2}));
    CHECK_THROWS_WITH(readIdx(dir / "img", dir / "lab2"),
                      dir / "lab2" + ": 2 labels, but " + dir / "img" + " has 3 images");
  }
  SECTION("missing file") {
    CHECK_THROWS_WITH(readIdx(dir / "nope", dir / "lab"), Contains(dir / "nope" + ": cannot open"));
  }
}

TEST_CASE("csv: header, numbers, NaN cells, quotes, CRLF, blank lines", "[data][csv]") {
  TempDir dir;
  writeText(dir / "a.csv", "x, \"y\" ,label\r\n1,2.5,0\r\n\r\n-3e2, ,1\n\"4\",nan,+2\n");
  Table t = readCsv(dir / "a.csv");
  REQUIRE(t.rows == 3);
  REQUIRE(t.columnar);
  REQUIRE(t.fieldNames() == "x, y, label");
  CHECK(field(t, "x").data == HugeFloats{1, -300, 4});
  CHECK(field(t, "y").data[0] == 2.5f);
  CHECK(std::isnan(field(t, "y").data[1]));
  CHECK(std::isnan(field(t, "y").data[2]));
  CHECK(field(t, "label").data == HugeFloats{0, 1, 2});
  CHECK(t.rowPos(1) == dir / "a.csv" + ":4");  // the blank line 3 is skipped
}

TEST_CASE("csv: errors name the file and the line", "[data][csv]") {
  TempDir dir;
  writeText(dir / "b.csv", "a,b,c\n1,2,3\n4,5\n");
  CHECK_THROWS_WITH(readCsv(dir / "b.csv"), dir / "b.csv" + ":3: expected 3 columns, found 2");
  writeText(dir / "c.csv", "a,b,c\n1,2,3\n4,5,6\n7,x8,9\n");
  CHECK_THROWS_WITH(readCsv(dir / "c.csv"), dir / "c.csv" + ":4: column `b`: expected a number, found `x8`");
  writeText(dir / "d.csv", "a,,c\n");
  CHECK_THROWS_WITH(readCsv(dir / "d.csv"), dir / "d.csv" + ":1: column 2 of the header has no name");
  writeText(dir / "e.csv", "a,b,a\n");
  CHECK_THROWS_WITH(readCsv(dir / "e.csv"), dir / "e.csv" + ":1: column name `a` appears twice in the header");
  writeText(dir / "f.csv", "\n\n");
  CHECK_THROWS_WITH(readCsv(dir / "f.csv"), dir / "f.csv" + ": empty file, expected a header row naming the columns");
  writeText(dir / "g.csv", "a,b\n1,\"2\n");
  CHECK_THROWS_WITH(readCsv(dir / "g.csv"), dir / "g.csv" + ":2: unterminated quoted cell");
}

TEST_CASE("sourceFromPath: csv, idx pair, directory", "[data]") {
  TempDir dir;
  SourceSpec s = sourceFromPath("data/train.csv");
  CHECK(s.kind == "csv");
  CHECK(s.args == std::vector<std::string>{"data/train.csv"});
  s = sourceFromPath("a-images.gz,a-labels.gz");
  CHECK(s.kind == "idx");
  CHECK(s.args == std::vector<std::string>{"a-images.gz", "a-labels.gz"});
  s = sourceFromPath(dir.path.string(), "test");
  CHECK(s.kind == "fashion_mnist");
  CHECK(s.args == std::vector<std::string>{"test", dir.path.string()});
  CHECK_THROWS_WITH(sourceFromPath(dir / "missing.bin"), Contains("no such file or directory"));

  // A directory of Fashion-MNIST-style files: t10k-* for the test split.
  writeBytes(dir / "t10k-images-idx3-ubyte", idxU8({3, 2, 2}, kPixels));
  writeBytes(dir / "t10k-labels-idx1-ubyte.gz", gzipBytes(idxU8({3}, kLabels)));
  Table t = loadSource(s);
  CHECK(t.rows == 3);
  CHECK(field(t, "label").data == HugeFloats{7, 0, 9});
  CHECK_THROWS_WITH(loadSource(sourceFromPath(dir.path.string(), "train")), Contains("no train-images-idx3-ubyte(.gz) file"));
}

TEST_CASE("fashion_mnist: 60000/10000 samples, 6000/1000 per class, pixels in [0,1]", "[data][fashion]") {
  if (!std::filesystem::exists(fashionMnistDir() + "/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipped");
    return;
  }
  for (auto [split, rows] : {std::pair{"train", 60000}, std::pair{"test", 10000}}) {
    Table t = fashionMnist(split);
    REQUIRE(t.rows == rows);
    const Field& px = field(t, "pixels");
    REQUIRE(px.width == 784);
    float lo = 1e9f, hi = -1e9f;
    for (float v : px.data) lo = std::min(lo, v), hi = std::max(hi, v);
    CHECK(lo == 0.0f);
    CHECK(hi == 1.0f);
    std::vector<int> histogram(10);
    int bad = 0;
    for (float y : field(t, "label").data) {
      if (y >= 0 && y <= 9 && y == std::floor(y)) histogram[int(y)]++;
      else ++bad;
    }
    CHECK(bad == 0);
    for (int c = 0; c < 10; ++c) CHECK(histogram[c] == rows / 10);
  }
  CHECK_THROWS_WITH(fashionMnist("valid"), "fashion_mnist(\"valid\"): the split must be \"train\" or \"test\"");
}

TEST_CASE("synthetic_mmoe: deterministic, split-dependent, correlation knob works", "[data][synthetic]") {
  Table a = syntheticMmoe(0.9, 4000, 20, 7, "train"), b = syntheticMmoe(0.9, 4000, 20, 7, "train");
  Table c = syntheticMmoe(0.9, 4000, 20, 7, "test");
  REQUIRE(a.rows == 4000);
  REQUIRE(field(a, "x").width == 20);
  CHECK(field(a, "y1").data == field(b, "y1").data);
  CHECK(field(a, "x").data != field(c, "x").data);
  auto corr = [](const Table& t) {
    const auto &y1 = t.find("y1")->data, &y2 = t.find("y2")->data;
    double m1 = 0, m2 = 0;
    for (size_t i = 0; i < y1.size(); ++i) m1 += y1[i], m2 += y2[i];
    m1 /= y1.size(), m2 /= y1.size();
    double s12 = 0, s11 = 0, s22 = 0;
    for (size_t i = 0; i < y1.size(); ++i)
      s12 += (y1[i] - m1) * (y2[i] - m2), s11 += (y1[i] - m1) * (y1[i] - m1), s22 += (y2[i] - m2) * (y2[i] - m2);
    return s12 / std::sqrt(s11 * s22);
  };
  double high = corr(a), low = corr(syntheticMmoe(0.0, 4000, 20, 7, "train"));
  CHECK(high > 0.6);
  CHECK(std::fabs(low) < 0.3);
}

TEST_CASE("multi_fashion: overlaid pairs, labels from both items, pixels in [0,1]", "[data][fashion]") {
  if (!std::filesystem::exists(fashionMnistDir() + "/t10k-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipped");
    return;
  }
  Table src = fashionMnist("test");
  Table t = multiFashion("test");
  REQUIRE(t.rows == 10000);
  const Field& px = field(t, "pixels");
  REQUIRE(px.width == 784);
  float lo = 1e9f, hi = -1e9f;
  for (float v : px.data) lo = std::min(lo, v), hi = std::max(hi, v);
  CHECK(lo >= 0.0f);
  CHECK(hi <= 1.0f);
  CHECK(hi > 0.9f);
  // The left label is item i's; the right labels are a permutation of the source labels.
  CHECK(field(t, "left").data == field(src, "label").data);
  std::vector<int> a(10), b(10);
  for (float y : field(t, "right").data) b[int(y)]++;
  for (float y : field(src, "label").data) a[int(y)]++;
  CHECK(a == b);
  CHECK(field(t, "right").data != field(src, "label").data);
  CHECK(multiFashion("test").find("pixels")->data == px.data);  // deterministic
}

namespace {

// An item of 28x28 on a zero 36x36 canvas at (off, off), resized to 28x28 with bilinear weights
// (align_corners=False), written out independently of Synthetic.cpp.
std::vector<double> itemAlone(const float* item, int off) {
  std::vector<double> canvas(36 * 36, 0.0), out(784);
  for (int y = 0; y < 28; ++y)
    for (int x = 0; x < 28; ++x) canvas[(y + off) * 36 + x + off] = item[y * 28 + x];
  auto coord = [](int o, int& i0, int& i1, double& f) {
    double s = std::max(0.0, (o + 0.5) * 36.0 / 28.0 - 0.5);
    i0 = std::min(int(std::floor(s)), 35), i1 = std::min(i0 + 1, 35), f = s - i0;
  };
  for (int oy = 0; oy < 28; ++oy)
    for (int ox = 0; ox < 28; ++ox) {
      int y0, y1, x0, x1;
      double fy, fx;
      coord(oy, y0, y1, fy);
      coord(ox, x0, x1, fx);
      out[oy * 28 + ox] = (1 - fy) * (1 - fx) * canvas[y0 * 36 + x0] + (1 - fy) * fx * canvas[y0 * 36 + x1] +
                          fy * (1 - fx) * canvas[y1 * 36 + x0] + fy * fx * canvas[y1 * 36 + x1];
    }
  return out;
}

}  // namespace

TEST_CASE("multi_fashion_dense: multi_fashion plus segment, left_pixels, right_pixels", "[data][fashion]") {
  if (!std::filesystem::exists(fashionMnistDir() + "/t10k-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipped");
    return;
  }
  Table src = fashionMnist("test");
  Table plain = multiFashion("test");
  Table t = multiFashionDense("test");
  REQUIRE(t.rows == plain.rows);
  for (const char* name : {"pixels", "left", "right"}) CHECK(field(t, name).data == field(plain, name).data);
  const Field &seg = field(t, "segment"), &lp = field(t, "left_pixels"), &rp = field(t, "right_pixels");
  REQUIRE(seg.width == 784);
  REQUIRE(lp.width == 784);
  REQUIRE(rp.width == 784);
  const Field &srcPx = field(src, "pixels"), &srcLabel = field(src, "label");
  for (int64_t r : {int64_t(0), int64_t(1), int64_t(2), int64_t(4321), t.rows - 1}) {
    INFO("sample " << r);
    // The top-left item is source item r.
    std::vector<double> left = itemAlone(&srcPx.data[size_t(r) * 784], 0);
    // The bottom-right item: the source item with the right label whose overlay gives `pixels`.
    int64_t match = -1;
    for (int64_t j = 0; j < src.rows && match < 0; ++j) {
      if (srcLabel.data[j] != field(t, "right").data[r]) continue;
      std::vector<double> right = itemAlone(&srcPx.data[size_t(j) * 784], 8);
      bool same = true;
      for (int p = 0; p < 784 && same; ++p) same = std::fabs(right[p] - rp.data[size_t(r) * 784 + p]) < 1e-5;
      if (same) match = j;
    }
    REQUIRE(match >= 0);
    std::vector<double> right = itemAlone(&srcPx.data[size_t(match) * 784], 8);
    int counts[3] = {0, 0, 0};
    for (int p = 0; p < 784; ++p) {
      size_t i = size_t(r) * 784 + p;
      CHECK(std::fabs(lp.data[i] - left[p]) < 1e-5);
      // The overlay's resize is at least each item's alone (bilinear weights are non-negative).
      CHECK(field(t, "pixels").data[i] >= std::max(left[p], right[p]) - 1e-5);
      int want = left[p] < 0.1 && right[p] < 0.1 ? 0 : left[p] >= right[p] ? 1 : 2;
      if (std::fabs(left[p] - 0.1) > 1e-5 && std::fabs(right[p] - 0.1) > 1e-5 && std::fabs(left[p] - right[p]) > 1e-5)
        CHECK(int(seg.data[i]) == want);
      counts[int(seg.data[i])]++;
    }
    CHECK(counts[0] > 0);  // background, both items and (with these offsets) an overlap
    CHECK(counts[1] > 0);
    CHECK(counts[2] > 0);
    // The bottom-right item never reaches the top-left 6x6 corner; the top-left item never the
    // bottom-right one.
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 6; ++x) {
        CHECK(rp.data[size_t(r) * 784 + y * 28 + x] == 0.0f);
        CHECK(lp.data[size_t(r) * 784 + (27 - y) * 28 + 27 - x] == 0.0f);
      }
  }
}
