// What a data source is, decided from its path and its header alone, without loading it: the
// compiler's checks of data bindings (`price = prise` is reported at the binding's line before any
// training starts) and the runtime's loaders share these, so the front end links no loader.
#pragma once

#include "spec/ModelSpec.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mtlc::rt {

// The source a `--data` path names: IMAGES,LABELS is an IDX pair, a directory Fashion-MNIST-style
// files, a .csv or .csv.gz file a CSV table, a .npz or .npy file NumPy arrays. Throws Error for anything else.
SourceSpec sourceFromPath(const std::string& path, const std::string& split = "train");

// The names in the first non-blank line of the CSV file at `path` (gzipped or not), read as
// readCsv (runtime/data/Dataset.h) reads them: the rest of the file is not read. Throws Error with
// a message that starts with `shownAs` (the path as the user wrote it) when the file cannot be
// opened or its header is malformed: an empty file, a column without a name, a name given twice.
std::vector<std::string> readCsvHeader(const std::string& path, const std::string& shownAs);

// The CSV line syntax, one definition for the header probe and the loader.
namespace csv {
std::string_view trim(std::string_view s);
// One line's cells; quotes as the loader's comment says. Errors name path:lineNo.
std::vector<std::string> splitCells(std::string_view line, const std::string& path, int64_t lineNo);
// The header's cells as column names: each non-empty, none twice.
void checkHeader(const std::vector<std::string>& cells, const std::string& path, int64_t lineNo);
std::string_view withoutBom(std::string_view text);
}  // namespace csv

}  // namespace mtlc::rt
