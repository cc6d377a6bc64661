#!/usr/bin/env bash
# The second LibTorch line: pip's torch (CUDA-enabled, with its NVIDIA wheels) in a virtual
# environment outside the repository, for the GPU build (-DUNIAD_CUDA=ON) and for running the
# test suite against LibTorch 2.x. Idempotent: an environment that already holds the version
# is reused. Prints the CMake prefix to configure with, on its last line.
#
#   bash scripts/setup-libtorch2.sh            -> /var/cache/uniad/venv-torch-2.11.0
#   cmake -S . -B build-gpu -DUNIAD_CUDA=ON -DCMAKE_PREFIX_PATH="$(bash scripts/setup-libtorch2.sh | tail -1)"
#
# Environment: UNIAD_CACHE (default /var/cache/uniad) holds the environment and pip's download
# cache; UNIAD_TORCH_VERSION (default 2.11.0, the version on the GPU machines we use).
set -euo pipefail
cache=${UNIAD_CACHE:-/var/cache/uniad}
version=${UNIAD_TORCH_VERSION:-2.11.0}
venv=$cache/venv-torch-$version
python=${PYTHON:-python3}

mkdir -p "$cache"
installed() {  # the version, read from the package's metadata (importing torch takes seconds)
  "$venv/bin/python" -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null
}
if [[ ! -x $venv/bin/python || $(installed) != "$version" ]]; then
  if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    # Debian's python3 keeps venv and ensurepip in python3-venv.
    if [[ $(id -u) -ne 0 ]]; then
      echo "setup-libtorch2: $python has no venv module; as root: apt-get install python3-venv" >&2
      exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
  fi
  echo "setup-libtorch2: installing torch==$version into $venv (pip cache $cache/pip)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --cache-dir "$cache/pip" "torch==$version" >&2
fi
PYTHONWARNINGS=ignore "$venv/bin/python" - <<'PY'
import sys, torch
print(f"setup-libtorch2: torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
      file=sys.stderr)
print(torch.utils.cmake_prefix_path)
PY
