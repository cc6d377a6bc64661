#pragma once
// MPI start-up for the commands that run on several ranks (extract, train). A plain
// process (no mpirun/srun) is a one-rank world. Each rank gets its share of the cores as
// compute threads, so ranks x threads fits the machine.
#include <functional>

#include <mpi.h>

namespace uniad::cli {

struct RankInfo {
  int rank = 0, size = 1;              // in MPI_COMM_WORLD
  int local_rank = 0, local_size = 1;  // on this node
  MPI_Comm comm = MPI_COMM_WORLD;
};

// Initialises MPI, runs `body`, finalises MPI, and returns body's exit code. An error on
// any rank of a multi-rank job is printed with the rank and aborts the whole job with the
// error's exit code (the others would otherwise wait forever for it).
int run_with_mpi(int argc, char** argv, const std::function<int(const RankInfo&)>& body);

// Threads for LibTorch on this rank: `requested` if > 0, else cores / ranks on this node.
int configure_threads(const RankInfo& ranks, int requested);

}  // namespace uniad::cli
