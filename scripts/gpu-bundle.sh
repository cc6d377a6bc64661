#!/usr/bin/env bash
# Prepares, on a Debian machine of this project, the folder scripts/gpu-check.sh needs on the
# lent GPU machine (python3 with torch 2.11.0+cu130 and its NVIDIA wheels, nvcc, CMake; no
# Debian packages, no network; at most 64 MiB travel with the working tree):
#
#   scripts/gpu-bundle.sh [BUILD_DIR] [OUT]     (defaults: build-gpu, .gpu-bundle)
#
# What travels, and why this way: building uniad there would need the headers and libraries of
# Boost, HDF5, Open MPI, OpenCV, spdlog, fmt, oneDNN, ... which that machine lacks, so uniad and
# test_gpu are built here, against pip's LibTorch 2.11.0+cu130 (the version there) with
# -DUNIAD_CUDA=ON, and travel with the Debian libraries they load, minus LibTorch and the NVIDIA
# libraries (env.sh takes those from the machine's own torch) and glibc and libstdc++ (newer
# there). OpenBLAS, which only OpenCV's core links (uniad never calls BLAS through it), is
# replaced by Debian's reference BLAS and LAPACK (real libraries, a fraction of the size). Open
# MPI travels whole (mpirun, orted, its plugins and PMIx's, relocated with OPAL_PREFIX and
# PMIX_INSTALL_PREFIX). The libraries go in one xz archive that env.sh unpacks on first use.
# Data: real3-small and the parity file's input (not its 31 MB of weights: test_gpu then compares
# CUDA with the CPU on seeded weights). No backbone file: gpu-check then extracts with the
# built-in random-feature backbone, whose convolutions run on the GPU all the same (the 8.6 MB
# MobileNetV2 would take the bundle over the limit). Prints every part's size.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build-gpu}
out=${2:-$repo/.gpu-bundle}
shared=${UNIAD_SHARED:-$repo/../shared}
oracle=/usr/bin/python3  # Debian's, with h5py

grep -q "UNIAD_CUDA:BOOL=ON" "$build/CMakeCache.txt" 2>/dev/null ||
  { echo "gpu-bundle: $build is not a GPU build (cmake -DUNIAD_CUDA=ON, README 'On a GPU cluster')" >&2; exit 64; }
cmake --build "$build" --target uniad test_gpu bench_step_profile -j2 >/dev/null
rm -rf "$out"
mkdir -p "$out/bin" "$out/stage/lib" "$out/shared/data" "$out/shared/parity"

# Binaries.
cp "$build/launcher/uniad" "$build/tests/test_gpu" "$build/bench/bench_step_profile" "$out/bin/"
strip --strip-unneeded "$out/bin/uniad" "$out/bin/test_gpu" "$out/bin/bench_step_profile"

# The libraries the binaries and Open MPI's plugins load, by NEEDED closure (ldd resolves them
# here; the GPU machine resolves them through LD_LIBRARY_PATH).
skip='venv-torch|site-packages|/usr/local/cuda|/libc\.so|/libm\.so|/libstdc\+\+|/libgcc_s|ld-linux|/libpthread|/libdl\.so|/librt\.so|/libresolv|/libblas\.so|/liblapack\.so|/libopenblas'
mpi_lib=/usr/lib/x86_64-linux-gnu/openmpi/lib
pmix_lib=/usr/lib/x86_64-linux-gnu/pmix2/lib
objects=("$out/bin/uniad" "$out/bin/test_gpu" "$out/bin/bench_step_profile" /usr/bin/orterun /usr/bin/orted
         $(find "$mpi_lib/openmpi3" "$pmix_lib/pmix" -name '*.so' 2>/dev/null))
for object in "${objects[@]}"; do ldd "$object" 2>/dev/null | awk '/=> \//{print $3}'; done | sort -u |
  grep -Ev "$skip" | while read -r lib; do cp -Ln "$lib" "$out/stage/lib/"; done

# Reference BLAS and LAPACK in place of OpenBLAS.
debs=$(mktemp -d)
(cd "$debs" && apt-get download libblas3 liblapack3 >/dev/null 2>&1)
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$debs/root"; done
cp -L "$debs"/root/usr/lib/x86_64-linux-gnu/blas/libblas.so.3 "$debs"/root/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3 "$out/stage/lib/"
rm -rf "$debs"

# Open MPI and PMIx, in their own layout under a prefix (OPAL_PREFIX / PMIX_INSTALL_PREFIX).
mkdir -p "$out/stage/mpi/bin" "$out/stage/mpi/lib/x86_64-linux-gnu/openmpi/lib" "$out/stage/mpi/share" \
         "$out/stage/mpi/lib/x86_64-linux-gnu/pmix2/lib"
cp -L /usr/bin/orterun /usr/bin/orted "$out/stage/mpi/bin/"
ln -s orterun "$out/stage/mpi/bin/mpirun"
cp -rL "$mpi_lib/openmpi3" "$out/stage/mpi/lib/x86_64-linux-gnu/openmpi/lib/"
[[ -d $pmix_lib/pmix ]] && cp -rL "$pmix_lib/pmix" "$out/stage/mpi/lib/x86_64-linux-gnu/pmix2/lib/"
cp -rL /usr/share/openmpi "$out/stage/mpi/share/"
[[ -d /usr/share/pmix ]] && cp -rL /usr/share/pmix "$out/stage/mpi/share/"

unpacked=$(du -sm "$out/stage" | cut -f1)
tar -C "$out/stage" -cf - . | xz -T0 -6 >"$out/libs.tar.xz"
rm -rf "$out/stage"

# Data.
cp -r "$shared/data/real3-small" "$out/shared/data/"
cp -r "$shared/reference" "$out/shared/"  # the official module, for bench/gpu_step.py
"$oracle" - "$shared/parity/uniad_official_eval.h5" "$out/shared/parity/uniad_official_eval.h5" <<'PY'
import sys, h5py
src, dst = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "w")
src.copy("/inputs", dst)  # the input only; test_gpu uses seeded weights when /params is absent
PY

cat >"$out/env.sh" <<'SH'
# Sourced by scripts/gpu-check.sh on the GPU machine: unpacks the libraries once, then points the
# loader at them, at the machine's own LibTorch and NVIDIA wheels, and Open MPI at its prefix.
bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -d $bundle/run ]] || { mkdir -p "$bundle/run" && xz -dc "$bundle/libs.tar.xz" | tar -C "$bundle/run" -xf -; }
site=$("${UNIAD_TORCH_PYTHON:-python3}" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)
nvidia=$(find "$site/nvidia" -maxdepth 2 -name lib -type d 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$bundle/run/lib:$site/torch/lib:${nvidia}${LD_LIBRARY_PATH:-}"
export OPAL_PREFIX=$bundle/run/mpi PMIX_INSTALL_PREFIX=$bundle/run/mpi
export PATH="$bundle/run/mpi/bin:$PATH"
export OMPI_MCA_mca_base_component_show_load_errors=0
SH

echo "gpu-bundle: $out"
echo "  libraries and Open MPI: ${unpacked} MB unpacked, $(du -m "$out/libs.tar.xz" | cut -f1) MB as libs.tar.xz"
echo "  binaries: $(du -cm "$out/bin"/* | tail -1 | cut -f1) MB; data: $(du -sm "$out/shared" | cut -f1) MB"
echo "  all that travels: $(du -sm "$out" | cut -f1) MB (the device tool carries 64 MiB with the working tree)"
