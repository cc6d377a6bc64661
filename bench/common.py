"""Helpers for the benchmark drivers: run a command that prints one JSON line, and format
results as a Markdown table; the random feature cache the training benchmarks share."""
import json
import os
import subprocess
import sys


# Open MPI as root, more ranks than cores allowed: how every driver starts ranks.
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def run_json(command, env=None):
    merged = dict(os.environ, **(env or {}))
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=merged).stdout
    return json.loads(out.strip().splitlines()[-1])


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def same_blas_kernels():
    """Makes every process this driver starts (uniad and the Python reference alike) run
    OpenBLAS's kernels for this CPU. Debian's OpenBLAS falls back to generic ones on CPUs it
    does not know (common/blas.h); uniad then restarts itself with OPENBLAS_CORETYPE set, and a
    Python reference left on the generic kernels would run matmuls ~4x slower."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        probe = subprocess.run([python(), "-c", "import numpy"], capture_output=True, text=True,
                               env=dict(os.environ, OPENBLAS_VERBOSE="2"))
    except FileNotFoundError:  # no Debian python3 (the GPU machine): nothing to align
        return
    if "Core: Prescott" not in probe.stderr:
        return
    flags = open("/proc/cpuinfo").read().split()
    kernels = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
    if kernels:
        os.environ["OPENBLAS_CORETYPE"] = kernels


def run_with_peak_memory(command):
    """(stdout, peak RSS in MiB of the largest process among the command's descendants)."""
    probe = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
             "sys.stderr.write(r.stderr);print(r.stdout);"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
    out = subprocess.run([python(), "-c", probe] + command, check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    return "\n".join(lines[:-1]), int(lines[-1]) / 1024


def random_feature_cache(path, train, test, bench, channels=272):
    """A feature cache in uniad's format (docs/feature-cache.md) of random float16 features,
    `train` and `test` samples of one class (the second half of the test split anomalous, with
    a square mask), for the benchmark named `bench`."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(0)
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "uniad-feature-cache", "format_version": 2, "complete": 1,
                        "identity_json": json.dumps({"format_version": 2, "dtype": "float16", "bench": bench,
                                                     "backbone": {"random_features": True},
                                                     "dataset": {"file_list_hash": "random"}}),
                        "metadata_json": json.dumps({"backbone_description": f"random features (bench/{bench}.py)"})})
        f.create_dataset("classes", data=np.array(["bench"], dtype=object), dtype=strings)
        for split, n in (("train", train), ("test", test)):
            features = f.create_dataset(f"{split}/features", (n, channels, 14, 14), np.float16,
                                        chunks=(1, channels, 14, 14))
            for first in range(0, n, 512):
                rows = min(512, n - first)
                features[first:first + rows] = rng.standard_normal((rows, channels, 14, 14)).astype(np.float16)
            f.create_dataset(f"{split}/class_index", data=np.zeros(n, np.int32))
            labels = np.zeros(n, np.uint8)
            if split == "test":
                labels[n // 2:] = 1
            f.create_dataset(f"{split}/label", data=labels)
            f.create_dataset(f"{split}/defect_type", data=np.array(["good" if l == 0 else "bench" for l in labels],
                                                                   dtype=object), dtype=strings)
            f.create_dataset(f"{split}/path", data=np.array(["-"] * n, dtype=object), dtype=strings)
        masks = np.zeros((test, 224, 224), np.uint8)
        masks[test // 2:, 100:124, 100:124] = 1
        f.create_dataset("test/mask", data=masks)


def python():
    return "/usr/bin/python3"


def here():
    return os.path.dirname(os.path.abspath(__file__))


def build_dir(argv):
    return argv[1] if len(argv) > 1 else os.path.join(here(), "..", "build")


same_blas_kernels()

if __name__ == "__main__":
    sys.exit("helper module")
