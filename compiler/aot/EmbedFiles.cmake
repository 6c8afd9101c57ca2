# Writes a C++ source holding the bytes of the embed runtime (libmtlc_embed.a and mtlc_embed.h),
# so that `mtlc build -o DIR` can write them into DIR from the mtlc binary itself
# (compiler/aot/EmbedRuntime.h says why). Run by compiler/CMakeLists.txt:
#   cmake -DARCHIVE=... -DHEADER=... -DOUTPUT=... -P EmbedFiles.cmake
function(bytes_of path out)
  file(READ "${path}" hex HEX)
  # 32 bytes a line, so the generated file stays readable by editors and diff tools.
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "((0x..,){32})" "\\1\n" bytes "${bytes}")
  set(${out} "${bytes}" PARENT_SCOPE)
endfunction()

bytes_of("${ARCHIVE}" archive)
bytes_of("${HEADER}" header)
file(WRITE "${OUTPUT}"
  "// Generated from ${ARCHIVE} and ${HEADER} by compiler/aot/EmbedFiles.cmake: do not edit.\n"
  "#include \"aot/EmbedRuntime.h\"\n\nnamespace mtlc::aot {\nnamespace {\n"
  "const unsigned char kArchive[] = {\n${archive}};\n"
  "const unsigned char kHeader[] = {\n${header}};\n"
  "}  // namespace\n\n"
  "EmbeddedFile embedRuntimeArchive() { return {kArchive, sizeof kArchive}; }\n"
  "EmbeddedFile embedRuntimeHeader() { return {kHeader, sizeof kHeader}; }\n\n"
  "}  // namespace mtlc::aot\n")
