// DataParallelKernels without MPI: ranks are threads meeting at a barrier for every collective,
// the kernels a linear multi-task model written out by hand. Whatever the rank count and however
// the batch's present labels fall into the slices (a rank may get no row at all), every rank must
// see the losses, gradients, per-task gradients, rep_grads rows and outputs of the whole batch.
#include "runtime/parallel/Distributed.h"
#include "spec/Error.h"

#include <catch2/catch.hpp>

#include <barrier>
#include <cmath>
#include <cstdlib>
#include <random>
#include <thread>

using namespace mtlc::rt;

namespace {

// In-process ranks: every collective publishes a pointer, meets the others, reads theirs.
struct ThreadJob {
  explicit ThreadJob(int n) : size(n), meet(n), slots(size_t(n)) {}
  int size;
  std::barrier<> meet;
  std::vector<void*> slots;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadJob& job, int rank) : job_(job), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return job_.size; }
  void allreduceSum(float* data, int64_t count) override { sum(data, count); }
  void allreduceSum(double* data, int64_t count) override { sum(data, count); }
  void allgather(float* data, const std::vector<int64_t>& counts) override {
    publish(data);
    int64_t at = 0;
    for (int r = 0; r < job_.size; at += counts[size_t(r)], ++r)
      if (r != rank_) std::copy_n(static_cast<float*>(job_.slots[size_t(r)]) + at, counts[size_t(r)], data + at);
    job_.meet.arrive_and_wait();
  }
  void broadcastFromRoot(float* data, int64_t count) override {
    publish(data);
    if (rank_ != 0) std::copy_n(static_cast<float*>(job_.slots[0]), count, data);
    job_.meet.arrive_and_wait();
  }
  double collectiveSeconds() const override { return 0; }
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  void publish(void* p) {
    job_.slots[size_t(rank_)] = p;
    job_.meet.arrive_and_wait();
  }
  template <typename T>
  void sum(T* data, int64_t count) {
    publish(data);
    std::vector<T> s(size_t(count), T(0));
    for (int r = 0; r < job_.size; ++r)
      for (int64_t i = 0; i < count; ++i) s[size_t(i)] += static_cast<T*>(job_.slots[size_t(r)])[i];
    job_.meet.arrive_and_wait();  // everyone has read every buffer
    std::copy(s.begin(), s.end(), data);
    job_.meet.arrive_and_wait();
  }
  ThreadJob& job_;
  int rank_;
};

constexpr int64_t kT = 2, kD = 3;  // tasks, features (= the shared representation's width)

// Task t's head: out = θ_t · x, loss L_t = mean over the present labels of (out − y)², so
// ∂L_t/∂θ_t = (2/p)·Σ (out − y)·x and ∂L_t/∂x_j = (2/p)·(out_j − y_j)·θ_t: what the generated
// kernels would compute, run on `rows` and writing the buffers at those rows.
struct LinearKernels final : StepKernels {
  const std::vector<float>& theta;  // [T, D]
  const std::vector<float>& x;      // [n, D]
  const std::vector<std::vector<float>>& y;  // per task [n]
  StepBuffers out;
  RowRange rows;
  LinearKernels(const std::vector<float>& theta, const std::vector<float>& x,
                const std::vector<std::vector<float>>& y, StepBuffers out, RowRange rows)
      : theta(theta), x(x), y(y), out(out), rows(rows) {}

