// The Communicator on MPI (Open MPI from Debian): nonblocking collectives waited on with a
// deadline, errors returned (MPI_ERRORS_RETURN) and turned into Errors, a SIGTERM handler that says
// why a surviving rank stops when the job is aborted. Compiled only with MTLC_HAVE_MPI.
#if MTLC_HAVE_MPI
#include "runtime/parallel/Distributed.h"
#include "runtime/parallel/RankWait.h"
#include "runtime/parallel/SharedGradientSum.h"

#include "spec/Error.h"

// The C API only: no MPI C++ bindings (deprecated, and a library of their own to link).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <thread>
#include <utility>
#include <sys/statvfs.h>
#include <unistd.h>

namespace mtlc::rt {

namespace {

// Gradients are summed in buckets of this many floats (4 MiB): every bucket's MPI_Iallreduce is
// started before the first is waited on, so the library pipelines them, and no count exceeds an
// int.
constexpr int64_t kBucketFloats = int64_t(1) << 20;

// An overlapped gradient sum is cut into buckets of this many floats (256 KiB), so that the last
// layers' gradients, final first, can be on the wire while the earlier layers are differentiated.
constexpr int64_t kOverlapBucketFloats = int64_t(1) << 16;

// What the SIGTERM handler writes (async-signal-safe: a preformatted buffer and write(2)).
char gAbortMessage[160];
volatile std::sig_atomic_t gAborting = 0;  // this rank called abort(): it has said why already

extern "C" void onTerminate(int sig) {
  if (!gAborting) {
    ssize_t ignored = write(STDERR_FILENO, gAbortMessage, std::strlen(gAbortMessage));
    (void)ignored;
  }
  _exit(128 + sig);
}

std::string mpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, size_t(len));
}

