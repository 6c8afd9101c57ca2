// Joining the job: detecting an MPI launcher, and refusing one when built without MPI.
#include "runtime/parallel/Distributed.h"

#include "spec/Error.h"

#include <cstdlib>

namespace mtlc::rt {

#if MTLC_HAVE_MPI
std::unique_ptr<Communicator> joinMpiJob(int* argc, char*** argv);  // MpiCommunicator.cpp
bool mpiBuilt() { return true; }
#else
bool mpiBuilt() { return false; }
#endif

int launcherWorldSize() {
  // Open MPI's mpirun, then PMI-1/2 launchers (MPICH's and Intel MPI's hydra, Slurm's srun).
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(var);
    if (v && *v) {
      const long n = std::strtol(v, nullptr, 10);
      if (n >= 1) return int(n);
    }
  }
  return 1;
}

std::unique_ptr<Communicator> joinJob(int* argc, char*** argv) {
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") ||
                        std::getenv("PMIX_RANK") || std::getenv("PMI_RANK");
  if (!launched) return nullptr;
#if MTLC_HAVE_MPI
  return joinMpiJob(argc, argv);
#else
  const int size = launcherWorldSize();
  if (size > 1)
    throwError("started by an MPI launcher with {} processes, but this mtlc was built without MPI support "
               "(install libopenmpi-dev and rebuild with -DMTLC_WITH_MPI=ON); refusing to train {} independent "
               "copies",
               size, size);
  return nullptr;
#endif
}

}  // namespace mtlc::rt