  void forward(int64_t t, std::vector<float>* repRows, float* taskGrad) {
    double loss = 0, grad[kD] = {0, 0, 0};
    int64_t present = 0;
    for (int64_t i = rows.begin; i < rows.begin + rows.count; ++i) present += !std::isnan(y[size_t(t)][size_t(i)]);
    float* head = (*out.outputs)[size_t(t)];
    for (int64_t i = rows.begin; i < rows.begin + rows.count; ++i) {
      double o = 0;
      for (int64_t d = 0; d < kD; ++d) o += double(theta[size_t(t * kD + d)]) * x[size_t(i * kD + d)];
      head[i] = float(o);
      const float yi = y[size_t(t)][size_t(i)];
      float* rep = (*out.outputs)[size_t(kT + t)] + i * kD;
      const double r = std::isnan(yi) || present == 0 ? 0.0 : 2 * (o - yi) / double(present);
      if (!std::isnan(yi) && present) loss += (o - yi) * (o - yi) / double(present);
      for (int64_t d = 0; d < kD; ++d) {
        grad[d] += r * x[size_t(i * kD + d)];
        if (repRows) rep[d] = float(r * theta[size_t(t * kD + d)]);
      }
    }
    out.losses[t] = float(loss);
    for (int64_t d = 0; d < kD; ++d) taskGrad[t * kD + d] = float(grad[d]);
  }
  void trainStep(const float* w) override {
    std::vector<float> tg(size_t(kT * kD));
    for (int64_t t = 0; t < kT; ++t) forward(t, nullptr, tg.data());
    for (int64_t p = 0; p < kT * kD; ++p) out.grads[p] = w[p / kD] * tg[size_t(p)];
  }
  void taskGrads(const float*) override {
    for (int64_t t = 0; t < kT; ++t) {
      std::fill_n(out.taskGrads + t * kT * kD, kT * kD, 0.0f);
      forward(t, nullptr, out.taskGrads + t * kT * kD);
    }
  }
  void repGrads(const float*) override {
    std::vector<float> tg(size_t(kT * kD)), rep;
    for (int64_t t = 0; t < kT; ++t) forward(t, &rep, tg.data());
  }
  const float* losses() const override { return out.losses; }
  float* grads() override { return out.grads; }
  const float* taskGrad(int64_t t) const override { return out.taskGrads + t * kT * kD; }
  const float* repGrad(int64_t t) const override { return (*out.outputs)[size_t(kT + t)] + rows.begin * kD; }
  int64_t n() const override { return rows.count; }
  int64_t present(int64_t) const override { return 0; }
};

// One rank's buffers, sized for the global batch.
struct Buffers {
  std::vector<float> grads, taskGrads, losses;
  std::vector<std::vector<float>> store;
  std::vector<float*> outputs;
  explicit Buffers(int64_t n) : grads(size_t(kT * kD)), taskGrads(size_t(kT * kT * kD)), losses(size_t(kT + 1)) {
    for (int64_t t = 0; t < kT; ++t) store.emplace_back(size_t(n), -1.0f);
    for (int64_t t = 0; t < kT; ++t) store.emplace_back(size_t(n * kD), -1.0f);
    for (auto& s : store) outputs.push_back(s.data());
  }
  StepBuffers view() { return {grads.data(), taskGrads.data(), losses.data(), &outputs}; }
};

ModelSpec linearSpec() {
  ModelSpec s;
  s.name = "linear";
  for (int64_t t = 0; t < kT; ++t) {
    TaskSpec ts;
    ts.name = "t" + std::to_string(t);
    ts.outWidth = 1;
    ts.labelWidth = 1;
    s.tasks.push_back(ts);
  }
  s.paramCount = kT * kD;
  s.repWidth = kD;
  return s;
}

void requireClose(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(what << "[" << i << "]");
    REQUIRE(got[i] == Approx(want[i]).epsilon(1e-5).margin(1e-6));
  }
}

}  // namespace

TEST_CASE("rowsOf splits a batch into contiguous slices, the first ranks one row more") {
  CHECK(rowsOf(10, 0, 3).begin == 0);
  CHECK(rowsOf(10, 0, 3).count == 4);
  CHECK(rowsOf(10, 1, 3).begin == 4);
  CHECK(rowsOf(10, 1, 3).count == 3);
  CHECK(rowsOf(10, 2, 3).begin == 7);
  CHECK(rowsOf(10, 2, 3).count == 3);
  CHECK(rowsOf(1, 1, 2).begin == 1);
  CHECK(rowsOf(1, 1, 2).count == 0);
}

