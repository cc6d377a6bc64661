#!/usr/bin/python3
"""Collects the reports behind docs/RESULTS.md from the experiment folder and fills its tables.

  /usr/bin/python3 scripts/collect_results.py --exp EXP [--uniad build/launcher/uniad] [--out docs/results]

EXP holds the sweeps of docs/RESULTS.md (made with `uniad sweep --spec sweeps/NAME.ini --out
EXP/NAME`) and EXP/rules/* (`uniad eval --out EXP/rules/NAME --image-score ...`). For each sweep
this runs `uniad sweep --report` and copies its leaderboard (md, csv, json) to OUT/NAME/, with
its loss and AUROC curves stacked into one figure (curves.png); for the headline configuration
(claims, base) with evaluated seeds it runs `uniad report` (mean +- std per class, the paper's
format) into OUT/claims/headline/; the image-score
rules become OUT/budget/score-rules.md. Then every block of docs/RESULTS.md between
"<!-- include PATH -->" and "<!-- end include -->" is replaced by that file's current text, so
the tables there are the programs' output, never typed by hand. Caches and checkpoints are
never copied. Reruns are cheap: reports only, no training.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SWEEPS = ("budget", "budget-layers", "budget-layers0123", "budget-long", "budget-jitter", "budget-grid14", "budget-grid28",
          "claims", "reference", "resnet18-budget", "resnet18-claims")
METRICS = [("image_auroc", "image AUROC"), ("image_ap", "image AP"), ("image_f1_max", "image F1-max"),
           ("pixel_auroc", "pixel AUROC"), ("pixel_ap", "pixel AP"), ("pixel_f1_max", "pixel F1-max"),
           ("aupro", "AUPRO@0.3")]


def run(command):
    print("+", " ".join(command))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def copy_report(source, target, names):
    os.makedirs(target, exist_ok=True)
    for name in names:
        path = os.path.join(source, name)
        if os.path.exists(path):
            shutil.copy(path, os.path.join(target, os.path.basename(name)))


def collect_sweep(uniad, exp, out, name):
    folder = os.path.join(exp, name)
    if not os.path.exists(os.path.join(folder, "sweep.json")):
        return
    run([uniad, "sweep", "--report", folder, "-q"])
    copy_report(folder, os.path.join(out, name), ["leaderboard.md", "leaderboard.csv", "leaderboard.json"])
    stack_curves(os.path.join(folder, "pictures"), os.path.join(out, name, "curves.png"))


def stack_curves(pictures, target):
    """The sweep's loss.png above its auroc.png as one figure: loss and AUROC against epochs on
    one page, as the paper's identical-shortcut figures show them."""
    import cv2
    loss, auroc = (cv2.imread(os.path.join(pictures, name)) for name in ("loss.png", "auroc.png"))
    if loss is None or auroc is None:
        return
    width = max(loss.shape[1], auroc.shape[1])
    pad = lambda image: cv2.copyMakeBorder(image, 0, 0, 0, width - image.shape[1], cv2.BORDER_CONSTANT,
                                           value=(255, 255, 255))
    cv2.imwrite(target, cv2.vconcat([pad(loss), pad(auroc)]))


def collect_headline(uniad, exp, out):
    runs = sorted(d for d in glob.glob(os.path.join(exp, "claims", "base", "seed=*"))
                  if os.path.exists(os.path.join(d, "eval", "report.json")))
    if not runs:
        return
    target = os.path.join(exp, "claims", "headline-report")
    run([uniad, "report", "--runs", ",".join(runs), "--out", target, "-q"])
    copy_report(target, os.path.join(out, "claims", "headline"), ["report.md", "report.json"])


def collect_score_rules(exp, out):
    rows = []
    for report in sorted(glob.glob(os.path.join(exp, "rules", "*", "report.json"))):
        data = json.load(open(report))
        protocol = data["provenance"]["protocol"]
        rule = protocol["image_score"] + (f" (window {protocol['pool_window']})"
                                           if protocol["image_score"] == "avgpool-max" else "")
        rows.append([os.path.basename(os.path.dirname(report)), rule, f"{protocol['smoothing_sigma']:g}",
                     data["provenance"]["run_dir"]] + [f"{100 * data['mean'][key]:.1f}" for key, _ in METRICS])
    if not rows:
        return
    lines = ["| evaluation | image score | map smoothing sigma | run | " + " | ".join(l for _, l in METRICS) + " |",
             "|---|---|---|---|" + "---:|" * len(METRICS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    os.makedirs(os.path.join(out, "budget"), exist_ok=True)
    with open(os.path.join(out, "budget", "score-rules.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def fill_includes(document):
    text = open(document).read()
    pattern = re.compile(r"(<!-- include (\S+) -->\n)(.*?)(<!-- end include -->)", re.S)

    def replace(match):
        path = os.path.join(ROOT, match.group(2))
        body = open(path).read() if os.path.exists(path) else "(not produced yet)\n"
        return match.group(1) + body + match.group(4)
    with open(document, "w") as f:
        f.write(pattern.sub(replace, text))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", required=True, help="folder with the sweeps (budget, claims, reference) and rules/")
    p.add_argument("--uniad", default=os.path.join(ROOT, "build", "launcher", "uniad"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results"))
    args = p.parse_args()
    for name in SWEEPS:
        collect_sweep(args.uniad, args.exp, args.out, name)
    collect_headline(args.uniad, args.exp, args.out)
    collect_score_rules(args.exp, args.out)
    fill_includes(os.path.join(ROOT, "docs", "RESULTS.md"))


if __name__ == "__main__":
    main()
