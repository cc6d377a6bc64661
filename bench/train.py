"""Training speed at the reference model size (272 input channels, 14x14, hidden 256, 4+4
layers, batch 8 per rank): `uniad train` on 1 rank x 2 threads and 2 ranks x 1 thread, with
the share of step time in the gradient exchange and the peak memory per rank.

Usage: /usr/bin/python3 bench/train.py [BUILD_DIR]
"""
import json
import os
import sys
import tempfile

import h5py
import numpy as np

from common import MPIRUN, build_dir, markdown, run_with_peak_memory


def make_cache(path, train=128, test=8, channels=272):
    """A feature cache in uniad's format (docs/feature-cache.md) holding random features."""
    rng = np.random.default_rng(0)
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "uniad-feature-cache", "format_version": 1, "complete": 1,
                        "identity_json": json.dumps({"format_version": 1, "dtype": "float16", "bench": True})})
        f.create_dataset("classes", data=np.array(["bench"], dtype=object), dtype=strings)
        for split, n in (("train", train), ("test", test)):
            f.create_dataset(f"{split}/features", data=rng.standard_normal((n, channels, 14, 14)).astype(np.float16),
                             chunks=(1, channels, 14, 14))
            f.create_dataset(f"{split}/class_index", data=np.zeros(n, np.int32))
            f.create_dataset(f"{split}/label", data=np.zeros(n, np.uint8))
            f.create_dataset(f"{split}/defect_type", data=np.array(["good"] * n, dtype=object), dtype=strings)
            f.create_dataset(f"{split}/path", data=np.array(["-"] * n, dtype=object), dtype=strings)
        f.create_dataset("test/mask", data=np.zeros((test, 224, 224), np.uint8))


def main():
    uniad = os.path.join(build_dir(sys.argv), "launcher", "uniad")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "bench.h5")
        make_cache(cache)
        for name, launcher, threads in (("1 rank x 2 threads", [], 2),
                                        ("2 ranks x 1 thread", [*MPIRUN, "-np", "2"], 1)):
            run_dir = os.path.join(tmp, name.replace(" ", "_"))
            _, peak = run_with_peak_memory(launcher + [uniad, "train", "--cache", cache, "--run-dir", run_dir, "--epochs", "3",
                                   "--checkpoint-every", "0", "--threads", str(threads), "-q"])
            log = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
            warm = log[1:]  # the first epoch includes start-up
            speed = sum(line["samples_per_s"] for line in warm) / len(warm)
            share = sum(line["exchange_share"] for line in warm) / len(warm)
            rows.append([name, f"{speed:.2f}", f"{100 * share:.1f}%", f"{peak:.0f}"])
    print(markdown(["configuration", "samples/s", "step time in gradient exchange", "peak RSS per rank MiB"], rows))


if __name__ == "__main__":
    main()
