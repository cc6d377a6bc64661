#!/usr/bin/env bash
# Submits a sweep: one array task per run (slurm/sweep.sbatch) and, when all succeeded, a
# report job that aggregates the runs: per configuration over its seeds, and each
# configuration against the first one (the runs named CONFIG_sSEED in the sweep file).
#
#   slurm/submit_sweep.sh SWEEP_FILE CACHE.h5 OUT_DIR [extra sbatch options]
# Prints the array job id and the report job id.
set -euo pipefail
sweep=$1 cache=$2 out=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
names=$(grep -v '^[[:space:]]*#' "$sweep" | grep -v '^[[:space:]]*$' | awk '{print $1}')
runs=$(echo "$names" | wc -l)
array=$(sbatch --parsable --array=0-$((runs - 1)) --chdir="$out" "$@" "$here/sweep.sbatch" "$(realpath "$sweep")" \
  "$(realpath "$cache")" "$(realpath "$out")")
# Configurations are the names without their _sSEED suffix; the first one is the baseline.
configs=$(echo "$names" | sed 's/_s[0-9]*$//' | awk '!seen[$0]++')
baseline=$(echo "$configs" | head -1)
runs_of() { echo "$names" | grep -E "^$1(_s[0-9]+)?$" | sed "s|^|$(realpath "$out")/|" | paste -sd, -; }
report="set -e"
for config in $configs; do
  report="$report; ${UNIAD:-uniad} report --runs $(runs_of "$config") --out $(realpath "$out")/report-$config"
  if [ "$config" != "$baseline" ]; then
    report="$report; ${UNIAD:-uniad} report --runs $(runs_of "$baseline"),$(runs_of "$config") --out $(realpath "$out")/compare-$config"
  fi
done
job=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes --ntasks=1 --chdir="$out" \
  --output=uniad-report-%j.out "$@" --wrap "$report")
echo "array job $array ($runs runs), report job $job"
