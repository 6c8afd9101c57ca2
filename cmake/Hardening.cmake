# Build options for hardening (issue 7): sanitizers for the unit tests, libFuzzer for the front end.
#
#   -DMTLC_SANITIZE=ON   every target built with AddressSanitizer + UndefinedBehaviorSanitizer; the
#                        first report aborts the process (-fno-sanitize-recover), so a test that
#                        triggers one fails.
#   -DMTLC_FUZZ=ON       (clang only) builds tests/fuzz/mtlc_fuzz, a libFuzzer harness over
#                        parse -> check -> lower -> IR verification, and the fuzz_smoke CTest test.
#                        Implies the sanitizers; the front-end libraries get coverage instrumentation.
#   -DMTLC_SANITIZERS=LIST  which sanitizers MTLC_SANITIZE means (default address,undefined).
#                        `./run fuzz-long` uses undefined,leak: LeakSanitizer alone keeps the leak
#                        check at a fraction of ASan's cost per input, for runs of millions of inputs.
# Both go in a build folder of their own (./run sanitize uses build-asan with clang-19).
option(MTLC_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
set(MTLC_SANITIZERS "address,undefined" CACHE STRING "the -fsanitize= list of MTLC_SANITIZE builds")
option(MTLC_FUZZ "Build the libFuzzer harness of the front end (needs clang)" OFF)

if(MTLC_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MTLC_FUZZ needs clang (configure with CC=clang-19 CXX=clang++-19)")
  endif()
  set(MTLC_SANITIZE ON)
endif()

if(MTLC_SANITIZE)
  set(MTLC_SANITIZER_FLAGS -fsanitize=${MTLC_SANITIZERS} -fno-sanitize-recover=all
                           -fno-omit-frame-pointer)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # -fsanitize=function checks the signature word in front of every indirect callee, which
    # JIT-compiled kernels (called through function pointers) do not have.
    list(APPEND MTLC_SANITIZER_FLAGS -fno-sanitize=function)
  endif()
  if(MTLC_SANITIZERS MATCHES "undefined" AND NOT MTLC_SANITIZERS MATCHES "address")
    # Without ASan, clang links no UBSan runtime next to LeakSanitizer's: UBSan then traps (an
    # illegal instruction, which libFuzzer reports as a crash and saves the input; the ASan build
    # replays it with UBSan's message).
    list(APPEND MTLC_SANITIZER_FLAGS -fsanitize-trap=undefined)
  endif()
  add_compile_options(${MTLC_SANITIZER_FLAGS})
  add_link_options(${MTLC_SANITIZER_FLAGS})
endif()

# Coverage instrumentation for the libraries the fuzz harness exercises (called after they exist).
function(mtlc_fuzz_instrument)
  if(MTLC_FUZZ)
    foreach(t ${ARGN})
      target_compile_options(${t} PRIVATE -fsanitize=fuzzer-no-link)
    endforeach()
  endif()
endfunction()
