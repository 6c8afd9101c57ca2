// libFuzzer harness of the embedded loader: any bytes as the file of `sensor_load` (the model of
// examples/embed, bundled by `mtlc build`), i.e. mtlc_embed_load of runtime/embed/Embed.cpp, the
// code an embedding program runs on files it may not control. Built with -DMTLC_FUZZ=ON.
//
// A finding is a crash, a sanitizer report, a hang or a leak, and also a broken promise of
// mtlc_embed.h: a status other than OK, IO or FORMAT (NOMEM counts as a finding: a file of at most
// -max_len bytes must not exhaust memory), a failure without a message, or a failed load that
// changed the parameters or the optimizer's step count (a refused file leaves the context as it
// was), or a load that succeeded with a negative step count.
#include "MemoryFile.h"
#include "sensor.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

[[noreturn]] void finding(const char *what, int status, sensor_ctx *ctx) {
  std::fprintf(stderr, "mtlc_fuzz_embed_load: %s (status %d: %s; last error: %s)\n", what, status,
               sensor_strerror(status), sensor_last_error(ctx));
  std::abort();
}

struct Harness {
  sensor_ctx *ctx = sensor_create();
  float before[SENSOR_PARAM_COUNT];
  mtlc::fuzz::MemoryFile file;
  Harness() {
    if (!ctx || sensor_init(ctx, 7) != SENSOR_OK) {
      std::fprintf(stderr, "mtlc_fuzz_embed_load: cannot create a context\n");
      std::exit(2);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static Harness h;  // one context for the whole run, as a long-lived program would hold
  h.file.assign(data, size);
  std::memcpy(h.before, sensor_params(h.ctx), sizeof h.before);
  const int64_t steps = sensor_steps(h.ctx);
  const int status = sensor_load(h.ctx, h.file.path());
  if (status == SENSOR_OK) {
    if (sensor_steps(h.ctx) < 0) finding("a loaded file gave a negative step count", status, h.ctx);
    // A model's own file: start the next input from the same state again.
    if (sensor_init(h.ctx, 7) != SENSOR_OK) finding("init after a load failed", status, h.ctx);
    return 0;
  }
  if (status != SENSOR_ERR_FORMAT && status != SENSOR_ERR_IO) finding("an unexpected status", status, h.ctx);
  if (sensor_last_error(h.ctx)[0] == '\0') finding("a failure without a message", status, h.ctx);
  if (std::memcmp(h.before, sensor_params(h.ctx), sizeof h.before) != 0)
    finding("a refused file changed the parameters", status, h.ctx);
  if (sensor_steps(h.ctx) != steps) finding("a refused file changed the step count", status, h.ctx);
  return 0;
}
