"""Pixel-metric speed and memory: uniad's exact AUROC + AP + F1-max + AUPRO (bench_metrics)
beside sklearn's roc_auc_score + average_precision_score + precision_recall_curve (F1-max)
on the same arrays, in one run. The arrays have real3's test-split size: 170, 69 and 317
images of 224x224 (27.9 M pixels), with smooth random maps and blob-shaped defect masks.

Usage: /usr/bin/python3 bench/metrics.py [BUILD_DIR]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import build_dir, here, markdown, python

SKLEARN = r'''
import json, sys, time
import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
scores = np.fromfile(sys.argv[1], dtype=np.float32); masks = np.fromfile(sys.argv[2], dtype=np.uint8)
t = time.perf_counter(); offset = 0; out = []
for n in map(int, sys.argv[3].split(",")):
    s, m = scores[offset:offset + n * 50176], masks[offset:offset + n * 50176]; offset += n * 50176
    auroc = roc_auc_score(m, s); ap = average_precision_score(m, s)
    p, r, _ = precision_recall_curve(m, s)
    with np.errstate(invalid="ignore"): f1 = np.nan_to_num(2 * p * r / (p + r)).max()
    out.append({"auroc": auroc, "ap": ap, "f1_max": float(f1)})
print(json.dumps({"classes": out, "seconds": time.perf_counter() - t}))
'''


def peak(command):
    probe = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
             "print(r.stdout.strip());print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([python(), "-c", probe] + command, check=True, capture_output=True, text=True).stdout.split("\n")
    return json.loads(out[0]), int(out[1]) / 1024


def main():
    build = build_dir(sys.argv)
    per_class = [170, 69, 317]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        scores_path, masks_path = os.path.join(tmp, "s.f32"), os.path.join(tmp, "m.u8")
        with open(scores_path, "wb") as fs, open(masks_path, "wb") as fm:
            for n in per_class:
                for _ in range(n):
                    coarse = rng.random((14, 14), dtype=np.float32)
                    score = np.kron(coarse, np.ones((16, 16), np.float32)) + rng.random((224, 224), dtype=np.float32) * 0.1
                    mask = np.zeros((224, 224), np.uint8)
                    if rng.random() < 0.6:
                        y, x, h, w = rng.integers(0, 180, 2).tolist() + rng.integers(5, 40, 2).tolist()
                        mask[y:y + h, x:x + w] = 1
                        score[y:y + h, x:x + w] += 0.5
                    fs.write(score.astype(np.float32).tobytes())
                    fm.write(mask.tobytes())
        sizes = ",".join(map(str, per_class))
        cpp, cpp_peak = peak([os.path.join(build, "bench", "bench_metrics"), scores_path, masks_path, sizes])
        sk, sk_peak = peak([python(), "-c", SKLEARN, scores_path, masks_path, sizes])
    agree = max(abs(a[k] - b[k]) for a, b in zip(cpp["classes"], sk["classes"]) for k in ("auroc", "ap", "f1_max"))
    print(f"pixels: {cpp['pixels']:,} in {len(per_class)} classes; largest difference uniad vs sklearn: {agree:.2e}\n")
    print(markdown(["implementation", "metrics", "seconds", "peak RSS MiB (process)"], [
        ["uniad (exact, one pass)", "AUROC, AP, F1-max, AUPRO@0.3", f"{cpp['seconds']:.2f}", f"{cpp_peak:.0f}"],
        ["sklearn 1.2", "AUROC, AP, PR curve (F1-max)", f"{sk['seconds']:.2f}", f"{sk_peak:.0f}"]]))
    print(f"\ntime ratio sklearn / uniad: {sk['seconds'] / cpp['seconds']:.1f}x; memory ratio: {sk_peak / cpp_peak:.1f}x "
          f"(both include the input arrays: {cpp['pixels'] * 5 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
