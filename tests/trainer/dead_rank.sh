#!/usr/bin/env bash
# Starts a 2-rank training, kills one rank with SIGKILL, and reports how long the job took
# to end (or HUNG after 60 s). Usage: dead_rank.sh UNIAD CACHE RUN_DIR
uniad=$1 cache=$2 run=$3
mpirun --allow-run-as-root --oversubscribe -np 2 "$uniad" train --cache "$cache" --run-dir "$run" \
  --hidden 32 --heads 4 --feedforward 64 --encoder-layers 1 --decoder-layers 2 --threads 1 -q \
  --epochs 100000 --batch-size 2 > "$run.log" 2>&1 &
launcher=$!
ranks() { for p in $(pgrep -x uniad); do grep -qa -- "$run" /proc/$p/cmdline 2>/dev/null && echo $p; done; }
for _ in $(seq 1 40); do [ "$(ranks | wc -l)" -ge 2 ] && break; sleep 0.5; done
sleep 3  # let them train
victim=$(ranks | tail -1)
[ -n "$victim" ] || { echo "NO_RANKS"; exit 1; }
kill -KILL "$victim"
start=$(date +%s)
while kill -0 $launcher 2>/dev/null || [ -n "$(ranks)" ]; do
  sleep 0.5
  if [ $(( $(date +%s) - start )) -gt 60 ]; then echo HUNG; kill -KILL $launcher $(ranks) 2>/dev/null; exit 1; fi
done
wait $launcher
echo "mpirun_exit=$? waited=$(( $(date +%s) - start ))"