TEST_CASE("data-parallel kernels give every rank the whole batch's results") {
  const auto [ranks, n] = GENERATE(table<int, int64_t>({{2, 9}, {3, 10}, {3, 2}, {4, 1}}));
  INFO(ranks << " ranks, batch " << n);
  std::mt19937 rng(uint32_t(ranks * 100 + n));
  std::normal_distribution<float> g;
  std::vector<float> theta(size_t(kT * kD)), x(size_t(n * kD));
  for (float& v : theta) v = g(rng);
  for (float& v : x) v = g(rng);
  std::vector<std::vector<float>> y(kT, std::vector<float>(size_t(n)));
  for (int64_t t = 0; t < kT; ++t)
    for (int64_t i = 0; i < n; ++i) y[size_t(t)][size_t(i)] = (i + t) % 3 == 1 ? std::nanf("") : g(rng);
  std::vector<const float*> labels{y[0].data(), y[1].data()};
  const ModelSpec spec = linearSpec();
  const float w[kT] = {0.7f, 1.9f};

  // The single-process reference: the kernels on the whole batch.
  Buffers ref(n);
  LinearKernels whole(theta, x, y, ref.view(), {0, n});
  whole.trainStep(w);
  const std::vector<float> refGrads = ref.grads, refLosses(ref.losses.begin(), ref.losses.begin() + kT);
  const std::vector<float> refHeads = ref.store[0];
  whole.taskGrads(w);
  const std::vector<float> refTaskGrads = ref.taskGrads;
  whole.repGrads(w);
  const std::vector<float> refRep0 = ref.store[kT], refRep1 = ref.store[kT + 1];

  ThreadJob job(ranks);
  std::vector<Buffers> bufs;
  for (int r = 0; r < ranks; ++r) bufs.emplace_back(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(job, r);
      LinearKernels local(theta, x, y, bufs[size_t(r)].view(), rowsOf(n, r, ranks));
      DataParallelKernels dp(spec, comm, local, bufs[size_t(r)].view());
      dp.begin(labels.data(), n);
      dp.trainStep(w);
      const std::vector<float> grads = bufs[size_t(r)].grads, heads = bufs[size_t(r)].store[0];
      std::vector<float> losses(dp.losses(), dp.losses() + kT);
      dp.taskGrads(w);
      const std::vector<float> taskGrads = bufs[size_t(r)].taskGrads;
      dp.repGrads(w);
      // Checked on the main thread after the join (Catch2 assertions are not thread-safe).
      bufs[size_t(r)].grads = grads;
      bufs[size_t(r)].losses = losses;
      bufs[size_t(r)].store[0] = heads;
      bufs[size_t(r)].taskGrads = taskGrads;
      if (r == 0) {
        bufs[0].losses.push_back(float(dp.n()));
        bufs[0].losses.push_back(float(dp.present(0)));
      }
    });
  for (auto& t : threads) t.join();

  for (int r = 0; r < ranks; ++r) {
    INFO("rank " << r);
    Buffers& b = bufs[size_t(r)];
    requireClose(b.grads, refGrads, "grads");
    requireClose(std::vector<float>(b.losses.begin(), b.losses.begin() + kT), refLosses, "losses");
    requireClose(b.store[0], refHeads, "head outputs");
    requireClose(b.taskGrads, refTaskGrads, "task gradients");
    requireClose(b.store[kT], refRep0, "rep_grads of task 0");
    requireClose(b.store[kT + 1], refRep1, "rep_grads of task 1");
  }
  int64_t present0 = 0;
  for (float v : y[0]) present0 += !std::isnan(v);
  CHECK(bufs[0].losses[kT] == float(n));         // n(): the global batch
  CHECK(bufs[0].losses[kT + 1] == float(present0));  // present(): the global batch's labels
}

TEST_CASE("checkInSync names a rank whose parameters left rank 0's") {
  const ModelSpec spec = linearSpec();
  const int ranks = 3;
  ThreadJob job(ranks);
  std::vector<std::string> errors(ranks);
  std::vector<std::thread> threads;
  std::vector<float> theta(static_cast<size_t>(kT * kD)), x(static_cast<size_t>(kD));
  std::vector<std::vector<float>> y(kT, std::vector<float>(1));
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(job, r);
      Buffers b(1);
      LinearKernels local(theta, x, y, b.view(), rowsOf(1, r, ranks));
      DataParallelKernels dp(spec, comm, local, b.view());
      std::vector<float> params(size_t(spec.paramCount), 0.25f);
      dp.checkInSync(params.data(), 1);  // in step: no error anywhere
      if (r == 2) params[4] = 0.75f;
      try {
        dp.checkInSync(params.data(), 2);
      } catch (const Error& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  CHECK(errors[0].empty());
  CHECK(errors[1].empty());
  CHECK(errors[2] ==
        "internal: rank 2 of 3: after epoch 2, 1 of 6 parameters differ from rank 0's (by up to 0.5); the ranks no "
        "longer train one model");
}
