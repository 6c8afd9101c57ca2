// Data-parallel training: the same program on N processes (`mpirun -np N mtlc train M.mtl`), one
// optimizer step per global batch, every rank holding the same parameters.
//
// The scheme (docs/data-parallel.md has the derivation):
//   - every rank loads the whole train split and draws the same shuffled order (same seed), so it
//     gathers the same global batch of `batch` rows; it runs its kernels on its own contiguous
//     slice of it, rowsOf(n, rank, ranks) (sizes differ by at most one row; a rank may get none);
//   - the kernels compute per-task means over the present labels of the slice. With p_i the present
//     label values of task i in the slice and P_i those of the global batch (both counted from the
//     global batch every rank holds, so no communication), the slice's loss of task i enters with
//     factor f_i = p_i / P_i (0 when P_i = 0): train_step gets weights w_i·f_i, task_grads' task i
//     gradient and rep_grads' task i rows are scaled by f_i. The SUM over ranks is then exactly
//     the global batch's mean gradient (up to float summation order), and Σ_r f_i·L_i^r its loss;
//   - gradients are summed with MPI_Allreduce over the flat arena in buckets; head outputs and
//     rep_grads rows are gathered (MPI_Allgatherv, in place) into the global-batch buffers, so
//     every rank sees what the single-process run sees: the weighting strategies (Weighting.h)
//     run unchanged and compute the same weights, PCGrad projections and MGDA α on every rank,
//     the train metrics and DWA's epoch means are those of the global batch;
//   - all ranks start from rank 0's parameters (broadcast after initialisation / --init).
//     Rank 0 alone prints, logs, evaluates and writes checkpoints.
//
// Failure: a rank whose step throws prints its error and aborts the job (MPI_Abort), which ends
// every rank; the survivors print that the job was aborted (SIGTERM handler). A collective that
// gets no answer for $MTLC_MPI_TIMEOUT seconds (default 300; 0 = wait forever) is an Error too.
//
// Without MPI (built with -DMTLC_WITH_MPI=OFF or without libopenmpi-dev) joinJob() refuses to
// run under an MPI launcher with more than one process instead of training N independent copies.
#pragma once

#include "spec/ModelSpec.h"
#include "runtime/train/Weighting.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mtlc::rt {

// The processes of one job. All calls are collective: every rank makes them in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums over all ranks.
  virtual void allreduceSum(float* data, int64_t count) = 0;
  virtual void allreduceSum(double* data, int64_t count) = 0;
  // In place: rank r's counts[r] floats already sit at offset Σ_{q<r} counts[q] of `data`; after
  // the call every rank holds every rank's part.
  virtual void allgather(float* data, const std::vector<int64_t>& counts) = 0;
  virtual void broadcastFromRoot(float* data, int64_t count) = 0;
  // Collectives started now and completed together by complete(): a step's several results (the
  // gradient sum, the losses, every head's rows) cost one wait instead of one each. Buffers stay
  // untouched until complete() (`counts` is read at the call). These defaults complete each at once.
  virtual void startSum(float* data, int64_t count) { allreduceSum(data, count); }
  virtual void startSum(double* data, int64_t count) { allreduceSum(data, count); }
  virtual void startGather(float* data, const std::vector<int64_t>& counts) { allgather(data, counts); }
  virtual void complete() {}
  // An in-place sum over all ranks overlapped with the computation that produces `data`:
  // overlapBegin before it starts, overlapReady(begin, end) as parts become final (never touched
  // again until complete()), overlapFinish after it ends; after complete() data holds the sum, as
  // after allreduceSum. The ranks may report different parts at different times (a rank without
  // rows reports none). This default sums everything in overlapFinish.
  virtual void overlapBegin(float* data, int64_t count) {
    overlapData_ = data;
    overlapCount_ = count;
  }
  virtual void overlapReady(int64_t begin, int64_t end) {}
  virtual void overlapFinish() { allreduceSum(overlapData_, overlapCount_); }
  // Collective, once, before training: memory for a gradient arena of `count` floats (zeroed)
  // whose overlapped sums need no transfer (shared by the ranks of one machine), or null when
  // this job has none: the caller then allocates its own.
  virtual float* sharedGradients(int64_t /*count*/) { return nullptr; }
  // How this job sums and which transport settings mtlc chose ("" when nothing to say), for the
  // start line.
  virtual std::string settings() const { return ""; }
  // Seconds spent in the training steps' collectives so far (their transfers, and waiting for
  // slower ranks); the initial broadcast is not counted.
  virtual double collectiveSeconds() const = 0;
  // Ends every process of the job with this exit status; does not return.
  [[noreturn]] virtual void abort(int status) = 0;

 protected:
  float* overlapData_ = nullptr;
  int64_t overlapCount_ = 0;
};

// Whether this mtlc was built with MPI support.
bool mpiBuilt();

// The process count an MPI launcher started this process with (OMPI_COMM_WORLD_SIZE, PMI_SIZE),
// or 1 when it was not started by one.
int launcherWorldSize();

