"""Extraction speed and memory, cache read speed and size, in one run:
uniad extract (1 rank x 2 threads, 2 ranks x 1 thread) beside the same work in Python.

Usage: /usr/bin/python3 bench/extract.py [BUILD_DIR] [DATA_ROOT] [BACKBONE]
Defaults: build/, ../shared/data/real3, ../shared/weights/mobilenet_v2_imagenet/features.pt
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import h5py

from common import MPIRUN, build_dir, here, markdown, python, run_json

SHARED = os.environ.get("UNIAD_SHARED", os.path.join(here(), "..", "..", "shared"))


def timed(command, env=None):
    """Runs a command in a child Python that reports the peak RSS of its descendants."""
    probe = ("import resource,subprocess,sys,time;t=time.perf_counter();"
             "r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
             "print(r.stdout+r.stderr,file=sys.stderr);"
             "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
             "sys.exit(r.returncode)")
    out = subprocess.run([python(), "-c", probe] + command, capture_output=True, text=True,
                         env=dict(os.environ, **(env or {})))
    if out.returncode:
        sys.exit(out.stderr)
    seconds, peak_kb = out.stdout.split()
    return float(seconds), int(peak_kb) / 1024


def main():
    build = build_dir(sys.argv)
    data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(SHARED, "data", "real3")
    backbone = sys.argv[3] if len(sys.argv) > 3 else os.path.join(SHARED, "weights", "mobilenet_v2_imagenet", "features.pt")
    uniad = os.path.join(build, "launcher", "uniad")
    rows, caches = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("uniad extract, 1 rank x 2 threads", [uniad], "--threads 2", "float16"),
                ("uniad extract, 2 ranks x 1 thread",
                 [*MPIRUN, "-np", "2", uniad], "--threads 1", "float16"),
                ("uniad extract, 1 rank x 2 threads, float32", [uniad], "--threads 2", "float32")]
        for run, (name, launcher, threads, dtype) in enumerate(runs):
            out = os.path.join(tmp, f"{run}.h5")
            seconds, peak = timed(launcher + ["extract", "-q", "--data", data, "--backbone", backbone, "--out", out,
                                              "--dtype", dtype] + threads.split())
            with h5py.File(out, "r") as f:
                images = f["train/features"].shape[0] + f["test/features"].shape[0]
                inner = float(f.attrs["extraction_seconds"])
            caches[dtype] = (out, images)
            rows.append([name, images, f"{images / inner:.1f}", f"{images / seconds:.1f}", f"{peak:.0f}"])
        py_seconds, py_peak = timed([python(), os.path.join(here(), "extract_torch.py"), data, backbone, "--threads", "2"])
        rows.append(["Python (cv2 + torch 1.13), 2 threads", images, f"{images / py_seconds:.1f}",
                     f"{images / py_seconds:.1f}", f"{py_peak:.0f}"])
        print(markdown(["pipeline", "images", "images/s (extraction)", "images/s (whole command)", "peak RSS MiB"], rows))
        best = max(float(r[2]) for r in rows[:2])
        print(f"\nratio, best uniad configuration / Python: {best / (images / py_seconds):.2f}x "
              f"(1x2: {float(rows[0][2]) / (images / py_seconds):.2f}x, 2x1: {float(rows[1][2]) / (images / py_seconds):.2f}x)\n")
        size_rows, read_rows = [], []
        for dtype, (path, n) in caches.items():
            size_rows.append([dtype, f"{os.path.getsize(path) / 1e6:.1f}", f"{os.path.getsize(path) / n / 1024:.1f}"])
            reads = run_json([os.path.join(build, "bench", "bench_cache"), "--cache", path])
            read_rows.append([dtype, reads["random_reads_per_s"], reads["random_batch8_samples_per_s"]])
        print(markdown(["dtype", "cache MB", "KiB per sample (incl. masks)"], size_rows))
        print()
        print(markdown(["dtype", "random single reads/s", "random batch-of-8 samples/s"], read_rows))


if __name__ == "__main__":
    main()
