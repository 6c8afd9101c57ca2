// Line input for the REPL: libedit (BSD-licensed; its readline-compatible interface) on a terminal,
// with history saved across sessions and tab completion; plain std::getline otherwise.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mtlc::driver {

class ReplLineEditor {
 public:
  // Completer(line before the cursor's word, the word) -> candidate words.
  using Completer = std::function<std::vector<std::string>(const std::string &, const std::string &)>;

  // `interactive`: use libedit (prompts, editing); `historyPath` "" = no history file.
  ReplLineEditor(bool interactive, std::string historyPath, Completer completer);
  ~ReplLineEditor();  // writes the history file
  ReplLineEditor(const ReplLineEditor &) = delete;
  ReplLineEditor &operator=(const ReplLineEditor &) = delete;

  // One line without its terminator; nullopt at end of input.
  std::optional<std::string> readLine(const std::string &prompt);
  void addHistory(const std::string &entry);

 private:
  bool interactive_;
  std::string historyPath_;
};

}  // namespace mtlc::driver
