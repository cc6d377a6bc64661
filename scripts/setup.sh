#!/usr/bin/env bash
# Installs the Debian packages that uniad-cpp needs to build, test and run its demo.
# Idempotent: packages already present are left alone, and apt is not called at all
# when nothing is missing. Without root it prints the exact command to run instead.
#
#   bash scripts/setup.sh            the build, the tests' Debian oracles and the demo
#   bash scripts/setup.sh --tests    and pip's `tensorboard` in a virtual environment, the event
#                                    files' oracle ($UNIAD_CACHE/venv-tensorboard; the build
#                                    does not need it)
set -euo pipefail
tests=0
case "${1:-}" in
  --tests) tests=1 ;;
  "") ;;
  *) echo "usage: bash scripts/setup.sh [--tests]" >&2; exit 64 ;;
esac

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
  libprotobuf-dev protobuf-compiler  # TensorBoard event files (tensorboard/event.proto)
)
TEST=(
  libgtest-dev googletest      # the test suite
  python3-torch python3-torchvision python3-sklearn python3-h5py python3-opencv python3-numpy python3-scipy python3-pil  # test oracles; scripts/export_backbone.py
  slurm-wlm munge              # a real single-node Slurm cluster for the job-script tests
  python3-venv                 # the virtual environment of the TensorBoard oracle (--tests)
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
# The TensorBoard oracle: the real reader, from PyPI (Debian has no tensorboard package).
if ((tests)); then
  cache=${UNIAD_CACHE:-/var/cache/uniad}
  venv=$cache/venv-tensorboard
  version=2.21.0
  if [[ $("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('tensorboard'))" 2>/dev/null) != "$version" ]]; then
    echo "setup: installing tensorboard==$version into $venv (the event files' test oracle)"
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --cache-dir "$cache/pip" "tensorboard==$version"
  else
    echo "setup: tensorboard $version present in $venv"
  fi
fi
echo "setup: done"
