#include "ReplLineEditor.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include <editline/readline.h>

namespace mtlc::driver {

namespace {

volatile std::sig_atomic_t gInterrupted = 0;
extern "C" void onInterrupt(int) { gInterrupted = 1; }

// libedit's completion hooks are plain C functions: the active completer lives here.
ReplLineEditor::Completer *gCompleter = nullptr;
std::vector<std::string> gMatches;

char *generate(const char *text, int state) {
  if (state == 0) {
    gMatches.clear();
    if (gCompleter) {
      std::string line(rl_line_buffer ? rl_line_buffer : "");
      size_t cut = std::min(line.size(), static_cast<size_t>(rl_point > 0 ? rl_point : 0));
      gMatches = (*gCompleter)(line.substr(0, cut), text);
    }
  }
  if (static_cast<size_t>(state) >= gMatches.size()) return nullptr;
  return strdup(gMatches[static_cast<size_t>(state)].c_str());
}

char **complete(const char *text, int, int) {
  rl_attempted_completion_over = 1;  // no file-name completion as a fallback
  return rl_completion_matches(text, generate);
}

}  // namespace

ReplLineEditor::ReplLineEditor(bool interactive, std::string historyPath, Completer completer)
    : interactive_(interactive), historyPath_(std::move(historyPath)) {
  if (!interactive_) return;
  // Not SA_RESTART: the terminal read is interrupted, and libedit gives the line up.
  struct sigaction sa {};
  sa.sa_handler = onInterrupt;
  sigemptyset(&sa.sa_mask);
  previousInt_ = new struct sigaction;
  sigaction(SIGINT, &sa, previousInt_);
  gCompleter = new Completer(std::move(completer));
  rl_readline_name = const_cast<char *>("mtlc");
  rl_attempted_completion_function = complete;
  // ':' is part of a command's name, not a word break.
  rl_basic_word_break_characters = const_cast<char *>(" \t\n\"\\'`@$><=;|&{(,");
  using_history();
  stifle_history(1000);
  if (!historyPath_.empty()) read_history(historyPath_.c_str());
}

ReplLineEditor::~ReplLineEditor() {
  if (!interactive_) return;
  delete gCompleter;
  gCompleter = nullptr;
  sigaction(SIGINT, previousInt_, nullptr);
  delete previousInt_;
}

bool takeInterrupt() {
  bool was = gInterrupted != 0;
  gInterrupted = 0;
  return was;
}

ReplLineEditor::Status ReplLineEditor::readLine(const std::string &prompt, std::string &line) {
  line.clear();
  if (!interactive_) {
    if (!std::getline(std::cin, line)) return Status::End;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return Status::Line;
  }
  std::cout.flush();
  takeInterrupt();  // one that came while a command ran is not this line's
  char *raw = readline(prompt.c_str());
  if (!raw) {
    if (!takeInterrupt()) return Status::End;
    std::cout << "^C\n" << std::flush;  // libedit leaves the cursor after the abandoned text
    return Status::Interrupted;
  }
  line = raw;
  std::free(raw);
  return Status::Line;
}

void ReplLineEditor::addHistory(const std::string &entry) {
  if (!interactive_) return;
  // One history entry per line of a multi-line declaration (libedit recalls lines).
  size_t start = 0;
  int added = 0;
  while (start <= entry.size()) {
    size_t nl = entry.find('\n', start);
    std::string line = entry.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (!line.empty()) {
      add_history(line.c_str());
      ++added;
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  // Saved at once (the whole list: libedit's append_history repeats entries): a session that
  // is killed keeps its history.
  if (!historyPath_.empty() && added > 0) write_history(historyPath_.c_str());
}

}  // namespace mtlc::driver
