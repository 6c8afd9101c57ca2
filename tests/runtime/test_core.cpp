// The runtime's core (runtime/core/), which the trainer and the embedded runtime share: the JSON
// reader, the safetensors header as nlohmann::json wrote it (checkpoints stay byte-identical),
// trainable spans and initialisation.
#include "TestUtil.h"

#include "runtime/core/Init.h"
#include "runtime/core/Json.h"
#include "runtime/core/SafeTensors.h"
#include "runtime/core/Spans.h"
#include "runtime/io/SafeTensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

using namespace mtlc;
using namespace mtlc::rt::test;
using Catch::Matchers::Contains;

namespace {

bool validJson(const std::string& text) {
  core::JsonReader r(text.data(), text.size());
  return r.skip() && r.atEnd();
}

std::string decoded(const std::string& literal) {
  core::JsonReader r(literal.data(), literal.size());
  core::Text out;
  REQUIRE(r.string(out));
  return std::string(out.c_str(), out.len);
}

std::vector<uint8_t> fileBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("core json: what nlohmann::json accepts, and nothing else", "[core][json]") {
  for (const char* ok : {R"({})", R"([])", R"( {"a": [1, -2.5e+3, 0, true, false, null, "x"]} )",
                         R"({"a":{"b":{"c":[[]]}}})", R"("\u00e9\ud83d\ude00")", "0", "-0.0", "1E5"})
    CHECK(validJson(ok));
  for (const char* bad : {"", "{", R"({"a" 1})", R"({"a":1,})", "[1,]", "01", "1.", ".5", "+1", "1e", "tru",
                          "\"a\nb\"", R"("\x")", R"("\ud800")", R"("\udc00")", "{} {}", R"({'a':1})", "[1 2]"})
    CHECK_FALSE(validJson(bad));
  // Every one nlohmann agrees with (the trainer's checkpoints were parsed with it).
  for (const char* text : {R"({"a": [1, -2.5e+3]})", "01", "1.", "[1,]", R"("\ud800")", "-0.0"})
    CHECK(validJson(text) == nlohmann::json::accept(text));
}

TEST_CASE("core json: strings decode escapes to UTF-8; integers are exact", "[core][json]") {
  CHECK(decoded(R"("a\"b\\c\/d\n\t\r\b\f")") == "a\"b\\c/d\n\t\r\b\f");
  CHECK(decoded(R"("\u00e9")") == "\xc3\xa9");
  CHECK(decoded(R"("\ud83d\ude00")") == "\xf0\x9f\x98\x80");
  for (const auto& [text, value] : std::vector<std::pair<std::string, uint64_t>>{
           {"0", 0}, {"17", 17}, {"18446744073709551615", UINT64_MAX}}) {
    core::JsonReader r(text.data(), text.size());
    uint64_t v = 1;
    CHECK(r.unsignedInteger(v));
    CHECK(v == value);
  }
  for (std::string text : {"-1", "2.0", "1e3", "18446744073709551616", "007"}) {
    core::JsonReader r(text.data(), text.size());
    uint64_t v;
    CHECK_FALSE(r.unsignedInteger(v));
  }
}

TEST_CASE("core safetensors: the header is nlohmann::ordered_json's dump, byte for byte", "[core][safetensors]") {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  const std::vector<float> a{1, 2, 3, 4, 5, 6}, b{7};
  const std::map<std::string, std::string> meta{
      {"zeta", "last"}, {"format", "mtlc"}, {"quote\"back\\slash", "tab\tnew\nline\x01\x1f caf\xc3\xa9 \x7f"}};
  rt::writeSafeTensors(path, {{"enc.0.weight", {2, 3}, a.data()}, {"odd \"name\"", {}, b.data()}}, meta);
  // What SafeTensors.cpp wrote before the core: ordered_json with the metadata first.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [k, v] : meta) m[k] = v;
  h["__metadata__"] = m;
  h["enc.0.weight"] = {{"dtype", "F32"}, {"shape", std::vector<int64_t>{2, 3}}, {"data_offsets", {0, 24}}};
  h["odd \"name\""] = {{"dtype", "F32"}, {"shape", std::vector<int64_t>{}}, {"data_offsets", {24, 28}}};
  std::string json = h.dump();
  while ((8 + json.size()) % 8) json += ' ';
  std::vector<uint8_t> expected(8);
  const uint64_t n = json.size();
  std::memcpy(expected.data(), &n, 8);
  expected.insert(expected.end(), json.begin(), json.end());
  for (const std::vector<float>* v : {&a, &b}) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(v->data());
    expected.insert(expected.end(), p, p + v->size() * 4);
  }
  CHECK(fileBytes(path) == expected);
  // And it reads back: names, shapes, data and metadata, escapes decoded.
  const rt::TensorFile f = rt::readSafeTensors(path);
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[1].name == "odd \"name\"");
  CHECK(f.tensors[1].shape.empty());
  CHECK(f.tensors[0].data == a);
  CHECK(f.metadata == meta);
}

