// The tests' main: gtest's, after choosing OpenBLAS's fast kernels as the uniad executable does
// (common/blas.h), so that in-process model and trainer tests run at the speed uniad runs.
#include <gtest/gtest.h>

#include "common/blas.h"

int main(int argc, char** argv) {
  uniad::use_fast_blas_kernels(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
