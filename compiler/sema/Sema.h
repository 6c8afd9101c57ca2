// Semantic analysis: ast::Program -> the checked, typed sema::Model.
//
// Resolves names, checks every layer's arguments, infers per-sample shapes through every pipeline,
// checks losses / metrics / weights, the train block and the data block. Every mistake a user can
// make in a program is reported here as a located diagnostic (never an exception); analysis goes
// on after an error to report independent ones, but does not report errors that only follow from
// an earlier one (an unknown layer makes the rest of that pipeline's shapes unknown, not wrong).
#pragma once

#include "sema/Model.h"
#include "syntax/AST.h"
#include "syntax/Diagnostics.h"

#include <map>
#include <optional>
#include <string>

namespace mtlc::sema {

// Command-line replacements of data sources: "train" / "test" -> a path (`--data train=PATH`),
// as rt::sourceFromPath (spec/DataFiles.h) reads it.
using DataOverrides = std::map<std::string, std::string>;

// `file` is the path of the .mtl file as it can be opened (data paths in the program are resolved
// against its directory); it is stored in Model::file. A CSV source's header (or, with an
// override for its role, the override's) is read to check the columns the bindings name; the
// data is not read. Returns nullopt when any error was reported.
std::optional<Model> analyze(const ast::Program &program, const std::string &file,
                             Diagnostics &diags, const DataOverrides &dataOverrides = {});

// The names sema knows, for completion and tests: the rows of spec/Vocabulary.def (sources: the
// table of DataBinding.cpp).
const std::vector<std::string> &knownLayers();      // dense, conv2d, ..., embedding
const std::vector<std::string> &knownBlocks();      // mixture, ple, cgc, cross_stitch, mtan
const std::vector<std::string> &knownLosses();      // cross_entropy, bce, mse, l1
const std::vector<std::string> &knownMetrics();     // accuracy, auc, mse, mae
const std::vector<std::string> &knownOptimizers();  // sgd, adam
const std::vector<std::string> &knownSources();     // fashion_mnist, idx, csv, synthetic_mmoe, ...
const std::vector<std::string> &knownWeightings();  // fixed, uniform, uncertainty, dwa, ...
const std::vector<std::string> &knownSchedules();   // step, multistep, exponential, cosine

// Element count of a shape (1 for []); -1 on overflow.
int64_t elementCount(const Shape &s);

}  // namespace mtlc::sema
