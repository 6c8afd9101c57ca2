// The diagnostics engine: clang-style rendering, carets, notes, colour, counts, suggestions.
#include "SyntaxTestUtil.h"

using mtlc::Diagnostics;
using mtlc::SourceRange;

namespace {
SourceRange range(int line, int col, int endLine, int endCol) {
  return {{line, col}, {endLine, endCol}};
}
}  // namespace

TEST_CASE("an error renders as file:line:col, the source line and a caret under the range") {
  Diagnostics d("m.mtl", "model m\nshared t = x -> dens(3)\n");
  d.error(range(2, 17, 2, 20), "unknown layer 'dens'; did you mean 'dense'?");
  d.note(range(1, 1, 1, 7), "the model is here");
  CHECK(d.errorCount() == 1);
  CHECK(d.hasErrors());
  CHECK(d.str() ==
        "m.mtl:2:17: error: unknown layer 'dens'; did you mean 'dense'?\n"
        "shared t = x -> dens(3)\n"
        "                ^~~~\n"
        "m.mtl:1:1: note: the model is here\n"
        "model m\n"
        "^~~~~~~\n");
}

TEST_CASE("carets follow tabs, stop at the end of the line for multi-line ranges, and may point past the end") {
  Diagnostics d("t.mtl", "\tab\tcd\nline two\r\nlast");
  d.error(range(1, 4, 1, 6), "tab");
  d.error(range(2, 6, 3, 2), "multi");
  d.warning(range(3, 5, 3, 5), "past the end");
  CHECK(d.errorCount() == 2);
  CHECK(d.warningCount() == 1);
  CHECK(d.str() ==
        "t.mtl:1:4: error: tab\n"
        "\tab\tcd\n"
        "\t  ^~~\n"
        "t.mtl:2:6: error: multi\n"
        "line two\n"
        "     ^~~\n"
        "t.mtl:3:5: warning: past the end\n"
        "last\n"
        "    ^\n");
}

TEST_CASE("an error without a location has no source line") {
  Diagnostics d("x.mtl", "");
  d.error("cannot read the file");
  CHECK(d.str() == "x.mtl: error: cannot read the file\n");
}

TEST_CASE("colour is only added when asked for") {
  Diagnostics d("c.mtl", "model m\n");
  d.error(range(1, 1, 1, 5), "boom");
  CHECK(d.str(false).find('\033') == std::string::npos);
  std::string coloured = d.str(true);
  CHECK(coloured.find("\033[1;31merror") != std::string::npos);
  CHECK(coloured.find("\033[1;32m^~~~~") != std::string::npos);
}

TEST_CASE("unprintable characters and invalid UTF-8 in a shown line keep the caret aligned") {
  Diagnostics d("u.mtl", "a\x01\xFF\xC3\xA9x\n");
  d.error(range(1, 5, 1, 5), "here");
  CHECK(d.str() ==
        "u.mtl:1:5: error: here\n"
        "a\xEF\xBF\xBD\xEF\xBF\xBD\xC3\xA9x\n"
        "    ^\n");
}

TEST_CASE("lineText and out-of-range lines") {
  Diagnostics d("l.mtl", "one\ntwo\r\n");
  CHECK(d.lineCount() == 3);
  CHECK(d.lineText(1) == "one");
  CHECK(d.lineText(2) == "two");
  CHECK(d.lineText(3) == "");
  CHECK(d.lineText(99) == "");
  d.error(range(99, 1, 99, 1), "beyond");
  CHECK(d.str() == "l.mtl:99:1: error: beyond\n");
}

TEST_CASE("did-you-mean suggestions are close, case-insensitive and never the name itself") {
  std::vector<std::string> layers = {"dense", "conv2d", "maxpool", "avgpool", "relu", "layernorm"};
  CHECK(mtlc::closestMatch("dens", layers) == "dense");
  CHECK(mtlc::closestMatch("desne", layers) == "dense");  // transposition
  CHECK(mtlc::closestMatch("Dense", layers) == "dense");
  CHECK(mtlc::closestMatch("conv", layers) == "conv2d");
  CHECK(mtlc::closestMatch("cv", layers) == "");          // too far for a 2-letter word
  CHECK(mtlc::closestMatch("maxpol", layers) == "maxpool");
  CHECK(mtlc::closestMatch("batchnorm", layers) == "");
  CHECK(mtlc::closestMatch("dense", layers) == "");
  CHECK(mtlc::didYouMean("rlu", layers) == "; did you mean 'relu'?");
  CHECK(mtlc::didYouMean("zzz", layers) == "");
}

TEST_CASE("sortByLocation orders errors by position and keeps notes with their error") {
  Diagnostics d("s.mtl", "a\nb\nc\n");
  d.error(range(1, 1, 1, 1), "before the sorted part");
  d.error(range(3, 1, 3, 1), "third");
  d.note(range(1, 1, 1, 1), "note of third");
  d.error(range(2, 1, 2, 1), "second");
  d.error("no location");
  d.sortByLocation(1);
  const auto &all = d.diagnostics();
  REQUIRE(all.size() == 5);
  CHECK(all[0].message == "before the sorted part");
  CHECK(all[1].message == "no location");
  CHECK(all[2].message == "second");
  CHECK(all[3].message == "third");
  CHECK(all[4].message == "note of third");
  CHECK(d.errorCount() == 4);
}

TEST_CASE("very long lines are cut to a window around the range") {
  std::string line(1000, 'a');
  line.replace(500, 4, "dens");
  Diagnostics d("w.mtl", line + "\n");
  d.error(range(1, 501, 1, 504), "here");
  std::string out = d.str();
  std::istringstream in(out);
  std::string header, shown, caret;
  std::getline(in, header);
  std::getline(in, shown);
  std::getline(in, caret);
  CHECK(header == "w.mtl:1:501: error: here");
  CHECK(shown.size() == 3 + 120 + 3);
  CHECK(shown.substr(0, 3) == "...");
  CHECK(shown.substr(shown.size() - 3) == "...");
  REQUIRE(caret.find('^') != std::string::npos);
  CHECK(shown.substr(caret.find('^'), 4) == "dens");
  CHECK(caret.substr(caret.find('^')) == "^~~~");
  // A range near the end of a long line shows the end of the line, without a trailing "...".
  Diagnostics e("w.mtl", line);
  e.error(range(1, 1001, 1, 1001), "at the end");
  std::string end = e.str();
  CHECK(end.find("a\n") != std::string::npos);
  CHECK(end.substr(end.size() - 2) == "^\n");
}
