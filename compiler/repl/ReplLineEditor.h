// Line input for the REPL: libedit (BSD-licensed; its readline-compatible interface) on a terminal,
// with history saved across sessions and tab completion; plain std::getline otherwise.
//
// Ctrl-C on a terminal: while the editor lives, SIGINT only raises a flag (takeInterrupt). At the
// prompt, libedit then gives up the line: readLine reports Interrupted and the REPL prompts anew;
// a running :train checks the flag between steps (ReplSession). History: the file is written as
// each entry is added, so a session that ends abruptly keeps it.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <signal.h>

namespace mtlc::driver {

class ReplLineEditor {
 public:
  // Completer(line before the cursor's word, the word) -> candidate words.
  using Completer = std::function<std::vector<std::string>(const std::string &, const std::string &)>;

  // `interactive`: use libedit (prompts, editing); `historyPath` "" = no history file.
  ReplLineEditor(bool interactive, std::string historyPath, Completer completer);
  ~ReplLineEditor();
  ReplLineEditor(const ReplLineEditor &) = delete;
  ReplLineEditor &operator=(const ReplLineEditor &) = delete;

  enum class Status { Line, Interrupted, End };
  // One line without its terminator in `line`; Interrupted: Ctrl-C cleared the line (a terminal
  // only); End: end of input.
  Status readLine(const std::string &prompt, std::string &line);
  // Adds the entry's lines to the history and writes the history file.
  void addHistory(const std::string &entry);

 private:
  bool interactive_;
  std::string historyPath_;
  struct sigaction *previousInt_ = nullptr;  // SIGINT's handler before the editor's
};

// Whether SIGINT arrived (on a terminal) since the last call; clears the flag.
bool takeInterrupt();

}  // namespace mtlc::driver
