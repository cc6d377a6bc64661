#!/usr/bin/python3
"""Keeps the small files of a sweep's finished runs in the repository, so that a sweep longer
than a session survives the loss of its experiment folder.

  /usr/bin/python3 scripts/keep_finished_runs.py EXP/SWEEP docs/results/SWEEP/finished

Copies SWEEP's sweep.ini and sweep.json and, for every run with an evaluation (RUN/eval/report.json),
its config.json, metrics.jsonl, train.log and eval/report.{json,md}: the leaderboard's and the
curves' inputs, no checkpoints or caches. To resume the sweep from them on a fresh machine:

  mkdir -p EXP/SWEEP && cp -r docs/results/SWEEP/finished/. EXP/SWEEP/
  uniad sweep --spec sweeps/SWEEP.ini --cache CACHE --out EXP/SWEEP     # skips the kept runs

(`uniad sweep` skips a run whose eval/report.json exists, sweep/execute.cpp.)
"""
import os
import shutil
import sys

RUN_FILES = ["config.json", "metrics.jsonl", "train.log", "eval/report.json", "eval/report.md"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sweep, dest = sys.argv[1:3]
    os.makedirs(dest, exist_ok=True)
    for name in ("sweep.ini", "sweep.json"):
        shutil.copy(os.path.join(sweep, name), os.path.join(dest, name))
    kept = 0
    for root, _, files in sorted(os.walk(sweep)):
        if os.path.basename(root) != "eval" or "report.json" not in files:
            continue
        run = os.path.dirname(root)
        for name in RUN_FILES:
            source = os.path.join(run, name)
            if os.path.exists(source):
                target = os.path.join(dest, os.path.relpath(source, sweep))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy(source, target)
        kept += 1
    print(f"kept {kept} finished run(s) of {sweep} in {dest}")


if __name__ == "__main__":
    main()
