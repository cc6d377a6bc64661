#!/usr/bin/env bash
# The one-command GPU check: every stage of uniad on a GPU against the same stage on the CPU.
#
#   scripts/gpu-check.sh OUT [--device cuda|cpu] [--bundle DIR] [--build DIR]
#
# Made for the GPU machine this project is sometimes lent (one H100 or H200, torch 2.11.0+cu130
# in python3, nvcc 13, no Debian packages, no network): scripts/gpu-bundle.sh prepares, on a
# Debian machine, the folder that travels with the working tree (default .gpu-bundle: uniad and
# test_gpu built against pip's LibTorch 2.11 with -DUNIAD_CUDA=ON, the Debian libraries they load
# that the GPU machine lacks, Open MPI, the real3-small images, the MobileNetV2 backbone and the
# parity input). `--device cpu` runs every step the same way with the CPU in the GPU's place, so
# that the script itself is tested where no GPU is (there the comparisons are trivially equal;
# that they run is what is checked). Writes OUT/gpu-check.md (a table of every check and its
# figure), OUT/gpu-check.json, and OUT/log.txt (every command and its output); exits non-zero if
# a check failed.
#
# The checks:
#   1. test_gpu (mpirun -np 2): the parity model on the device against the CPU, forward and
#      backward, within 1e-4; a one-rank NCCL communicator (average, broadcast, type checks);
#      NCCL's timeout aborting a communicator whose peer never joins;
#   2. extract real3-small on the device and on the CPU (the MobileNetV2 of ../shared, or the
#      built-in backbone where it is absent): features within 1e-4;
#   3. train on the device (compact model, 4 epochs): stopped after 2 and resumed equals the
#      uninterrupted run bitwise (parameter checksums);
#   4. eval of the device-trained run on the device and with --device cpu: image scores within 1e-4;
#   5. export, then predict on the device and on the CPU: scores within 1e-4;
#   6. speed: bench/gpu_step.py, uniad's training step and eval forward against the official
#      module on the same device in the same run (fp32 and bf16, batch 8 and 64), and 10 epochs
#      of an MVTec-size random cache end to end with the projected 1000-epoch time; its tables
#      go to OUT/gpu-speed.md and into the report.
set -uo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 64; }
[[ $# -ge 1 ]] || usage
out=$1
shift
device=cuda
repo=$(cd "$(dirname "$0")/.." && pwd)
bundle=$repo/.gpu-bundle
build=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --bundle) bundle=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) usage ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/log.txt
: >"$log"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- where things are ------------------------------------------------------------------------
# The bundle's binaries and libraries; --build DIR (a build tree) and ../shared instead when
# checking the script on a development machine.
if [[ -n $build ]]; then
  uniad=$build/launcher/uniad
  test_gpu=$build/tests/test_gpu
  step_profile=$build/bench/bench_step_profile
  shared=${UNIAD_SHARED:-$repo/../shared}
else
  [[ -d $bundle ]] || { echo "gpu-check: no bundle at $bundle (make it with scripts/gpu-bundle.sh on a Debian machine)" >&2; exit 66; }
  # shellcheck source=/dev/null
  source "$bundle/env.sh"  # unpacks the libraries once; LD_LIBRARY_PATH, OPAL_PREFIX, PATH
  uniad=$bundle/bin/uniad
  test_gpu=$bundle/bin/test_gpu
  step_profile=$bundle/bin/bench_step_profile
  shared=$bundle/shared
fi
data=$shared/data/real3-small
backbone=$shared/weights/mobilenet_v2_imagenet/features.pt
mpirun=(mpirun --allow-run-as-root --oversubscribe)
export UNIAD_SHARED=$shared
py=${PYTHON:-python3}  # with numpy and h5py (the GPU machine's python3 has both)

declare -a rows=()   # "check|result|figure" lines for the report
failed=0
record() {           # record CHECK PASS|FAIL|SKIP FIGURE
  rows+=("$1|$2|$3")
  [[ $2 == FAIL ]] && failed=1
  printf 'gpu-check: %-58s %s  %s\n' "$1" "$2" "$3"
}
run() {              # run COMMAND...: logged with its output; returns its exit code
  echo "\$ $*" >>"$log"
  "$@" >>"$log" 2>&1
  local rc=$?
  echo "[exit $rc]" >>"$log"
  return $rc
}

