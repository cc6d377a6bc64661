# The GPU path (-DUNIAD_CUDA=ON): CUDA tensors on one GPU per rank, NCCL's gradient exchange.
#
# Included after find_package(Torch). Defines the interface target `uniad_cuda`, which every
# library with GPU code links: it carries UNIAD_WITH_CUDA, the toolkit's headers, NCCL and the
# CUDA runtime. Empty when UNIAD_CUDA is OFF (the CPU build needs none of it).
#
# One CUDA runtime per process, the one LibTorch loads: pip's torch brings its own libcudart
# (site-packages/nvidia/cu<N>/lib) and NCCL (site-packages/nvidia/nccl/lib), the LibTorch zip a
# renamed libcudart in torch/lib. Linking the toolkit's libcudart beside it would load two
# runtimes (different files, and for the zip's renamed copy, different sonames too), so the
# runtime and NCCL are taken from where LibTorch keeps them, the toolkit being the fallback.
option(UNIAD_CUDA "Build the GPU path: needs a CUDA-built LibTorch (pip's torch), the CUDA toolkit and NCCL" OFF)

add_library(uniad_cuda INTERFACE)

if(NOT UNIAD_CUDA)
  if(TORCH_CUDA_LIBRARIES)
    message(WARNING "uniad: this LibTorch is built with CUDA, but UNIAD_CUDA is OFF, so uniad runs on the CPU "
                    "only. Configure with -DUNIAD_CUDA=ON for the GPU path.")
  endif()
  message(STATUS "uniad: CPU build (the GPU path needs -DUNIAD_CUDA=ON)")
  return()
endif()

set(_uniad_how "Install pip's CUDA torch (bash scripts/setup-libtorch2.sh, or python3 -m pip install torch==2.11.0) and configure with -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')")
if(NOT TORCH_CUDA_LIBRARIES)
  message(FATAL_ERROR "uniad: -DUNIAD_CUDA=ON, but the LibTorch found (${Torch_DIR}) is built without CUDA.\n"
                      "${_uniad_how}")
endif()
if(NOT TARGET CUDA::cudart OR NOT CUDAToolkit_INCLUDE_DIRS)
  message(FATAL_ERROR "uniad: -DUNIAD_CUDA=ON, but no CUDA toolkit was found (nvcc, cuda_runtime.h). Put the "
                      "toolkit's bin/ on PATH or set -DCUDAToolkit_ROOT=/usr/local/cuda.")
endif()

# Where a pip-installed LibTorch keeps the NVIDIA wheels' libraries.
get_filename_component(_uniad_wheels "${TORCH_INSTALL_PREFIX}/../nvidia" ABSOLUTE)

# The CUDA runtime LibTorch loads: its own renamed copy, the wheel's, else the toolkit's.
file(GLOB _uniad_cudart_candidates
     "${TORCH_INSTALL_PREFIX}/lib/libcudart-*.so*"
     "${_uniad_wheels}/cu${CUDAToolkit_VERSION_MAJOR}/lib/libcudart.so.*"
     "${_uniad_wheels}/cuda_runtime/lib/libcudart.so.*")
get_target_property(_uniad_toolkit_cudart CUDA::cudart IMPORTED_LOCATION)
list(APPEND _uniad_cudart_candidates "${_uniad_toolkit_cudart}")
list(GET _uniad_cudart_candidates 0 UNIAD_CUDART_LIBRARY)
# LibTorch built for another CUDA major version than the toolkit: their headers and runtime
# would disagree.
file(GLOB _uniad_other_runtimes "${_uniad_wheels}/cu*/lib/libcudart.so.*" "${_uniad_wheels}/cuda_runtime/lib/libcudart.so.*")
foreach(_runtime IN LISTS _uniad_other_runtimes)
  if(NOT _runtime MATCHES "libcudart\\.so\\.${CUDAToolkit_VERSION_MAJOR}")
    message(FATAL_ERROR "uniad: LibTorch uses ${_runtime}, but the CUDA toolkit found is ${CUDAToolkit_VERSION} "
                        "(${CUDAToolkit_INCLUDE_DIRS}). Use a toolkit of the same major version "
                        "(-DCUDAToolkit_ROOT=...) or the torch build for this toolkit.")
  endif()
endforeach()
# LibTorch's own targets link CUDA::cudart too: point it at the same file.
set_target_properties(CUDA::cudart PROPERTIES IMPORTED_LOCATION "${UNIAD_CUDART_LIBRARY}")
# LibTorch's CMake also links the toolkit's NVRTC (CUDA_NVRTC_LIB), while libtorch_cuda loads
# the wheel's: take the wheel's, or the toolkit's lib folder in our run path would come first
# and load the toolkit's runtime as well.
file(GLOB _uniad_wheel_nvrtc "${_uniad_wheels}/cu${CUDAToolkit_VERSION_MAJOR}/lib/libnvrtc.so.*")
if(_uniad_wheel_nvrtc AND CUDA_NVRTC_LIB)
  list(TRANSFORM TORCH_LIBRARIES REPLACE "^${CUDA_NVRTC_LIB}$" "${_uniad_wheel_nvrtc}")
endif()

# NCCL: the wheel's (the one libtorch_cuda loads) before the toolkit's.
find_path(UNIAD_NCCL_INCLUDE_DIR nccl.h
          HINTS "${_uniad_wheels}/nccl/include" ${CUDAToolkit_INCLUDE_DIRS} "${CUDAToolkit_LIBRARY_ROOT}/include"
          NO_DEFAULT_PATH)
find_library(UNIAD_NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR
             HINTS "${_uniad_wheels}/nccl/lib" ${CUDAToolkit_LIBRARY_DIR} "${CUDAToolkit_LIBRARY_ROOT}/lib"
             NO_DEFAULT_PATH)
if(NOT UNIAD_NCCL_INCLUDE_DIR OR NOT UNIAD_NCCL_LIBRARY)
  message(FATAL_ERROR "uniad: -DUNIAD_CUDA=ON, but NCCL was not found (nccl.h and libnccl.so.2, looked for in "
                      "${_uniad_wheels}/nccl and the CUDA toolkit ${CUDAToolkit_LIBRARY_DIR}). Install pip's "
                      "nvidia-nccl wheel beside torch, or NCCL into the toolkit, or set -DUNIAD_NCCL_INCLUDE_DIR "
                      "and -DUNIAD_NCCL_LIBRARY.")
endif()

target_compile_definitions(uniad_cuda INTERFACE UNIAD_WITH_CUDA=1)
target_include_directories(uniad_cuda SYSTEM INTERFACE ${UNIAD_NCCL_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
target_link_libraries(uniad_cuda INTERFACE "${UNIAD_NCCL_LIBRARY}" "${UNIAD_CUDART_LIBRARY}")
message(STATUS "uniad: GPU build: CUDA ${CUDAToolkit_VERSION}, runtime ${UNIAD_CUDART_LIBRARY}, NCCL ${UNIAD_NCCL_LIBRARY}")
