// safetensors I/O and checkpoints: roundtrip, the exact byte layout, and every validation error.
#include "TestUtil.h"

#include "runtime/io/Checkpoint.h"
#include "runtime/io/File.h"
#include "spec/Error.h"
#include "runtime/io/SafeTensors.h"

#include <nlohmann/json.hpp>

#include <cstring>

using namespace mtlc::rt;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;

namespace {

// A file with the given JSON header (as text) and data bytes (floats).
void writeRaw(const std::string& path, const std::string& header, const std::vector<float>& data,
              int64_t lengthOverride = -1) {
  std::vector<uint8_t> b(8);
  uint64_t n = lengthOverride >= 0 ? uint64_t(lengthOverride) : header.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), header.begin(), header.end());
  const uint8_t* p = reinterpret_cast<const uint8_t*>(data.data());
  b.insert(b.end(), p, p + data.size() * 4);
  writeBytes(path, b);
}

ParamSpec param(std::string name, std::vector<int64_t> shape, int64_t offset, int64_t size) {
  ParamSpec p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.offset = offset;
  p.size = size;
  return p;
}

ModelSpec tinySpec() {
  ModelSpec s;
  s.name = "tiny";
  s.params = {param("head.0.weight", {2, 3}, 0, 6), param("head.0.bias", {2}, 6, 2)};
  s.paramCount = 8;
  return s;
}

}  // namespace

TEST_CASE("safetensors: roundtrip keeps order, shapes, values and metadata", "[safetensors]") {
  TempDir dir;
  std::vector<float> w{1, 2, 3, 4, 5, 6}, b{-0.5f}, s{42};
  writeSafeTensors(dir / "a.safetensors", {{"z.weight", {2, 3}, w.data()}, {"a.bias", {1}, b.data()}, {"scalar", {}, s.data()}},
                   {{"format", "mtlc"}});
  TensorFile f = readSafeTensors(dir / "a.safetensors");
  REQUIRE(f.tensors.size() == 3);
  CHECK(f.tensors[0].name == "z.weight");  // header order, not alphabetical
  CHECK(f.tensors[1].name == "a.bias");
  CHECK(f.tensors[0].shape == std::vector<int64_t>{2, 3});
  CHECK(f.tensors[0].data == w);
  CHECK(f.tensors[1].data == b);
  CHECK(f.tensors[2].shape.empty());
  CHECK(f.tensors[2].data == s);
  CHECK(f.metadata.at("format") == "mtlc");

  // The layout: u64 LE header length, JSON padded with spaces to 8-byte alignment, then data.
  std::ifstream in(dir / "a.safetensors", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((8 + n) % 8 == 0);
  CHECK(bytes.size() == 8 + n + 4 * 8);
  auto header = nlohmann::json::parse(std::string(bytes.data() + 8, n));
  CHECK(header["z.weight"]["dtype"] == "F32");
  CHECK(header["z.weight"]["data_offsets"] == nlohmann::json::array({0, 24}));
  CHECK(header["a.bias"]["data_offsets"] == nlohmann::json::array({24, 28}));
  CHECK(header["__metadata__"]["format"] == "mtlc");
  float first;
  std::memcpy(&first, bytes.data() + 8 + n, 4);
  CHECK(first == 1.0f);

  // Overwriting is atomic: no temporary file is left behind.
  writeSafeTensors(dir / "a.safetensors", {{"x", {1}, b.data()}});
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path)) files += 1, (void)e;
  CHECK(files == 1);
  CHECK(readSafeTensors(dir / "a.safetensors").tensors.size() == 1);
}

TEST_CASE("safetensors: I64 tensors (num_batches_tracked) are written and read as integer floats", "[safetensors]") {
  TempDir dir;
  const std::string p = dir / "i64.safetensors";
  const float count = 12345, w[2] = {0.5f, -2};
  writeSafeTensors(p, {{"bn.num_batches_tracked", {}, &count, true}, {"bn.weight", {2}, w}});
  const std::vector<uint8_t> bytes = readFileBytes(p);
  const std::string text(bytes.begin(), bytes.end());
  CHECK_THAT(text, Contains(R"("bn.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]})"));
  CHECK_THAT(text, Contains(R"("bn.weight":{"dtype":"F32","shape":[2],"data_offsets":[8,16]})"));
  int64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 16, 8);
  CHECK(stored == 12345);
  TensorFile f = readSafeTensors(p);
  REQUIRE(f.find("bn.num_batches_tracked"));
  CHECK(f.find("bn.num_batches_tracked")->shape.empty());
  CHECK(f.find("bn.num_batches_tracked")->data == std::vector<float>{12345});
  CHECK(f.find("bn.weight")->data == std::vector<float>{0.5f, -2});
}

