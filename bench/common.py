"""Helpers for the benchmark drivers: run a command that prints one JSON line, and format
results as a Markdown table."""
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
    probe = subprocess.run([python(), "-c", "import numpy"], capture_output=True, text=True,
                           env=dict(os.environ, OPENBLAS_VERBOSE="2"))
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


def python():
    return "/usr/bin/python3"


def here():
    return os.path.dirname(os.path.abspath(__file__))


def build_dir(argv):
    return argv[1] if len(argv) > 1 else os.path.join(here(), "..", "build")


same_blas_kernels()

if __name__ == "__main__":
    sys.exit("helper module")