# Largest absolute difference of two CSV columns (joined on "path"), with Python's csv module.
csv_diff() {  # csv_diff A.csv B.csv COLUMN
  "$py" - "$@" <<'PY'
import csv, sys
a, b, col = sys.argv[1:4]
ra = {r["path"]: r for r in csv.DictReader(open(a))}
rb = {r["path"]: r for r in csv.DictReader(open(b))}
keys = [k for k in ra if ra[k].get(col)]
assert keys and set(keys) <= set(rb), "the two files score different images"
print(max(abs(float(ra[k][col]) - float(rb[k][col])) for k in keys))
PY
}
below() { "$py" -c "import sys; sys.exit(0 if float('$1') <= float('$2') else 1)"; }

echo "gpu-check: device $device, uniad $("$uniad" --version 2>&1 | head -1), output $out"
{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; echo "device: $device"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} >>"$log" 2>&1

# --- 1. test_gpu --------------------------------------------------------------------------------
name="test_gpu: parity fwd/bwd 1e-4, NCCL 1 rank, NCCL timeout"
if run timeout 300 "${mpirun[@]}" -np 2 "$test_gpu" --gtest_color=no; then
  skipped=$(sed -n '/test_gpu/,$p' "$log" | grep -c "^\[  SKIPPED \]" || true)
  if [[ $device == cpu ]]; then record "$name" SKIP "ran; its tests skip without a GPU"
  elif [[ $skipped -eq 0 ]]; then record "$name" PASS ""
  else record "$name" FAIL "$skipped test(s) skipped on the GPU"; fi
else
  record "$name" FAIL "see log.txt"
fi

# --- 2. extract on the device and on the CPU ------------------------------------------------------
# The pretrained MobileNetV2 where it is (../shared), else the built-in backbone (the bundle).
backbone_option=()
[[ -f $backbone ]] && backbone_option=(--backbone "$backbone")
common=(-q --data "$data" "${backbone_option[@]}" --dtype float32)
if run "$uniad" extract "${common[@]}" --device "$device" --out "$work/dev.h5" &&
   run "$uniad" extract "${common[@]}" --device cpu --out "$work/cpu.h5"; then
  diff=$("$py" - "$work/dev.h5" "$work/cpu.h5" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
worst = 0.0
for split in ("train", "test"):
    fa, fb = a[f"{split}/features"][...], b[f"{split}/features"][...]
    worst = max(worst, float(np.abs(fa.astype(np.float64) - fb).max()))
print(worst)
PY
)
  if [[ -n $diff ]] && below "$diff" 1e-4; then record "extract: features, device vs CPU" PASS "max |diff| $diff"
  else record "extract: features, device vs CPU" FAIL "max |diff| ${diff:-?}"; fi
else
  record "extract: features, device vs CPU" FAIL "extract failed (log.txt)"
fi
cache=$work/dev.h5

# --- 3. training on the device, stopped and resumed -----------------------------------------------
train=(-q --cache "$cache" --device "$device" --hidden 64 --heads 4 --feedforward 128 --encoder-layers 2
       --decoder-layers 2 --lr 5e-4 --batch-size 8 --checkpoint-every 1 --seed 1)
