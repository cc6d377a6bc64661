"""Model speed: uniad-cpp's bench_model beside the same model in torch.nn (Python, Debian
torch 1.13), in one run, at the reference size (batch 8, 196 tokens, 272 channels).

Usage: /usr/bin/python3 bench/model.py [BUILD_DIR]     (prints a Markdown table)
"""
import os
import sys

from common import build_dir, here, markdown, python, run_json


def main():
    build = build_dir(sys.argv)
    steps = os.environ.get("BENCH_STEPS", "10")
    rows = []
    for threads in (1, 2):
        cpp = run_json([os.path.join(build, "bench", "bench_model"), "--threads", str(threads), "--steps", steps])
        py = run_json([python(), os.path.join(here(), "model_torch.py"), "--threads", str(threads), "--steps", steps])
        rows.append([threads, cpp["train_samples_per_s"], py["train_samples_per_s"],
                     f"{cpp['train_samples_per_s'] / py['train_samples_per_s']:.2f}x",
                     cpp["eval_samples_per_s"], py["eval_samples_per_s"],
                     f"{cpp['eval_samples_per_s'] / py['eval_samples_per_s']:.2f}x"])
    print(f"parameters: uniad-cpp {cpp['parameters']:,}, torch.nn {py['parameters']:,}\n")
    print(markdown(["threads", "train C++ (samples/s)", "train torch.nn", "ratio",
                    "eval C++ (samples/s)", "eval torch.nn", "ratio"], rows))


if __name__ == "__main__":
    main()