// Joins the MPI job this process was started in: a Communicator when started by an MPI launcher
// (even with one process), null otherwise. An Error when started by a launcher with more than one
// process but built without MPI, or when MPI cannot start.
std::unique_ptr<Communicator> joinJob(int* argc, char*** argv);

// Rows [begin, begin + count) of a global batch of n rows that `rank` of `ranks` computes:
// contiguous, in rank order, the first n % ranks ranks one row more.
struct RowRange {
  int64_t begin = 0, count = 0;
};
RowRange rowsOf(int64_t n, int rank, int ranks);

// "data-parallel: 4 ranks, each computing 64 rows of every batch of 256": the start line.
std::string describeSlices(const Communicator& comm, int64_t batch);

// "data-parallel: 1.2 ms/step (14%) in collectives on rank 0 (transfers and waiting for the other
// ranks)": where a rank's training loop time went, for the final report.
std::string describeCollectives(const Communicator& comm, int64_t steps, double loopSeconds);

// The buffers the trainer's kernels write, sized for the global batch: the data-parallel step
// combines them across ranks in place.
struct StepBuffers {
  float* grads = nullptr;             // paramCount: the model gradient
  float* taskGrads = nullptr;         // T · paramCount (task_grads), or null
  float* losses = nullptr;            // T + 1: per-task losses, then the weighted total
  const std::vector<float*>* outputs = nullptr;  // T heads [batch, outWidth], then (rep_grads) T × [batch, repWidth]
};

// The kernels of one global-batch step on many ranks: wraps the rank's own kernels (which run on
// its slice, writing into the global buffers at the slice's rows) and makes every result that of
// the global batch. What Weighting::step is given instead of the local kernels.
class DataParallelKernels final : public StepKernels {
 public:
  DataParallelKernels(const ModelSpec& spec, Communicator& comm, StepKernels& local, StepBuffers buffers);

  // Before each step: the global batch's labels (model task order) and its row count. The local
  // kernels must have been given rows() of it.
  void begin(const float* const* labels, int64_t n);
  RowRange rows() const { return rows_; }
  // The dropout seed of this rank's kernels. Masks are hashed from (seed, element index within
  // the kernel's batch), so ranks given the same seed would repeat one mask on every slice: rank 0
  // keeps the step's seed (its rows get the single-process masks), the others mix in their rank.
  uint64_t dropoutSeed(uint64_t stepSeed) const;

  // After each epoch: every rank's parameters must equal rank 0's bit for bit (they take the same
  // steps from the same reduced numbers); an Error on a rank whose parameters differ.
  void checkInSync(const float* params, int64_t epoch);

  // After each step's kernels: the state parameters (batchnorm's running statistics and
  // num_batches_tracked) become rank 0's on every rank, as PyTorch DDP's broadcast_buffers. Each
  // rank normalises with its own slice's batch statistics (no synchronised batchnorm), so a model
  // with batchnorm trains as DDP would, not bit-like one process; without one this does nothing.
  void syncState(float* params);

  void trainStep(const float* lossWeights) override { trainStepOf(lossWeights, false); }
  void measureStep(const float* lossWeights) override { trainStepOf(lossWeights, true); }
  void taskGrads(const float* lossWeights) override;
  void repGrads(const float* lossWeights) override;
  const float* losses() const override { return buffers_.losses; }
  float* grads() override { return buffers_.grads; }
  const float* taskGrad(int64_t t) const override { return buffers_.taskGrads + t * spec_.paramCount; }
  const float* repGrad(int64_t t) const override { return (*buffers_.outputs)[spec_.tasks.size() + size_t(t)]; }
  int64_t n() const override { return n_; }
  int64_t present(int64_t t) const override { return globalPresent_[size_t(t)]; }

 private:
  // The local train_step (measureStep when `measure`), then the global batch's results.
  void trainStepOf(const float* lossWeights, bool measure);
  // Starts the sum of the local losses into the global batch's (Σ_r f_i·L_i^r); after
  // comm_.complete(), finishLosses sets them and losses[T] = Σ w_i·L_i.
  void startLosses();
  void finishLosses(const float* lossWeights);
  // Starts gathering the head outputs (and, with reps, the rep_grads rows) of every slice onto
  // every rank; complete after comm_.complete().
  void startGatherRows(size_t firstOutput, size_t outputs, const std::vector<int64_t>& widths);
  static void gradsReady(void* self, int64_t begin, int64_t end);

  const ModelSpec& spec_;
  Communicator& comm_;
  StepKernels& local_;
  StepBuffers buffers_;
  RowRange rows_;
  int64_t n_ = 0;
  std::vector<int64_t> globalPresent_;
  std::vector<double> factor_;  // f_i = p_i / P_i
  std::vector<float> scaled_;   // w_i · f_i
  std::vector<double> lossSum_;  // Σ_r f_i·L_i^r, in flight between startLosses and finishLosses
  std::vector<int64_t> headWidths_, repWidths_;
  std::vector<float> state_;  // the state parameters, packed for syncState's broadcast
  std::vector<float> rootParams_;  // checkInSync's copy of rank 0's
};

}  // namespace mtlc::rt
