"""The training step and the eval forward beside the reference implementation, in one run.

uniad: bench_step_profile (the trainer's own train_step: forward, MSE, backward, MPI gradient
exchange, clipping, AdamW; with --eval the eval forward as `uniad eval` runs it), median step as
the reference reports it. Reference: the official UniAD module
timed by ../shared/reference/bench_reference.py in the same layouts. Both at the reference model
size (272 channels, 14x14, hidden 256, 8 heads, FFN 1024, 4+4 layers, dropout 0.1, jitter),
batch 8 per rank, median step. The sgemm peak (OpenBLAS through torch, the best of a few
shapes) is measured in the same run, so "% of peak" = GFLOP/s of the step / that peak.

These VMs' speed drifts by tens of percent within minutes, so each layout runs in R rounds,
reference then uniad back to back, and the table gives the median of each side over the rounds
and the median of the per-round ratios with their range: a ratio of two runs a few seconds
apart, not of two moments minutes apart.

Then, for each training layout, the step once more under LibTorch's profiler (bench/profile_step.py):
the time rank 0 spends in matrix products alone gives the ceiling of "% of peak" for a step
whose every other operation took no time at all (a step's FLOPs are nearly all products).

Usage: /usr/bin/python3 bench/step.py [BUILD_DIR] [SHARED_DIR] [--steps N] [--rounds R]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from common import MPIRUN, build_dir, markdown, python, run_with_peak_memory
from profile_step import profile

GFLOP_PER_SAMPLE = {"train": 10.1845, "eval": 3.4039}  # bench_reference.py's figures

SGEMM_PEAK = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
best = 0
for m, k, n in ((1568, 256, 1024), (1568, 1024, 256), (2048, 2048, 2048)):
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    reps, t = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
print(json.dumps({"gflop_per_s": best}))
"""


def first_json(text):
    return json.loads(next(line for line in text.splitlines() if line.startswith("{")))


def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main():
    steps = option("--steps", "10")
    rounds = int(option("--rounds", "3"))
    args = [a for i, a in enumerate(sys.argv[1:], 1)
            if not a.startswith("--") and sys.argv[i - 1] not in ("--steps", "--rounds")]
    build = build_dir([None] + args[:1])
    shared = args[1] if len(args) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared")
    reference = [python(), os.path.join(shared, "reference", "bench_reference.py"), "--steps", steps]
    step_exe = os.path.join(build, "bench", "bench_step_profile")

    def sgemm(threads):
        out = subprocess.run([python(), "-c", SGEMM_PEAK, str(threads)], check=True, capture_output=True, text=True)
        return first_json(out.stdout)["gflop_per_s"]

    peak = {t: max(sgemm(t) for _ in range(rounds)) for t in (1, 2)}  # a peak: the best of the rounds
    print(f"sgemm peak (OpenBLAS via torch, this run): {peak[1]:.0f} GFLOP/s on 1 thread, {peak[2]:.0f} on 2")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}\n")

    layouts = [
        ("train", "2 ranks x 1 thread", 2,
         reference + ["--mode", "train-ddp", "--ranks", "2"],
         MPIRUN + ["-np", "2", step_exe, "--threads", "1", "--steps", steps]),
        ("train", "1 process x 2 threads", 2,
         reference + ["--mode", "train", "--threads", "2"],
         [step_exe, "--threads", "2", "--steps", steps]),
        ("eval", "1 thread", 1, reference + ["--mode", "eval", "--threads", "1"],
         [step_exe, "--eval", "--threads", "1", "--steps", steps]),
        ("eval", "2 threads", 2, reference + ["--mode", "eval", "--threads", "2"],
         [step_exe, "--eval", "--threads", "2", "--steps", steps]),
    ]
    rows = []
    for kind, layout, cores, reference_command, uniad_command in layouts:
        refs, ours, ratios, ref_mem, ours_mem = [], [], [], 0, 0
        for _ in range(rounds):
            ref_out, mem = run_with_peak_memory(reference_command)
            ref_mem = max(ref_mem, mem)
            ours_out, mem = run_with_peak_memory(uniad_command)
            ours_mem = max(ours_mem, mem)
            refs.append(first_json(ref_out)["samples_per_s"])
            ours.append(first_json(ours_out)["samples_per_s"])
            ratios.append(ours[-1] / refs[-1])
        ref, mine = statistics.median(refs), statistics.median(ours)
        pct = lambda s: 100 * s * GFLOP_PER_SAMPLE[kind] / peak[cores]
        rows.append([kind, layout, f"{ref:.2f}", f"{mine:.2f}",
                     f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                     f"{pct(ref):.0f}%", f"{pct(mine):.0f}%", f"{ref_mem:.0f}", f"{ours_mem:.0f}"])
    print(f"{rounds} round(s) per layout, reference then uniad in each; medians over the rounds\n")
    print(markdown(["work", "layout", "reference samples/s", "uniad samples/s", "ratio (range over rounds)",
                    "reference % of sgemm peak", "uniad % of sgemm peak",
                    "reference peak RSS MiB", "uniad peak RSS MiB"], rows))

    bounds = []
    for ranks, threads in ((2, 1), (1, 2)):
        with tempfile.TemporaryDirectory() as tmp:
            timed, totals = profile(step_exe, ranks, threads, int(steps), tmp, eval_forward=False)
        products_ms = sum(us for group, us in totals.items() if group.startswith("matmul")) / 1000
        gflop = GFLOP_PER_SAMPLE["train"] * timed["batch"] * ranks  # one step of every rank
        ceiling = gflop / (products_ms / 1000) / peak[ranks * threads]
        bounds.append([f"{ranks} rank(s) x {threads} thread(s)", f"{1000 * timed['step_seconds']:.0f}",
                       f"{sum(totals.values()) / 1000:.0f}", f"{products_ms:.0f}", f"{100 * ceiling:.0f}%"])
    print("\nThe training step's matrix products alone (traced, rank 0; the ceiling of % of the sgemm peak)\n")
    print(markdown(["layout", "step ms (untraced)", "step ms (traced)", "products ms (traced)",
                    "ceiling: % of sgemm peak with nothing but the products"], bounds))


if __name__ == "__main__":
    main()
