"""End-to-end inference speed, `uniad predict` beside the reference's inference path, measured
in the same run: EfficientNet-b4 (seeded random weights) + feature assembly + the reference-size
UniAD model + anomaly map + image score, from image files to scores, on the test images of
../shared/data/real3-small (60 JPEGs, listed twice: 120 images).

uniad: scripts/export_backbone.py efficientnet_b4 --random; extract real3-small; train the
reference-size model for 1 epoch (its speed does not depend on the weights); `uniad export`;
then `uniad predict` timed on the list of N and of 2N images, so start-up (loading the model
file) cancels out of the rate (medians of three runs each). Reference: bench/predict_reference.py (the official UniAD
module), timed in-process after a warm-up pass, median of three runs.

Usage: /usr/bin/python3 bench/predict.py [BUILD_DIR] [SHARED_DIR]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import h5py

from common import build_dir, here, markdown, python, run_json


def timed(command):
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    uniad = os.path.join(build_dir(sys.argv), "launcher", "uniad")
    shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here(), "..", "..", "shared")
    data = os.path.join(shared, "data", "real3-small")
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        backbone, cache, run = (os.path.join(tmp, n) for n in ("effb4.pt", "cache.h5", "run"))
        model = os.path.join(tmp, "model.uniad")
        subprocess.run([python(), os.path.join(here(), "..", "scripts", "export_backbone.py"), "efficientnet_b4",
                        "--random", "--out", backbone], check=True, capture_output=True)
        subprocess.run([uniad, "extract", "-q", "--data", data, "--backbone", backbone, "--out", cache], check=True)
        subprocess.run([uniad, "train", "-q", "--cache", cache, "--run-dir", run, "--epochs", "1", "--threads", "2"],
                       check=True)
        subprocess.run([uniad, "export", "-q", "--run", run, "--cache", cache, "--backbone", backbone, "--out", model],
                       check=True, capture_output=True)
        with h5py.File(cache, "r") as f:
            paths = [p.decode() if isinstance(p, bytes) else p for p in f["test/path"][:]]
        lists = {}
        for n, repeat in (("single", 1), ("double", 2)):
            lists[n] = os.path.join(tmp, n + ".txt")
            with open(lists[n], "w") as out:
                out.write("\n".join(paths * repeat) + "\n")
        for threads in (1, 2):
            command = [uniad, "predict", "-q", "--model", model, "--threads", str(threads), "--out",
                       os.path.join(tmp, "pred")]
            timed(command + ["@" + lists["single"]])  # warm the file cache
            # Medians of three: the rate is a difference of two wall times, so noise doubles.
            single = sorted(timed(command + ["@" + lists["single"]]) for _ in range(3))[1]
            double = sorted(timed(command + ["@" + lists["double"]]) for _ in range(3))[1]
            ours = len(paths) / (double - single)
            reference = sorted(run_json([python(), os.path.join(here(), "predict_reference.py"), shared,
                                         lists["double"], str(threads)])["images_per_s"] for _ in range(3))[1]
            rows.append([threads, f"{ours:.2f}", f"{reference:.2f}", f"{ours / reference:.2f}x", f"{single:.1f} s"])
            results.append({"threads": threads, "uniad_images_per_s": ours, "reference_images_per_s": reference})
    print(markdown(["threads", "uniad predict (images/s)", "reference path (images/s)", "ratio",
                    f"uniad wall, {len(paths)} images incl. start-up"], rows))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
