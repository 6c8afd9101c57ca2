// The embed runtime as this mtlc was built with it: the bytes of libmtlc_embed.a and of
// mtlc_embed.h, compiled into the mtlc binary (a source generated at build time by
// EmbedFiles.cmake, linked into the driver). `mtlc build -o DIR` writes them into DIR.
//
// Why inside the binary rather than looked up next to it (../lib, the build tree): the object a
// build writes and the runtime that parses its bundle description must come from the same mtlc,
// and a binary that carries its runtime stays right wherever it is run from: the build tree, an
// installed prefix, a DESTDIR staging copy, a relocated or copied binary. A lookup by path can
// find nothing there, or a stale library of another version.
#pragma once

#include <cstddef>

namespace mtlc::aot {

struct EmbeddedFile {
  const unsigned char *data;
  size_t size;
};

EmbeddedFile embedRuntimeArchive();  // libmtlc_embed.a
EmbeddedFile embedRuntimeHeader();   // mtlc_embed.h

}  // namespace mtlc::aot