checksum() { grep -ao '"parameter_checksum":"[0-9a-f]*"' "$1" | head -1 | cut -d'"' -f4; }
start=$(date +%s.%N)
if run "$uniad" train "${train[@]}" --epochs 4 --run-dir "$work/straight"; then
  seconds=$("$py" -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  samples=$("$py" -c "import json; print(json.loads(open('$work/straight/metrics.jsonl').read().splitlines()[-1])['samples_per_s'])")
  record "train: 4 epochs on the device" PASS "${seconds} s, last epoch $samples samples/s"
  if run "$uniad" train "${train[@]}" --epochs 2 --run-dir "$work/resumed" &&
     run "$uniad" train "${train[@]}" --epochs 4 --run-dir "$work/resumed"; then
    # The checkpoint's meta (stored uncompressed) holds the checksum of every parameter's bits.
    c1=$(checksum "$work/straight/checkpoint.pt") c2=$(checksum "$work/resumed/checkpoint.pt")
    if [[ -n $c1 && $c1 == "$c2" ]]; then record "train: stopped at epoch 2 and resumed = uninterrupted" PASS "checksum $c1"
    else record "train: stopped at epoch 2 and resumed = uninterrupted" FAIL "checksums $c1 vs $c2"; fi
  else
    record "train: stopped at epoch 2 and resumed = uninterrupted" FAIL "training failed (log.txt)"
  fi
else
  record "train: 4 epochs on the device" FAIL "training failed (log.txt)"
fi

# --- 4. eval of the device-trained run, on the device and on the CPU -------------------------------
run_dir=$work/straight
if [[ -f $run_dir/checkpoint.pt ]]; then
  start=$(date +%s.%N)
  if run "$uniad" eval -q --pictures 0 --device "$device" --run "$run_dir" --cache "$cache" --out "$work/eval-dev"; then
    seconds=$("$py" -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    images=$(($(wc -l <"$work/eval-dev/scores.csv") - 1))
    record "eval on the device" PASS "$images images in ${seconds} s (whole command)"
    if run "$uniad" eval -q --pictures 0 --device cpu --run "$run_dir" --cache "$cache" --out "$work/eval-cpu"; then
      diff=$(csv_diff "$work/eval-dev/scores.csv" "$work/eval-cpu/scores.csv" score 2>>"$log")
      if [[ -n $diff ]] && below "$diff" 1e-4; then record "eval: device-trained run, device vs --device cpu" PASS "max |score diff| $diff"
      else record "eval: device-trained run, device vs --device cpu" FAIL "max |score diff| ${diff:-?}"; fi
    else
      record "eval: device-trained run, device vs --device cpu" FAIL "eval --device cpu failed (log.txt)"
    fi
  else
    record "eval on the device" FAIL "eval failed (log.txt)"
  fi

  # --- 5. export, predict on the device and on the CPU ---------------------------------------------
  if run "$uniad" export -q --device "$device" --run "$run_dir" --cache "$cache" "${backbone_option[@]}" --out "$work/model.uniad"; then
    find -L "$data" -path '*/test/*' \( -name '*.png' -o -name '*.jpg' \) | sort >"$work/images.txt"
    if run "$uniad" predict -q --device "$device" --model "$work/model.uniad" --out "$work/pred-dev" "@$work/images.txt" &&
       run "$uniad" predict -q --device cpu --model "$work/model.uniad" --out "$work/pred-cpu" "@$work/images.txt"; then
      diff=$(csv_diff "$work/pred-dev/predictions.csv" "$work/pred-cpu/predictions.csv" score 2>>"$log")
      if [[ -n $diff ]] && below "$diff" 1e-4; then record "predict: device vs CPU ($(wc -l <"$work/images.txt") images)" PASS "max |score diff| $diff"
      else record "predict: device vs CPU" FAIL "max |score diff| ${diff:-?}"; fi
    else
      record "predict: device vs CPU" FAIL "predict failed (log.txt)"
    fi
  else
    record "export" FAIL "export failed (log.txt)"
  fi
fi

# --- 6. speed against the official module on the same device ---------------------------------------
# On the CPU (checking the script) small sizes: only that every part runs is checked there.
speed=(--uniad "$uniad" --step-profile "$step_profile" --shared "$shared" --device "$device")
[[ $device == cpu ]] && speed+=(--steps 2 --batches 8 --samples 64 --test-samples 16 --epochs 2 --precisions fp32)
if run timeout 420 "$py" "$repo/bench/gpu_step.py" "${speed[@]}" --out "$out/gpu-speed.md"; then
  record "speed: step, eval and 1000-epoch projection vs the official module" PASS "tables in gpu-speed.md"
else
  record "speed: step, eval and 1000-epoch projection vs the official module" FAIL "see log.txt"
fi

# --- the report -------------------------------------------------------------------------------------
{
  echo "# uniad GPU check"
  echo
  echo "\`scripts/gpu-check.sh $out --device $device\` on $(hostname), $(date -u +%FT%TZ)."
  echo "uniad: $("$uniad" --version 2>&1 | head -1)."
  command -v nvidia-smi >/dev/null && echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)."
  echo
  echo "| check | result | figure |"
  echo "|---|---|---|"
  for row in "${rows[@]}"; do IFS='|' read -r c r f <<<"$row"; echo "| $c | $r | $f |"; done
  [[ -f $out/gpu-speed.md ]] && { echo; echo "## Speed (bench/gpu_step.py)"; echo; cat "$out/gpu-speed.md"; }
} >"$out/gpu-check.md"
"$py" - "$out/gpu-check.json" "$device" "${rows[@]}" <<'PY'
import json, sys
path, device, rows = sys.argv[1], sys.argv[2], sys.argv[3:]
checks = [dict(zip(("check", "result", "figure"), r.split("|", 2))) for r in rows]
json.dump({"device": device, "checks": checks, "passed": all(c["result"] != "FAIL" for c in checks)},
          open(path, "w"), indent=2)
PY
echo "gpu-check: report in $out/gpu-check.md"
exit $failed
