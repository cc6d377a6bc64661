"""Training speed at the reference model size (272 input channels, 14x14, hidden 256, 4+4
layers, batch 8 per rank): `uniad train` on 1 rank x 2 threads and 2 ranks x 1 thread, with
the share of step time in the gradient exchange and the peak memory per rank.

Usage: /usr/bin/python3 bench/train.py [BUILD_DIR] [--against OTHER_UNIAD | --without-tensorboard] [--rounds N]

--against: a second uniad binary (another commit's build) timed in the same run, alternating
with this build's, round after round (so drift of the machine hits both alike); the table
then gives both speeds and their ratio.
--without-tensorboard: the same, against this build with --no-tensorboard (what writing the
TensorBoard events costs; this build writes them, one loss and lr point per step).
"""
import argparse
import json
import os
import sys
import tempfile

from common import MPIRUN, build_dir, markdown, random_feature_cache, run_with_peak_memory


CONFIGURATIONS = (("1 rank x 2 threads", [], 2), ("2 ranks x 1 thread", [*MPIRUN, "-np", "2"], 1))


def time_training(uniad, extra, launcher, threads, cache, run_dir):
    """(samples/s, exchange share, peak RSS MiB) of 3 epochs, the first (start-up) left out."""
    _, peak = run_with_peak_memory(launcher + [uniad, "train", "--cache", cache, "--run-dir", run_dir, "--epochs", "3",
                                               "--checkpoint-every", "0", "--threads", str(threads), "-q", *extra])
    log = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    warm = log[1:]  # the first epoch includes start-up
    return (sum(line["samples_per_s"] for line in warm) / len(warm),
            sum(line["exchange_share"] for line in warm) / len(warm), peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", nargs="?", default=None, help="build folder (default: build)")
    parser.add_argument("--against", help="another uniad binary, timed in the same run")
    parser.add_argument("--without-tensorboard", action="store_true",
                        help="time this build with --no-tensorboard in the same run instead")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per binary (default 1)")
    args = parser.parse_args()
    uniad = os.path.join(build_dir([sys.argv[0]] + ([args.build] if args.build else [])), "launcher", "uniad")
    if args.against and args.without_tensorboard:
        parser.error("--against and --without-tensorboard are two different comparisons: give one")
    binaries = [("this build", uniad, [])]  # (label, binary, extra options)
    if args.against:
        binaries.append(("--against", args.against, []))
    if args.without_tensorboard:
        binaries.append(("--against", uniad, ["--no-tensorboard"]))
    against = "--no-tensorboard" if args.without_tensorboard else "--against"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "bench.h5")
        random_feature_cache(cache, 128, 8, "train")
        for name, launcher, threads in CONFIGURATIONS:
            results = {label: [] for label, _, _ in binaries}  # label -> (samples/s, share, peak) per round
            for round_ in range(args.rounds):
                for label, binary, extra in binaries:
                    run_dir = os.path.join(tmp, f"{name.replace(' ', '_')}_{label.strip('-').replace(' ', '_')}_{round_}")
                    results[label].append(time_training(binary, extra, launcher, threads, cache, run_dir))
            speed = {label: sum(r[0] for r in runs) / len(runs) for label, runs in results.items()}
            share = sum(r[1] for r in results["this build"]) / args.rounds
            peak = max(r[2] for r in results["this build"])
            row = [name, f"{speed['this build']:.2f}", f"{100 * share:.1f}%", f"{peak:.0f}"]
            if len(binaries) > 1:
                row += [f"{speed['--against']:.2f}", f"{speed['this build'] / speed['--against']:.3f}"]
            rows.append(row)
    header = ["configuration", "samples/s", "step time in gradient exchange", "peak RSS per rank MiB"]
    if len(binaries) > 1:
        header += [f"samples/s of {against}", f"ratio (this / {against})"]
    print(markdown(header, rows))


if __name__ == "__main__":
    main()
