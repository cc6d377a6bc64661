#!/usr/bin/env bash
# -DUNIAD_CUDA=ON is explicit: against a CPU-only LibTorch (Debian's 1.13) configuring fails at
# once with a message saying what is missing and how to get it, instead of building a uniad
# whose --device cuda fails later. Usage: test_cuda_option.sh SOURCE_DIR SCRATCH_DIR
set -u
src=$1 scratch=$2
debian_torch=/usr/lib/x86_64-linux-gnu/cmake/Torch
if [[ ! -f $debian_torch/TorchConfig.cmake ]]; then
  echo "SKIPPED: no CPU LibTorch at $debian_torch to configure against"
  exit 77
fi
rm -rf "$scratch"
out=$(cmake -S "$src" -B "$scratch" -DUNIAD_CUDA=ON -DUNIAD_BUILD_TESTS=OFF -DTorch_DIR="$debian_torch" 2>&1)
rc=$?
rm -rf "$scratch"
echo "$out" | tail -8
if [[ $rc -eq 0 ]]; then
  echo "FAIL: configuring -DUNIAD_CUDA=ON against a CPU LibTorch succeeded"
  exit 1
fi
if ! grep -q "is built without CUDA" <<<"$out" || ! grep -q "torch.utils.cmake_prefix_path" <<<"$out"; then
  echo "FAIL: the configure error does not say what is missing and how to get it"
  exit 1
fi
echo "PASS: refused with a clear message"
