#!/usr/bin/env bash
# Real Slurm jobs on a single-node cluster started for this test (tests/slurm/cluster.sh):
#  1. slurm/train.sbatch trains on 2 tasks with srun (Open MPI over PMIx) and completes;
#  2. a running job signalled like a preemption (SIGUSR1 to its steps) checkpoints, exits 75,
#     is requeued by the script, resumes, and finishes with every epoch logged once;
#  3. `uniad sweep --backend slurm` (through slurm/submit_sweep.sh) submits a job array with a %
#     limit and a report job; one task is preempted, requeued and resumes; the leaderboard is
#     complete, a submission while queued is refused, a finished sweep submits nothing.
# Usage: test_slurm.sh UNIAD SOURCE_DIR
set -euo pipefail
uniad=$1 source=$2
# Exit 77 = skipped (ctest's SKIP_RETURN_CODE): shown as skipped, never as passed.
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  echo "SKIPPED: slurm-wlm and munge are not installed (scripts/setup.sh installs them)"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: starting the Slurm and munge daemons needs root"
  exit 77
fi
work=$(mktemp -d /tmp/uniad-slurm-XXXXXX)
cleanup() {
  if [ -n "${SLURM_CONF:-}" ]; then scancel --user=root 2> /dev/null || true; fi
  bash "$source/tests/slurm/cluster.sh" stop "$work/cluster"
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash "$source/tests/slurm/cluster.sh" start "$work/cluster")"
export UNIAD=$uniad
cd "$work"

