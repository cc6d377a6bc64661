#!/usr/bin/env bash
# Submits a sweep to Slurm: a thin wrapper of `uniad sweep --backend slurm` (docs/sweeps.md),
# which submits one job array (a task per run not yet evaluated, requeued when preempted) and
# a report job after it, and prints both job ids.
#
#   slurm/submit_sweep.sh SPEC.ini CACHE.h5 OUT_DIR [uniad sweep options: --array-limit N, --sbatch time=4:00:00 ...]
# Environment: UNIAD (the uniad executable, default: uniad on PATH); UNIAD_MPI (srun's MPI
# plugin inside the tasks, default pmix).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: slurm/submit_sweep.sh SPEC.ini CACHE.h5 OUT_DIR [uniad sweep options]" >&2
  exit 64
fi
spec=$1 cache=$2 out=$3
shift 3
exec "${UNIAD:-uniad}" sweep --backend slurm --spec "$spec" --cache "$cache" --out "$out" "$@"
