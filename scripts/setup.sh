#!/usr/bin/env bash
# Installs the Debian packages that uniad-cpp needs to build, test and run its demo.
# Idempotent: packages already present are left alone, and apt is not called at all
# when nothing is missing. Without root it prints the exact command to run instead.
set -euo pipefail

# What each group is for, so a reader knows why it is here.
BUILD=(build-essential cmake pkg-config git)
LIBS=(
  libtorch-dev                 # LibTorch 1.13 (CPU): model, training, backbones
  libdnnl-dev                  # oneDNN: the model's matrix products on the CPU (LibTorch links it too)
  libopenblas0-openmp          # fast BLAS for LibTorch (the reference BLAS is ~20x slower)
  openmpi-bin libopenmpi-dev   # multi-rank extraction and data-parallel training
  libhdf5-dev                  # the feature cache
  libboost-program-options-dev # the uniad command line and config files
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev  # image I/O and resizing
  nlohmann-json3-dev           # JSON metadata, logs and reports
  libxxhash-dev                # content hashes (backbone files, dataset file lists)
  libspdlog-dev libfmt-dev     # logging and formatting
)
TEST=(
  libgtest-dev googletest      # the test suite
  python3-torch python3-torchvision python3-sklearn python3-h5py python3-opencv python3-numpy python3-scipy python3-pil  # test oracles; scripts/export_backbone.py
  slurm-wlm munge              # a real single-node Slurm cluster for the job-script tests
)
PACKAGES=("${BUILD[@]}" "${LIBS[@]}" "${TEST[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: missing Debian packages: ${missing[*]}"
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: not root; run this as root, then run this script again:" >&2
    echo "  sudo sh -c '$cmd'" >&2
    exit 1
  fi
  echo "setup: installing ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
fi

# LibTorch finds BLAS through the libblas.so.3 alternative. Prefer the OpenMP OpenBLAS
# (the pthread variant, if also installed, would otherwise win and fight OpenMP threads).
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  target=/usr/lib/$arch/openblas-openmp/$lib
  if [[ -e $target && $(id -u) -eq 0 ]]; then
    current=$(update-alternatives --query "$lib-$arch" 2>/dev/null | awk '/^Value:/{print $2}')
    if [[ $current != "$target" ]]; then
      update-alternatives --set "$lib-$arch" "$target" >/dev/null
      echo "setup: $lib -> $target"
    fi
  fi
done
echo "setup: done"