fail() { echo "FAILED: $*"; for f in "$work"/*.out "$work"/sweep\ it\'s/slurm/*.out; do [ -f "$f" ] && { echo "== $f"; tail -30 "$f"; }; done; exit 1; }
state() { scontrol show job "$1" 2> /dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_state() {  # JOB STATE... (up to 480 s)
  local job=$1; shift
  for _ in $(seq 1 960); do
    local s; s=$(state "$job")
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    case $s in FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) fail "job $job ended $s (waiting for $*)";; esac
    sleep 0.5
  done
  fail "job $job still $(state "$job") after 480 s (waiting for $*)"
}

"$uniad" synth --out data --classes 2 --train-good 10 --test-good 3 --test-anomalous 4 --image-size 96 -q > /dev/null
"$uniad" extract --data data --out cache.h5 -q > /dev/null
small="--hidden 32 --heads 4 --feedforward 64 --encoder-layers 1 --decoder-layers 1 --batch-size 2"

echo "== 1. a training job on 2 tasks"
job=$(sbatch --parsable --output="$work/train-%j.out" "$source/slurm/train.sbatch" cache.h5 run1 --epochs 3 -q $small)
wait_state "$job" COMPLETED
grep -q "trained 3 epochs" "$work/train-$job.out" || fail "no 'trained 3 epochs' in the job output"
grep -q '"world_size": 2' run1/config.json || fail "the job did not train on 2 ranks"
echo "ok: job $job completed on 2 ranks"

echo "== 2. preemption: signal, checkpoint, exit 75, requeue, resume"
job=$(sbatch --parsable --output="$work/preempt-%j.out" "$source/slurm/train.sbatch" cache.h5 run2 --epochs 150 \
  --checkpoint-every 0 $small)
for _ in $(seq 1 240); do [ -f run2/metrics.jsonl ] && [ "$(wc -l < run2/metrics.jsonl)" -ge 3 ] && break; sleep 0.5; done
[ -f run2/metrics.jsonl ] || fail "the preemption job never started training"
scancel --signal=USR1 "$job"
for _ in $(seq 1 240); do grep -q "requeueing" "$work/preempt-$job.out" 2> /dev/null && break; sleep 0.5; done
grep -q "requeueing" "$work/preempt-$job.out" || fail "the job did not checkpoint and requeue after SIGUSR1"
scontrol release "$job" 2> /dev/null || true  # requeued jobs may be held
wait_state "$job" COMPLETED
grep -q "restart 1" "$work/preempt-$job.out" || fail "the job did not run a second time"
grep -q "resuming" "$work/preempt-$job.out" || fail "the second run did not resume from the checkpoint"
grep -q "trained 150 epochs" "$work/preempt-$job.out" || fail "the resumed run did not finish"
[ "$(wc -l < run2/metrics.jsonl)" -eq 150 ] || fail "metrics.jsonl has $(wc -l < run2/metrics.jsonl) lines, not 150"
echo "ok: job $job was preempted, requeued and resumed to the end"

echo "== 3. uniad sweep --backend slurm: a job array (%2) and its report job, one task preempted"
# The local sweep test's spec (tests/e2e/test_sweep.cpp: 2 x 2 grid x 2 seeds of a tiny model),
# with epochs enough to preempt a task while it trains.
cat > sweep.ini <<SPEC
[sweep]
seeds = 0, 1
rank-by = pixel_auroc
threads = 1
array-limit = 2
[train]
epochs = 40
checkpoint-every = 0
batch-size = 4
heads = 4
feedforward = 64
encoder-layers = 1
decoder-layers = 1
[eval]
pictures = 0
[grid]
lr = 1e-4, 1e-3
hidden = 16, 32
[slurm]
time = 30
SPEC
out="$work/sweep it's"  # the job scripts must quote what a shell would split or expand
submitted=$(bash "$source/slurm/submit_sweep.sh" sweep.ini cache.h5 "$out" --sbatch time=20)
echo "$submitted"
array=$(echo "$submitted" | sed -n 's/^array job \([0-9]*\) .*/\1/p')
report=$(echo "$submitted" | sed -n 's/.*report job \([0-9]*\) .*/\1/p')
[ -n "$array" ] && [ -n "$report" ] || fail "no job ids in: $submitted"
scontrol show job "$array" | grep -q "ArrayTaskThrottle=2" || fail "the array has no %2 limit"
scontrol show job "$array" | grep -q "TimeLimit=00:20:00" || fail "--sbatch time=20 did not reach the array"
if "$uniad" sweep --spec sweep.ini --cache cache.h5 --out "$out" --backend slurm > again.txt 2>&1; then
  fail "a second submission while the first is queued was accepted"
fi
grep -q "still queued or running" again.txt || fail "the second submission was refused without saying why: $(cat again.txt)"
# Preempt task 0 (lr=1e-4,hidden=16/seed=0) once its training is under way.
run0="$out/lr=1e-4,hidden=16/seed=0"
metrics="$run0/metrics.jsonl"
for _ in $(seq 1 240); do [ -f "$metrics" ] && [ "$(wc -l < "$metrics")" -ge 3 ] && break; sleep 0.5; done
[ -f "$metrics" ] || fail "task 0 never started training"
scancel --signal=USR1 "${array}_0" || true  # may report "try again later" yet deliver the signal
task_out="$out/slurm/task-${array}_0.out"
for _ in $(seq 1 240); do grep -q "requeueing" "$task_out" 2> /dev/null && break; sleep 0.5; done
grep -q "requeueing" "$task_out" || fail "task 0 did not checkpoint and requeue after SIGUSR1"
# (Slurm starts a requeued job again after a delay of about two minutes: the node cleans up first.)
wait_state "$report" COMPLETED
grep -q "restart 1" "$task_out" || fail "task 0 did not run a second time"
grep -q "resuming" "$run0/train.log" || fail "the requeued task did not resume from its checkpoint"
[ "$(wc -l < "$metrics")" -eq 40 ] || fail "task 0's metrics.jsonl has $(wc -l < "$metrics") lines, not 40"
for lr in 1e-4 1e-3; do for hidden in 16 32; do for seed in 0 1; do
  [ -f "$out/lr=$lr,hidden=$hidden/seed=$seed/eval/report.json" ] || fail "run lr=$lr,hidden=$hidden/seed=$seed was not evaluated"
done; done; done
[ "$(grep -c '| 2/2 ' "$out/leaderboard.md")" -eq 4 ] || fail "the leaderboard does not rank 4 configurations over 2 seeds each"
grep -q "## Not evaluated" "$out/leaderboard.md" && fail "the leaderboard lists runs as not evaluated"
"$uniad" sweep --spec sweep.ini --cache cache.h5 --out "$out" --backend slurm > again.txt 2>&1 || fail "re-submission failed"
grep -q "nothing to submit" again.txt || fail "a finished sweep was submitted again: $(cat again.txt)"
echo "ok: sweep array, preemption and requeue of one task, report job"
echo "slurm: 3 passed, 0 failed"
