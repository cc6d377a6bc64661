"""The training step on one GPU beside the official module, in one run (issue 27).

Four parts, each a table:
  1. The training step at the reference size (272 channels, 14 x 14, hidden 256, 8 heads, FFN
     1024, 4+4 layers, dropout 0.1, jitter), batch 8 and 64, fp32 and bf16: uniad's own
     train_step (bench_step_profile --device D --precision P) against the official module's step
     (../shared/reference, built by its own constructor) in fp32 and under
     torch.autocast(bfloat16), median step between device syncs. Also the ratios the issue's
     targets are stated in (uniad fp32 / reference fp32, uniad bf16 / reference bf16).
  2. The eval forward in float32 (anomaly map upsampled to 224 x 224), at the largest batch:
     uniad against the reference's forward in eval mode.
  3. End to end: `uniad train` for E epochs of an MVTec-size random cache (3,629 x 272 x 14 x 14
     float16, resident on the device), batch 64: samples/s over the epochs after the first,
     achieved TFLOP/s (10.18 GFLOP per sample and step, bench_reference.py's count), the
     fraction of the GPU's dense bf16 peak, and the projected wall time of 1000 epochs.
  4. `uniad eval` of that run on the cache's test split: images/s.

Usage: python3 bench/gpu_step.py [--build DIR | --uniad BIN --step-profile BIN] [--shared DIR]
                                 [--device cuda|cpu] [--steps N] [--epochs E] [--samples N]
                                 [--batches 8,64] [--precisions fp32,bf16] [--out FILE.md]
--device cpu with small --samples / --epochs checks every part on a machine without a GPU
(the figures then mean nothing for the GPU).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import random_feature_cache  # noqa: E402

GFLOP_PER_SAMPLE = {"train": 10.1845, "eval": 3.4039}  # bench_reference.py's counts
# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, by the device name's model.
BF16_PEAK_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H200": 989.4, "A100": 312.0,
                    "L40S": 362.05}


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def first_json(text):
    return json.loads(next(line for line in text.splitlines() if line.startswith("{")))


def reference_step_seconds(shared, device, precision, batch, steps, eval_forward=False):
    """Median step of the official module on `device` (fp32, or under torch.autocast(bfloat16))."""
    import torch
    sys.path[:0] = [os.path.join(shared, "reference"), os.path.join(shared, "reference", "UniAD"),
                    os.path.join(shared, "reference", "einops041")]
    from bench_reference import reference_model  # the reference's own constructor, MVTec config
    torch.manual_seed(0)
    model = reference_model().to(device)
    x = torch.randn(batch, 272, 14, 14, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    mse = torch.nn.MSELoss()
    autocast = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")
    sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)

    def train_step():
        with autocast():
            out = model({"feature_align": x})
            loss = mse(out["feature_rec"].float(), out["feature_align"].float())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()

    def eval_step():
        with torch.no_grad(), autocast():
            model({"feature_align": x})  # its forward computes the map and upsamples it to 224

    model.train(not eval_forward)
    step = eval_step if eval_forward else train_step
    times = []
    for i in range(2 + steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def reference_or_none(*args, **kwargs):
    """The reference's step time; None where its bf16 autocast cannot run: torch 1.x's CPU autocast
    hands LayerNorm bfloat16 inputs with float32 weights, which its CPU kernel refuses (only
    when checking this script on a CPU; on a GPU every error stops the benchmark)."""
    device, precision = args[1], args[2]
    try:
        return reference_step_seconds(*args, **kwargs)
    except RuntimeError as error:
        if device == "cpu" and precision == "bf16" and "expected scalar type" in str(error):
            return None
        raise


def uniad_step_seconds(step_profile, device, precision, batch, steps, eval_forward=False):
    command = [step_profile, "--device", device, "--precision", precision,
               "--batch", str(batch), "--steps", str(steps), "--threads", str(os.cpu_count())]
    if eval_forward:
        command.append("--eval")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return first_json(out)["step_seconds"]


def figure(value, text):
    return "n/a" if value is None else text(value)


def device_name(device):
    if device != "cuda":
        return "cpu"
    import torch
    return torch.cuda.get_device_name(0)


def bf16_peak(name):
    return next((peak for model, peak in BF16_PEAK_TFLOPS.items() if model in name), None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    p.add_argument("--uniad", help="the uniad binary (default: BUILD/launcher/uniad)")
    p.add_argument("--step-profile", help="bench_step_profile (default: BUILD/bench/bench_step_profile)")
    p.add_argument("--out", help="also write the tables to this Markdown file")
    p.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--samples", type=int, default=3629, help="training samples of the random cache (MVTec AD: 3629)")
    p.add_argument("--test-samples", type=int, default=1725, help="test samples (MVTec AD: 1725)")
    p.add_argument("--batches", default="8,64")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (bf16 on a CPU without bf16 "
                   "instructions is emulated and very slow: checking the script there, fp32 alone)")
    args = p.parse_args()
    precisions = args.precisions.split(",")
    uniad = args.uniad or os.path.join(args.build, "launcher", "uniad")
    step_profile = args.step_profile or os.path.join(args.build, "bench", "bench_step_profile")
    name = device_name(args.device)
    peak = bf16_peak(name)
    report = []

    def show(text):
        print(text, flush=True)
        report.append(text)

    show(f"device: {name}; dense bf16 peak {peak if peak else 'unknown'} TFLOP/s; "
         f"`{' '.join(sys.argv)}`\n")

    # 1. The training step.
    rows, seconds = [], {}
    for batch in [int(b) for b in args.batches.split(",")]:
        for precision in precisions:
            ref = reference_or_none(args.shared, args.device, precision, batch, args.steps)
            ours = uniad_step_seconds(step_profile, args.device, precision, batch, args.steps)
            seconds[(batch, precision)] = (ref, ours)
            tflops = lambda s: GFLOP_PER_SAMPLE["train"] * batch / s / 1000
            rows.append([batch, precision, figure(ref, lambda r: f"{batch / r:.0f}"), f"{batch / ours:.0f}",
                         figure(ref, lambda r: f"{r / ours:.2f}x"), figure(ref, lambda r: f"{tflops(r):.1f}"),
                         f"{tflops(ours):.1f}"])
    show(markdown(["batch", "precision", "reference samples/s", "uniad samples/s", "uniad / reference",
                    "reference TFLOP/s", "uniad TFLOP/s"], rows))
    if precisions == ["fp32", "bf16"]:
        targets = []
        for batch in [int(b) for b in args.batches.split(",")]:
            ref_fp32, ours_fp32 = seconds[(batch, "fp32")]
            ref_bf16, ours_bf16 = seconds[(batch, "bf16")]
            targets.append([batch, f"{ref_fp32 / min(ours_fp32, ours_bf16):.2f}x (target >= 3x)",
                            figure(ref_bf16, lambda r: f"{r / ours_bf16:.2f}x") + " (target >= 1.5x)"])
        show("\n" + markdown(["batch", "uniad's best step vs the reference's fp32 step",
                               "uniad bf16 vs reference bf16"], targets))

    # 2. The eval forward, at the largest batch.
    eval_batch = max(int(b) for b in args.batches.split(","))
    # Float32 on both sides: `uniad eval` runs the forward in float32 (--precision is training's).
    ref = reference_step_seconds(args.shared, args.device, "fp32", eval_batch, args.steps, eval_forward=True)
    ours = uniad_step_seconds(step_profile, args.device, "fp32", eval_batch, args.steps, eval_forward=True)
    show(f"\nEval forward in float32 (map upsampled to 224 x 224), batch {eval_batch}\n")
    show(markdown(["reference images/s", "uniad images/s", "uniad / reference"],
                  [[f"{eval_batch / ref:.0f}", f"{eval_batch / ours:.0f}", f"{ref / ours:.2f}x"]]))

    # 3. and 4. End to end on an MVTec-size cache.
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "mvtec-size.h5")
        random_feature_cache(cache, args.samples, args.test_samples, "gpu_step")
        rows = []
        for precision in precisions:
            run = os.path.join(tmp, precision)
            start = time.perf_counter()
            subprocess.run([uniad, "train", "--cache", cache, "--run-dir", run, "--device", args.device, "--precision",
                            precision, "--epochs", str(args.epochs), "--batch-size", "64", "--checkpoint-every", "0",
                            "-q"], check=True)
            wall = time.perf_counter() - start
            log = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
            config = json.load(open(os.path.join(run, "config.json")))
            warm = log[1:] or log
            speed = statistics.mean(line["samples_per_s"] for line in warm)
            tflops = GFLOP_PER_SAMPLE["train"] * speed / 1000
            thousand = 1000 * args.samples / speed
            rows.append([precision, config["batches"]["resident"], f"{speed:.0f}", f"{tflops:.1f}",
                         f"{100 * tflops / peak:.1f}%" if peak and args.device == "cuda" else "n/a",
                         f"{thousand / 60:.1f} min", f"{wall:.0f} s"])
            start = time.perf_counter()
            subprocess.run([uniad, "eval", "--run", run, "--cache", cache, "--device", args.device, "--pictures", "0",
                            "-q"], check=True, capture_output=True)
            rows[-1].append(f"{args.test_samples / (time.perf_counter() - start):.0f}")
        show(f"\n`uniad train`, {args.samples} x 272 x 14 x 14 float16, batch 64, {args.epochs} epochs "
              f"(samples/s: mean of the epochs after the first); `uniad eval` of the run (images/s, start-up "
              f"and metrics included)\n")
        show(markdown(["precision", "resident", "samples/s", "TFLOP/s", "of the bf16 peak",
                        "projected 1000 epochs", f"wall time of {args.epochs} epochs", "eval images/s"], rows))

    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
