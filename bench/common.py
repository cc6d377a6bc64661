"""Helpers for the benchmark drivers: run a command that prints one JSON line, and format
results as a Markdown table."""
import json
import os
import subprocess
import sys


def run_json(command, env=None):
    merged = dict(os.environ, **(env or {}))
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=merged).stdout
    return json.loads(out.strip().splitlines()[-1])


def markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def python():
    return "/usr/bin/python3"


def here():
    return os.path.dirname(os.path.abspath(__file__))


def build_dir(argv):
    return argv[1] if len(argv) > 1 else os.path.join(here(), "..", "build")


if __name__ == "__main__":
    sys.exit("helper module")