TEST_CASE("core safetensors: repeated names and deep ranks are refused", "[core][safetensors]") {
  const std::string twice = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  std::vector<uint8_t> bytes(8);
  bytes[0] = uint8_t(twice.size());
  bytes.insert(bytes.end(), twice.begin(), twice.end());
  bytes.resize(bytes.size() + 8);
  core::TensorTable table;
  char message[256];
  core::Failure f{message, sizeof message};
  CHECK(core::parseSafeTensors(bytes.data(), bytes.size(), "x", table, f) == core::Status::Format);
  CHECK(std::string(message) == "x: tensor `w` appears twice in the header");

  const std::string deep = R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})";
  std::vector<uint8_t> deepBytes(8);
  deepBytes[0] = uint8_t(deep.size());
  deepBytes.insert(deepBytes.end(), deep.begin(), deep.end());
  deepBytes.resize(deepBytes.size() + 4);
  core::TensorTable deepTable;
  CHECK(core::parseSafeTensors(deepBytes.data(), deepBytes.size(), "x", deepTable, f) == core::Status::Format);
  CHECK_THAT(std::string(message), Contains("has more than 8 dimensions"));

  TempDir dir;
  const float v = 1;
  const int64_t shape[] = {1};
  const core::TensorView views[] = {{"a", shape, 1, &v}, {"a", shape, 1, &v}};
  CHECK(core::writeSafeTensors((dir / "t").c_str(), views, 2, nullptr, 0, f) == core::Status::Format);
  CHECK_THAT(std::string(message), Contains("tensor `a` would be written twice"));
}

TEST_CASE("core spans: unfrozen parameters, sorted and merged; all of the arena when none is frozen",
          "[core][spans]") {
  core::Span out[4];
  const core::ParamExtent none[] = {{4, 2, false}, {0, 4, false}};
  REQUIRE(core::trainableSpans(none, 2, 8, out) == 1);
  CHECK((out[0].begin == 0 && out[0].end == 8));
  const core::ParamExtent some[] = {{6, 2, false}, {0, 3, false}, {3, 3, true}, {3, 1, false}};
  REQUIRE(core::trainableSpans(some, 4, 8, out) == 2);
  CHECK((out[0].begin == 0 && out[0].end == 4));
  CHECK((out[1].begin == 6 && out[1].end == 8));
}

TEST_CASE("core spans: optimizer arrays in the table's order, whatever the arena's", "[core][spans]") {
  // The table: a [20], b [16], c [3]; the arena (as lowering lays out sibling weights) puts b
  // first, then c, then a. The table's order starts each on a 16-float boundary: a at 0, b at 32,
  // c at 48, in 64 floats.
  const core::ParamExtent moved[] = {{32, 20, false}, {0, 16, false}, {16, 3, false}};
  std::vector<float> arena(64, -1), table(64, -1), back(64, -1);
  for (int64_t i = 0; i < 20; ++i) arena[size_t(32 + i)] = float(100 + i);
  for (int64_t i = 0; i < 16; ++i) arena[size_t(i)] = float(200 + i);
  for (int64_t i = 0; i < 3; ++i) arena[size_t(16 + i)] = float(300 + i);
  REQUIRE(core::arenaToTableOrder(moved, 3, 64, arena.data(), table.data()));
  for (int64_t i = 0; i < 20; ++i) CHECK(table[size_t(i)] == float(100 + i));
  for (int64_t i = 20; i < 32; ++i) CHECK(table[size_t(i)] == 0.0f);  // padding
  for (int64_t i = 0; i < 16; ++i) CHECK(table[size_t(32 + i)] == float(200 + i));
  for (int64_t i = 0; i < 3; ++i) CHECK(table[size_t(48 + i)] == float(300 + i));
  REQUIRE(core::tableToArenaOrder(moved, 3, 64, table.data(), back.data()));
  for (const auto &p : moved)
    for (int64_t i = 0; i < p.size; ++i) CHECK(back[size_t(p.offset + i)] == arena[size_t(p.offset + i)]);
  // An arena already in the table's order is the file as it is (hand-built, unpadded tables too).
  const core::ParamExtent inOrder[] = {{0, 6, false}, {6, 2, false}};
  std::vector<float> a8 = {1, 2, 3, 4, 5, 6, 7, 8}, t8(8, 0);
  REQUIRE(core::arenaToTableOrder(inOrder, 2, 8, a8.data(), t8.data()));
  CHECK(t8 == a8);
  // A table that does not fit the arena is refused, nothing written.
  std::vector<float> small(40, -1);
  CHECK_FALSE(core::arenaToTableOrder(moved, 3, 40, arena.data(), small.data()));
  CHECK(small == std::vector<float>(40, -1));
}

TEST_CASE("core init: Uniform draws within its given bound, as UniformFanIn with that bound", "[core][init]") {
  rt::Rng a(3), b(3);
  float u[64], f[64];
  REQUIRE(core::initTensor(rt::Init::Uniform, u, 64, 7, 1, a, 0.05));
  REQUIRE(core::initTensor(rt::Init::UniformFanIn, f, 64, 400, 1, b));  // 1/sqrt(400) = 0.05
  float widest = 0;
  for (int i = 0; i < 64; ++i) {
    CHECK(u[i] == f[i]);
    widest = std::max(widest, std::abs(u[i]));
  }
  CHECK(widest <= 0.05f);
  CHECK(widest > 0.04f);
}

TEST_CASE("core init: a cross-stitch matrix must be square", "[core][init]") {
  rt::Rng rng(1);
  float w[6];
  CHECK_FALSE(core::initTensor(rt::Init::CrossStitch, w, 6, 1, 2, rng));
  REQUIRE(core::initTensor(rt::Init::CrossStitch, w, 4, 1, 2, rng));
  CHECK(std::vector<float>(w, w + 4) == std::vector<float>{0.9f, 0.1f, 0.1f, 0.9f});
}
