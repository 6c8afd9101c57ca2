// A CSV file's column names without its data, for the compiler's checks of data bindings: sema
// reports `price = prise` at the binding's line before any training starts. Kept apart from
// Dataset.h so that the front end includes nothing of the runtime's data handling.
#pragma once

#include <string>
#include <vector>

namespace mtlc::rt {

// The names in the first non-blank line of the CSV file at `path` (gzipped or not), read as
// readCsv (Dataset.h) reads them: the rest of the file is not read. Throws Error with a message
// that starts with `shownAs` (the path as the user wrote it) when the file cannot be opened or
// its header is malformed: an empty file, a column without a name, a name given twice.
std::vector<std::string> readCsvHeader(const std::string &path, const std::string &shownAs);

}  // namespace mtlc::rt
