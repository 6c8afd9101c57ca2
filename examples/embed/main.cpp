// Embedding a compiled model in a C++ program: the same header as from C (see main.c), wrapped in
// a small RAII owner. Trains on arrays, saves, reloads and predicts each task on its own.
//
// Usage: embed_cpp [CHECKPOINT_PATH]
#include "sensor.h"

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Free {
  void operator()(sensor_ctx *c) const { sensor_destroy(c); }
};
using Model = std::unique_ptr<sensor_ctx, Free>;

void ok(int status, const char *what, sensor_ctx *ctx) {
  if (status != SENSOR_OK)
    throw std::runtime_error(std::string(what) + ": " + sensor_strerror(status) + " (" + sensor_last_error(ctx) + ")");
}

Model create() {
  Model m(sensor_create());
  if (!m) throw std::bad_alloc();
  return m;
}

}  // namespace

int main(int argc, char **argv) try {
  const std::string path = argc > 1 ? argv[1] : "sensor_cpp.safetensors";
  constexpr int64_t n = SENSOR_MAX_BATCH;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(n * SENSOR_INPUT_FEATURES_SIZE), cls(n), flag(n), target(n);
  auto batch = [&] {
    for (float &v : x) v = u(rng);
    for (int64_t i = 0; i < n; ++i) {
      const float *f = &x[size_t(i) * 8];
      cls[size_t(i)] = f[0] > 0.3f ? 2.0f : f[0] > -0.3f ? 1.0f : 0.0f;
      flag[size_t(i)] = f[3] + f[4] > 0 ? 1.0f : 0.0f;
      target[size_t(i)] = 0.5f * f[5] - f[6];
    }
  };

  Model model = create();
  float losses[SENSOR_NUM_TASKS], total = 0, first = 0;
  for (int step = 1; step <= 40; ++step) {
    batch();
    ok(sensor_train_step(model.get(), n, x.data(), x.size(), cls.data(), cls.size(), flag.data(), flag.size(),
                         target.data(), target.size(), losses, &total),
       "train_step", model.get());
    if (step == 1) first = total;
    if (step % 10 == 0) std::printf("step %d: total %.5f (cls %.5f, flag %.5f, target %.5f)\n", step, total, losses[0], losses[1], losses[2]);
  }
  if (!(total < first)) throw std::runtime_error("the loss did not go down");
  ok(sensor_save(model.get(), path.c_str()), "save", model.get());

  Model reloaded = create();
  ok(sensor_load(reloaded.get(), path.c_str()), "load", reloaded.get());
  std::vector<float> all[3] = {std::vector<float>(n * 3), std::vector<float>(n), std::vector<float>(n)};
  ok(sensor_predict(reloaded.get(), n, x.data(), x.size(), all[0].data(), all[0].size(), all[1].data(), all[1].size(),
                    all[2].data(), all[2].size()),
     "predict", reloaded.get());
  std::vector<float> one[3] = {std::vector<float>(n * 3), std::vector<float>(n), std::vector<float>(n)};
  ok(sensor_predict_cls(reloaded.get(), n, x.data(), x.size(), one[0].data(), one[0].size()), "predict_cls", reloaded.get());
  ok(sensor_predict_flag(reloaded.get(), n, x.data(), x.size(), one[1].data(), one[1].size()), "predict_flag", reloaded.get());
  ok(sensor_predict_target(reloaded.get(), n, x.data(), x.size(), one[2].data(), one[2].size()), "predict_target", reloaded.get());
  for (int t = 0; t < 3; ++t)
    if (one[t] != all[t]) throw std::runtime_error("predict_<task> differs from predict for task " + std::to_string(t));
  // Wrong sizes are refused: one sample too many for the output buffer.
  if (sensor_predict_flag(reloaded.get(), n, x.data(), x.size(), one[1].data(), one[1].size() + 1) != SENSOR_ERR_SIZE)
    throw std::runtime_error("a wrong-sized output was accepted");
  int correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += (all[1][size_t(i)] > 0) == (flag[size_t(i)] > 0.5f);
  std::printf("saved %s and reloaded it; per-task predictions equal predict; flag accuracy %d/%lld\n", path.c_str(),
              correct, static_cast<long long>(n));
  return 0;
} catch (const std::exception &e) {
  std::fprintf(stderr, "embed_cpp: %s\n", e.what());
  return 1;
}