int toInt(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throwError("internal: {} of {} elements does not fit one MPI call", what, v);
  return int(v);
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(std::string settings) : settings_(std::move(settings)) {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    if (const char* t = std::getenv("MTLC_MPI_TIMEOUT"); t && *t) {
      char* end = nullptr;
      timeout_ = std::strtod(t, &end);
      if (end == t || *end || timeout_ < 0)
        throwError("MTLC_MPI_TIMEOUT={}: expected a number of seconds (0: no timeout)", t);
    }
    std::snprintf(gAbortMessage, sizeof gAbortMessage,
                  "mtlc: error: rank %d of %d: the job was aborted (another rank failed or was lost, or mpirun was "
                  "stopped); stopping\n",
                  rank_, size_);
    std::signal(SIGTERM, onTerminate);
  }
  ~MpiCommunicator() override {
    shared_.reset();  // its window and communicator go before MPI does
    MPI_Comm_free(&comm_);
    MPI_Finalize();
  }

  int rank() const override { return rank_; }
  std::string settings() const override {
    if (!shared_) return settings_.empty() ? "" : "Open MPI, set by mtlc: " + settings_;
    return "gradients summed in shared memory" + (settings_.empty() ? "" : "; Open MPI, set by mtlc: " + settings_);
  }

  // MTLC_GRADIENT_SUM=mpi keeps the gradient sum in MPI (to compare, or where a shared window
  // misbehaves); any other value, or none, shares memory when every rank is on this machine.
  float* sharedGradients(int64_t count) override {
    const char* env = std::getenv("MTLC_GRADIENT_SUM");
    int want = env && std::strcmp(env, "mpi") == 0 ? 0 : 1;
    if (env && *env && want && std::strcmp(env, "shared") != 0)
      throwError("MTLC_GRADIENT_SUM={}: expected `shared` or `mpi`", env);
    // Open MPI backs the window with a file in /dev/shm. Where that holds less than every rank's
    // arena (a container's 64 MiB default), touching the window would end the ranks with SIGBUS.
    const double need = 1.05 * double(size_) * double(count) * sizeof(float) + (1 << 20);
    struct statvfs fs;
    if (want && statvfs("/dev/shm", &fs) == 0 && double(fs.f_bavail) * double(fs.f_frsize) < need) {
      want = 0;
      if (rank_ == 0)
        std::fprintf(stderr,
                     "mtlc: note: /dev/shm has %.0f MiB free, less than the %.0f MiB the ranks' shared gradient "
                     "arenas need; summing gradients through MPI\n",
                     double(fs.f_bavail) * double(fs.f_frsize) / 1048576.0, need / 1048576.0);
    }
    MPI_Allreduce(MPI_IN_PLACE, &want, 1, MPI_INT, MPI_MIN, comm_);  // one path for every rank
    if (want) shared_ = SharedGradientSum::create(comm_, count, timeout_);
    return shared_ ? shared_->data() : nullptr;
  }
  double collectiveSeconds() const override { return waited_; }
  int size() const override { return size_; }

  void allreduceSum(float* data, int64_t count) override {
    startSum(data, count);
    complete();
  }
  void allreduceSum(double* data, int64_t count) override {
    startSum(data, count);
    complete();
  }
  void allgather(float* data, const std::vector<int64_t>& counts) override {
    startGather(data, counts);
    complete();
  }

  void startSum(float* data, int64_t count) override { startReduce(data, count, MPI_FLOAT, sizeof(float)); }
  void startSum(double* data, int64_t count) override { startReduce(data, count, MPI_DOUBLE, sizeof(double)); }

  void startGather(float* data, const std::vector<int64_t>& counts) override {
    // MPI reads the count and displacement arrays until the gather completes.
    GatherLayout& g = gathers_.emplace_back();
    int64_t at = 0;
    for (int64_t c : counts) {
      g.counts.push_back(toInt(c, "a gather"));
      g.displs.push_back(toInt(at, "a gather"));
      at += c;
    }
    pending_.emplace_back();
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, g.counts.data(), g.displs.data(), MPI_FLOAT,
                          comm_, &pending_.back()),
          "MPI_Iallgatherv");
  }

  void complete() override {
    if (sharedPending_) {
      const double start = monotonicSeconds();
      // The step's losses and head outputs (MPI) move while this rank waits for the others' sums.
      shared_->complete([this] {
        int done = 0;
        if (!pending_.empty())
          check(MPI_Testall(int(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE), "summing gradients");
      });
      sharedPending_ = false;
      waited_ += monotonicSeconds() - start;
    }
    wait(pending_, "summing gradients");
    pending_.clear();
    gathers_.clear();
  }

  void broadcastFromRoot(float* data, int64_t count) override {
    std::vector<MPI_Request> req;
    for (int64_t at = 0; at < count; at += kBucketFloats) {
      req.emplace_back();
      check(MPI_Ibcast(data + at, int(std::min(kBucketFloats, count - at)), MPI_FLOAT, 0, comm_, &req.back()),
            "MPI_Ibcast");
    }
    wait(req, "broadcasting rank 0's parameters", /*counted=*/false);  // before training: not a step's
  }

  // Every rank must start the same collectives in the same order, but ranks learn that gradients
  // are final at different times (a rank without rows of the batch never does). So the buckets
  // start in one fixed order, from the end of the arena down (the output layers' gradients, which
  // the backward pass finishes first): bucket b starts once it is complete and every bucket above
  // it has started. Each report also polls the started sums, since Open MPI moves non-blocking
  // collectives only inside MPI calls.
  void overlapBegin(float* data, int64_t count) override {
    Communicator::overlapBegin(data, count);
    if (sharing()) {
      shared_->begin();
      return;
    }
    const int64_t buckets = (count + kOverlapBucketFloats - 1) / kOverlapBucketFloats;
    missing_.resize(size_t(buckets));
    for (int64_t b = 0; b < buckets; ++b)
      missing_[size_t(b)] = std::min(kOverlapBucketFloats, count - b * kOverlapBucketFloats);
    nextBucket_ = buckets - 1;
    overlapReq_.clear();
  }
  void overlapReady(int64_t begin, int64_t end) override {
    const double start = monotonicSeconds();
    if (sharing()) {
      shared_->ready(begin, end);
      waited_ += monotonicSeconds() - start;
      return;
    }
    for (int64_t b = begin / kOverlapBucketFloats; b * kOverlapBucketFloats < end; ++b) {
      const int64_t lo = std::max(begin, b * kOverlapBucketFloats);
      const int64_t hi = std::min(end, (b + 1) * kOverlapBucketFloats);
      missing_[size_t(b)] -= hi - lo;
    }
    while (nextBucket_ >= 0 && missing_[size_t(nextBucket_)] <= 0) startBucket(nextBucket_--);
    if (!overlapReq_.empty()) {
      int done = 0;
      check(MPI_Testall(int(overlapReq_.size()), overlapReq_.data(), &done, MPI_STATUSES_IGNORE), "summing gradients");
    }
    waited_ += monotonicSeconds() - start;
  }
  void overlapFinish() override {
    if (sharing()) {
      shared_->finish();
      sharedPending_ = true;
      return;
    }
    while (nextBucket_ >= 0) startBucket(nextBucket_--);
    pending_.insert(pending_.end(), overlapReq_.begin(), overlapReq_.end());
    overlapReq_.clear();
  }

  [[noreturn]] void abort(int status) override {
    gAborting = 1;
    MPI_Abort(comm_, status);
    std::_Exit(status);  // MPI_Abort does not return; in case it does
  }

 private:
  // Whether the overlapped sum in flight runs through the shared arena.
  bool sharing() const { return shared_ && overlapData_ == shared_->data() && overlapCount_ == shared_->count(); }

  void startBucket(int64_t b) {
    const int64_t at = b * kOverlapBucketFloats;
    overlapReq_.emplace_back();
    check(MPI_Iallreduce(MPI_IN_PLACE, overlapData_ + at, int(std::min(kOverlapBucketFloats, overlapCount_ - at)),
                         MPI_FLOAT, MPI_SUM, comm_, &overlapReq_.back()),
          "MPI_Iallreduce");
  }

  void startReduce(void* data, int64_t count, MPI_Datatype type, size_t bytes) {
    for (int64_t at = 0; at < count; at += kBucketFloats) {
      pending_.emplace_back();
      check(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(data) + size_t(at) * bytes,
                           int(std::min(kBucketFloats, count - at)), type, MPI_SUM, comm_, &pending_.back()),
            "MPI_Iallreduce");
    }
  }

  // Polls until every request completes. Spins first (a step's collectives usually complete in
  // microseconds), then sleeps a little between polls so that a rank waiting for rank 0's
  // evaluation leaves the CPU to it; past the deadline the job is stuck: an Error.
  void wait(std::vector<MPI_Request>& req, const char* what, bool counted = true) {
    if (req.empty()) return;
    const double start = monotonicSeconds();
    for (int64_t polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Testall(int(req.size()), req.data(), &done, MPI_STATUSES_IGNORE), what);
      if (done) {
        if (counted) waited_ += monotonicSeconds() - start;
        return;
      }
      if (polls > 2000) {
        if (timeout_ > 0 && monotonicSeconds() - start > timeout_) throwNoAnswer(rank_, size_, timeout_, what);
        std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 1000 : 50));
      }
    }
  }

  void check(int code, const char* what) const {
    if (code != MPI_SUCCESS) throwError("rank {} of {}: {} failed: {}", rank_, size_, what, mpiErrorText(code));
  }

  std::string settings_;  // the Open MPI settings mtlc chose (applyMcaDefaults)
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_ = 300;
  double waited_ = 0;
  // The overlapped sum in flight: floats not yet final per bucket, the next bucket to start (from
  // the top down), the started buckets' requests.
  std::vector<int64_t> missing_;
  int64_t nextBucket_ = -1;
  std::vector<MPI_Request> overlapReq_;
  // The gradient arena in memory shared by the ranks of this machine (sharedGradients), and
  // whether complete() must finish a sum through it.
  std::unique_ptr<SharedGradientSum> shared_;
  bool sharedPending_ = false;
  // The collectives started and not yet completed (complete() waits for them all), and the
  // count/displacement arrays of their gathers (a deque: started ones never move).
  struct GatherLayout {
    std::vector<int> counts, displs;
  };
  std::vector<MPI_Request> pending_;
  std::deque<GatherLayout> gathers_;
};

}  // namespace

