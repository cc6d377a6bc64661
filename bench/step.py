"""The training step and the eval forward beside the reference implementation, in one run.

uniad: bench_step_profile (the trainer's own train_step: forward, MSE, backward, MPI gradient
exchange, clipping, AdamW) and bench_model (eval forward). Reference: the official UniAD module
timed by ../shared/reference/bench_reference.py in the same layouts. Both at the reference model
size (272 channels, 14x14, hidden 256, 8 heads, FFN 1024, 4+4 layers, dropout 0.1, jitter),
batch 8 per rank, median step. The sgemm peak (OpenBLAS through torch, the best of a few
shapes) is measured in the same run, so "% of peak" = GFLOP/s of the step / that peak.

Usage: /usr/bin/python3 bench/step.py [BUILD_DIR] [SHARED_DIR] [--steps N]
"""
import json
import os
import subprocess
import sys

from common import MPIRUN, build_dir, markdown, python, run_with_peak_memory

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


def main():
    steps = sys.argv[sys.argv.index("--steps") + 1] if "--steps" in sys.argv else "10"
    args = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and sys.argv[i - 1] != "--steps"]
    build = build_dir([None] + args[:1])
    shared = args[1] if len(args) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared")
    reference = [python(), os.path.join(shared, "reference", "bench_reference.py"), "--steps", steps]
    step_exe = os.path.join(build, "bench", "bench_step_profile")
    model_exe = os.path.join(build, "bench", "bench_model")

    peak = {t: first_json(subprocess.run([python(), "-c", SGEMM_PEAK, str(t)], check=True, capture_output=True,
                                         text=True).stdout)["gflop_per_s"] for t in (1, 2)}
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
         [model_exe, "--threads", "1", "--steps", steps]),
        ("eval", "2 threads", 2, reference + ["--mode", "eval", "--threads", "2"],
         [model_exe, "--threads", "2", "--steps", steps]),
    ]
    rows = []
    for kind, layout, cores, reference_command, uniad_command in layouts:
        ref_out, ref_mem = run_with_peak_memory(reference_command)
        ours_out, ours_mem = run_with_peak_memory(uniad_command)
        ref = first_json(ref_out)["samples_per_s"]
        ours = first_json(ours_out)["samples_per_s" if kind == "train" else "eval_samples_per_s"]
        machine_peak = peak[cores]
        pct = lambda s: 100 * s * GFLOP_PER_SAMPLE[kind] / machine_peak
        rows.append([kind, layout, f"{ref:.2f}", f"{ours:.2f}", f"{ours / ref:.2f}x",
                     f"{pct(ref):.0f}%", f"{pct(ours):.0f}%", f"{ref_mem:.0f}", f"{ours_mem:.0f}"])
    print(markdown(["work", "layout", "reference samples/s", "uniad samples/s", "ratio",
                    "reference % of sgemm peak", "uniad % of sgemm peak",
                    "reference peak RSS MiB", "uniad peak RSS MiB"], rows))


if __name__ == "__main__":
    main()
