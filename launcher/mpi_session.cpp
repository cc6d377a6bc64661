#include "launcher/mpi_session.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <ATen/Parallel.h>

#include "common/device.h"
#include "common/error.h"

namespace uniad::cli {

int run_with_mpi(int argc, char** argv, const std::function<int(const RankInfo&)>& body) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  RankInfo info;
  MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info.size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &info.local_rank);
  MPI_Comm_size(local, &info.local_size);
  MPI_Comm_free(&local);
  int code = 0;
  try {
    code = body(info);
  } catch (const Error& e) {
    if (info.size == 1) {
      MPI_Finalize();
      throw;
    }
    std::cerr << "uniad " << argv[0] << " (rank " << info.rank << "/" << info.size << "): error: " << e.what() << "\n"
              << std::flush;
    MPI_Abort(MPI_COMM_WORLD, static_cast<int>(e.code()));
  } catch (const std::exception& e) {
    if (info.size == 1) {
      MPI_Finalize();
      throw;
    }
    std::cerr << "uniad " << argv[0] << " (rank " << info.rank << "/" << info.size << "): internal error: " << e.what()
              << "\n" << std::flush;
    MPI_Abort(MPI_COMM_WORLD, static_cast<int>(ExitCode::kRuntime));
  }
  MPI_Finalize();
  return code;
}

int configure_threads(const RankInfo& ranks, int requested) {
  return configure_compute_threads(requested, ranks.local_size);
}

}  // namespace uniad::cli