// Open MPI settings mtlc chooses for itself before MPI_Init, each only where the environment does
// not set it (`mpirun --mca NAME VALUE` reaches the ranks as OMPI_MCA_NAME, so a user's choice
// wins). libnbc, which runs every MPI_Iallreduce, sums an in-place buffer by default as a reduce to
// one rank and a broadcast back: the whole bucket crosses twice, one way at a time, and one rank
// does all the additions. The ring (reduce-scatter, then allgather) sends each rank's share both
// ways at once and splits the additions; it measured about twice as fast for the 64 KiB to 1 MiB
// buckets of a gradient sum on 2 ranks (docs/data-parallel.md, Transport). Every rank runs the
// same schedule, so sums stay identical on every rank and run to run.
constexpr std::pair<const char*, const char*> kMcaDefaults[] = {
    {"coll_libnbc_iallreduce_algorithm", "1"},  // 1: ring
};

std::string applyMcaDefaults() {
  std::string applied;
  for (const auto& [name, value] : kMcaDefaults) {
    const std::string var = std::string("OMPI_MCA_") + name;
    if (std::getenv(var.c_str())) continue;
    setenv(var.c_str(), value, /*overwrite=*/0);
    applied += fmt::format("{}{} {}", applied.empty() ? "" : ", ", name, value);
  }
  return applied;
}

std::unique_ptr<Communicator> joinMpiJob(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  std::string applied;
  if (!initialised) {
    applied = applyMcaDefaults();
    const int code = MPI_Init(argc, argv);
    if (code != MPI_SUCCESS) throwError("MPI_Init failed: {}", mpiErrorText(code));
  }
  return std::make_unique<MpiCommunicator>(applied);
}

}  // namespace mtlc::rt
#endif