TEST_CASE("safetensors: corrupt files are errors naming file and tensor", "[safetensors]") {
  TempDir dir;
  const std::string p = dir / "bad.safetensors";
  const std::string good = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

  writeBytes(p, {1, 2, 3});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": not a safetensors file: 3 bytes, too short for the header length");
  writeRaw(p, good, {1, 2}, 1000);
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": not a safetensors file: header length 1000 does not fit the file size 70");
  writeRaw(p, R"({"w":{"dtype":"F32",)", {1, 2});
  CHECK_THROWS_WITH(readSafeTensors(p), Contains(p + ": the safetensors header is not valid JSON"));
  writeRaw(p, R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", {1});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": tensor `w` has dtype F16; mtlc reads F32 and I64 tensors only");
  writeRaw(p, R"({"n":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}})", {1, 2});  // needs 16 bytes
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": tensor `n`: shape [2] needs 16 bytes, data_offsets [0, 8] give 8");
  writeRaw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", {1, 2});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": tensor `w`: shape [3] needs 12 bytes, data_offsets [0, 8] give 8");
  writeRaw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", {1, 2});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": tensor `w`: data_offsets [4, 12] lie outside the 8-byte data section");
  writeRaw(p, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", {1, 2});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": tensor `w` starts at byte 4 of the data section, expected 0 (there is a gap)");
  writeRaw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", {1, 2});
  CHECK_THROWS_WITH(readSafeTensors(p), Contains("it overlaps the previous tensor"));
  writeRaw(p, good, {1, 2, 3});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": the data section has 12 bytes, the tensors cover 8");
  writeRaw(p, R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", {1, 2});
  CHECK_THROWS_WITH(readSafeTensors(p), Contains("tensor `w`: shape [-2] has a non-integer or negative dimension"));
  writeRaw(p, R"([1, 2])", {});
  CHECK_THROWS_WITH(readSafeTensors(p), p + ": the safetensors header is not a JSON object");
  writeRaw(p, good, {1, 2});
  CHECK(readSafeTensors(p).tensors[0].data == std::vector<float>{1, 2});
}

TEST_CASE("checkpoints: params and optimizer state roundtrip; mismatches are refused", "[checkpoint]") {
  TempDir dir;
  ModelSpec spec = tinySpec();
  std::vector<float> params{1, 2, 3, 4, 5, 6, 7, 8};
  OptimizerSpec os;
  os.kind = OptimizerKind::Adam;
  Optimizer opt(os, 8);
  std::vector<float> grads(8, 0.5f), scratch = params;
  opt.step(scratch.data(), grads.data());
  opt.step(scratch.data(), grads.data());
  saveCheckpoint(dir / "c.safetensors", spec, params.data(), &opt);

  TensorFile f = readSafeTensors(dir / "c.safetensors");
  CHECK(f.tensors[0].name == "head.0.weight");
  CHECK(f.find("optim.m") != nullptr);
  CHECK(f.find("optim.v") != nullptr);
  CHECK(f.find("optim.step")->data == std::vector<float>{2});
  CHECK(f.metadata.at("optimizer") == "adam");

  std::vector<float> loaded(8, 0);
  loadParams(dir / "c.safetensors", spec, loaded.data());
  CHECK(loaded == params);
  Optimizer restored(os, 8);
  REQUIRE(loadOptimizerState(dir / "c.safetensors", spec, restored));
  CHECK(restored.steps() == 2);
  std::vector<float> a = scratch, b = scratch;
  opt.step(a.data(), grads.data());
  restored.step(b.data(), grads.data());
  CHECK(a == b);
  OptimizerSpec sgd;
  sgd.kind = OptimizerKind::Sgd;
  sgd.momentum = 0.9;
  Optimizer other(sgd, 8);
  CHECK_FALSE(loadOptimizerState(dir / "c.safetensors", spec, other));  // adam state does not fit sgd

  // Shape and presence are checked; nothing is written on failure.
  ModelSpec wide = spec;
  wide.params[0].shape = {3, 2};
  std::vector<float> untouched(8, -1);
  CHECK_THROWS_WITH(loadParams(dir / "c.safetensors", wide, untouched.data()),
                    dir / "c.safetensors" + ": parameter `head.0.weight` has shape [2, 3] in the checkpoint, the model expects [3, 2]");
  CHECK(untouched == std::vector<float>(8, -1));
  ModelSpec more = spec;
  more.params.push_back(param("head.2.bias", {1}, 8, 1));
  more.paramCount = 9;
  std::vector<float> nine(9);
  CHECK_THROWS_WITH(loadParams(dir / "c.safetensors", more, nine.data()),
                    dir / "c.safetensors" + ": parameter `head.2.bias` [1] is missing from the checkpoint");
  ModelSpec fewer = spec;
  fewer.params.pop_back();
  CHECK_THROWS_WITH(loadParams(dir / "c.safetensors", fewer, nine.data()),
                    dir / "c.safetensors" + ": tensor `head.0.bias` [2] is not a parameter of model `tiny`");
  // Extra mtl./optim. tensors are fine.
  std::vector<float> s{0.25f};
  writeSafeTensors(dir / "d.safetensors", {{"head.0.weight", {2, 3}, params.data()}, {"head.0.bias", {2}, params.data() + 6},
                                           {"mtl.log_var", {1}, s.data()}});
  CHECK_NOTHROW(loadParams(dir / "d.safetensors", spec, loaded.data()));
  CHECK_FALSE(loadOptimizerState(dir / "d.safetensors", spec, restored));
  writeText(dir / "junk.safetensors", "not a checkpoint");
  CHECK_THROWS_WITH(loadParams(dir / "junk.safetensors", spec, loaded.data()), Contains(dir / "junk.safetensors"));
}
