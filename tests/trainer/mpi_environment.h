#pragma once
// MPI for a whole test program: initialised before the first test, finalised after the last.
// A program started alone is a world of one rank; under `mpirun -np N` each rank runs the tests.
#include <gtest/gtest.h>
#include <mpi.h>

namespace uniad::test {

class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) MPI_Init(nullptr, nullptr);
  }
  void TearDown() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
};

}  // namespace uniad::test
