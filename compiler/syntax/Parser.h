// Text -> AST: runs the ANTLR-generated lexer and parser (grammar/MTL.g4) and converts the parse
// tree into ast::Program. Syntax errors become located diagnostics with readable messages
// ("expected ')' after the arguments of 'dense', found 'kernel'"); ANTLR's console output is off.
//
// After a syntax error the parser abandons the declaration it is in and resumes at the next
// declaration keyword (outside braces, or first on its line), so independent syntax errors in
// different declarations are all reported, up to 20; within one declaration only the first is
// (ANTLR's token-level recovery would mostly produce follow-on noise). Lexical errors (bad
// characters, unterminated strings) are all reported, up to a few, before parsing. It never throws, crashes or hangs on any input: empty files, binary data, invalid
// UTF-8 (shown as U+FFFD), deeply repeated constructs.
#pragma once

#include "syntax/AST.h"
#include "syntax/Diagnostics.h"

#include <optional>
#include <string>

namespace mtlc {

// `file` is the name used in messages (usually the same as diags.file()). Returns nullopt when any
// error was reported (diags holds them); otherwise the whole program.
std::optional<ast::Program> parseProgram(const std::string &file, const std::string &text,
                                         Diagnostics &diags);

// `text` with every byte that is not part of a valid UTF-8 sequence replaced by U+FFFD (what the
// parser sees; the columns of diagnostics count code points of this).
std::string sanitizeUtf8(const std::string &text);

}  // namespace mtlc
