"""Where a training step's time goes: runs bench_step_profile (the trainer's own train_step at the
reference model size, batch 8 per rank) under LibTorch's profiler and groups every operator's
self time into matmul, attention softmax, dropout, LayerNorm, other element-wise work, optimiser,
clipping and gradient exchange. Prints a Markdown table per layout (rank 0's trace).

With --eval: the eval forward instead (eval mode, no gradients), one process at 1 and 2 threads.

Usage: /usr/bin/python3 bench/profile_step.py [BUILD_DIR] [--steps N] [--eval]
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

from common import MPIRUN, build_dir, markdown


# Operator (or autograd node) name -> group. The innermost operator with a group decides, so
# that a generic operator (aten::mul, aten::div_) counts for what encloses it: the div_ inside
# aten::dropout is dropout, the softmax backward inside the fused SoftmaxDropout node is softmax.
# Backward nodes are named after the forward operator (MulBackward0 is dropout's mask multiply:
# the model's other products do not need gradients); uniad::fused_dropout is the fused kernels'
# scope.
GROUPS = [
    ("matmul: attention (per-head q k^T and weights x v)", ["aten::bmm", "aten::baddbmm", "BmmBackward",
                                                             "BaddbmmBackward", "uniad::attention_product",
                                                             "AttentionProduct"]),
    ("matmul: projections and feed-forward", ["aten::linear", "aten::addmm", "aten::mm", "aten::matmul",
                                              "AddmmBackward", "MmBackward", "LinearBackward", "uniad::linear"]),
    ("softmax", ["aten::softmax", "aten::_softmax", "SoftmaxBackward", "uniad::softmax"]),
    ("dropout", ["aten::dropout", "aten::bernoulli", "MulBackward", "uniad::fused_dropout", "ReluDropout",
                 "AddDropout"]),
    ("LayerNorm", ["aten::layer_norm", "aten::native_layer_norm", "NativeLayerNormBackward", "uniad::layer_norm"]),
]
PHASES = {"uniad::exchange": "gradient exchange", "uniad::clip": "clipping", "uniad::optimizer": "optimiser"}


def group_of(chain):
    """chain: the names of an event and its enclosing events, outermost first."""
    for name in chain:
        if name in PHASES:
            return PHASES[name]
    for name in reversed(chain):
        for group, prefixes in GROUPS:
            if any(prefix in name for prefix in prefixes):
                return group
    return "other (element-wise, copies, views)"


def self_times(events):
    """Self time of every complete event ("ph": "X") by its enclosing chain, per thread."""
    totals = defaultdict(float)
    by_thread = defaultdict(list)
    for e in events:
        if e.get("ph") == "X":
            by_thread[e.get("tid")].append(e)
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, child time]
        def close(item):
            event, children = item
            chain = [s[0]["name"] for s in stack] + [event["name"]]
            totals[group_of(chain)] += event["dur"] - children
            if stack:
                stack[-1][1] += event["dur"]
        for e in thread_events:
            while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]:
                close(stack.pop())
            stack.append([e, 0.0])
        while stack:
            close(stack.pop())
    return totals


def profile(exe, ranks, threads, steps, tmp, eval_forward):
    prefix = os.path.join(tmp, f"r{ranks}t{threads}")
    command = ([*MPIRUN, "-np", str(ranks)] if ranks > 1 else []) + [
        exe, "--threads", str(threads), "--steps", str(steps)] + (["--eval"] if eval_forward else [])
    timed = [json.loads(line) for line in subprocess.run(command, check=True, capture_output=True, text=True)
             .stdout.splitlines() if line.startswith("{")]
    subprocess.run(command + ["--trace", prefix], check=True, capture_output=True)
    totals = defaultdict(float)
    traces = sorted(glob.glob(prefix + ".rank0.step*.json"))
    for path in traces:
        with open(path) as f:
            for group, microseconds in self_times(json.load(f)).items():
                totals[group] += microseconds / len(traces)
    return timed[0], totals


def main():
    steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 4
    eval_forward = "--eval" in sys.argv
    positional = [a for i, a in enumerate(sys.argv) if not a.startswith("--") and sys.argv[i - 1] != "--steps"]
    exe = os.path.join(build_dir(positional[:2]), "bench", "bench_step_profile")
    layouts = ((1, 1), (1, 2)) if eval_forward else ((2, 1), (1, 2))
    with tempfile.TemporaryDirectory() as tmp:
        for ranks, threads in layouts:
            timed, totals = profile(exe, ranks, threads, steps, tmp, eval_forward)
            step_ms = 1000 * timed["step_seconds"]
            traced = sum(totals.values())
            print(f"\n{ranks} rank(s) x {threads} thread(s): {timed['samples_per_s']:.2f} samples/s, "
                  f"{step_ms:.0f} ms per step untraced, {traced / 1000:.0f} ms traced (rank 0)")
            rows = [[group, f"{us / 1000:.1f}", f"{100 * us / traced:.1f}%"]
                    for group, us in sorted(totals.items(), key=lambda kv: -kv[1])]
            print(markdown(["part of the " + ("forward" if eval_forward else "step"), "ms (traced)", "share"], rows))


if __name__ == "__main__":
    main()
