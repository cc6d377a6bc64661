#!/usr/bin/python3
"""Collects the reports behind docs/RESULTS.md from the experiment folder and fills its tables.

  /usr/bin/python3 scripts/collect_results.py --exp EXP [--uniad build/launcher/uniad] [--out docs/results]

EXP holds the sweeps of docs/RESULTS.md (made with `uniad sweep --spec sweeps/NAME.ini --out
EXP/NAME`) and EXP/rules/* (`uniad eval --out EXP/rules/NAME --image-score ...`). For each sweep
this runs `uniad sweep --report` and copies its leaderboard (md, csv, json) to OUT/NAME/, with
its loss and AUROC curves stacked into one figure (curves.png); for the headline configuration
(base of claims and of resnet18-claims) with evaluated seeds it runs `uniad report` (mean +- std
per class, the paper's format) into OUT/SWEEP/headline/; the two backbones' claims side by side
become OUT/resnet18-claims/backbones.{md,csv}; the image-score rules become
OUT/budget/score-rules.md. Then every block of docs/RESULTS.md between
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
          "claims", "reference", "resnet18-budget", "resnet18-claims", "resnet18-long")
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


def collect_headline(uniad, exp, out, sweep):
    """The unified UniAD runs (configuration base) of SWEEP, one per seed, as the paper's per-class
    table (mean +- std over seeds) in OUT/SWEEP/headline/."""
    runs = sorted(d for d in glob.glob(os.path.join(exp, sweep, "base", "seed=*"))
                  if os.path.exists(os.path.join(d, "eval", "report.json")))
    if not runs:
        return
    target = os.path.join(exp, sweep, "headline-report")
    run([uniad, "report", "--runs", ",".join(runs), "--out", target, "-q"])
    copy_report(target, os.path.join(out, sweep, "headline"), ["report.md", "report.json"])


# The backbones docs/RESULTS.md compares: (name, its claims sweep, the sweep of its memory bank;
# MobileNetV2's nearest-neighbour reference was a sweep of its own), and the compared
# configurations: (row, its name in MobileNetV2's sweeps, its name in ResNet18's).
BACKBONES = [("MobileNetV2", "claims", "reference"), ("ResNet18", "resnet18-claims", "resnet18-claims")]
COMPARED = [("unified UniAD", "base", "base"),
            ("separate (one model per class)", "separate", "separate"),
            ("no feature jitter", "no-jitter", "no-jitter"),
            ("none of the three ideas", "none-of-the-three", "none-of-the-three"),
            ("CNN reconstruction", "cnn", "cnn"),
            ("memory bank, every patch, unified", "setting=unified", "memory-bank"),
            ("memory bank, every patch, separate", "setting=separate", "memory-bank-separate")]
COMPARED_METRICS = [("image_auroc", "image"), ("pixel_auroc", "pixel")]


def leaderboard_configurations(out, sweep):
    path = os.path.join(out, sweep, "leaderboard.json")
    if not os.path.exists(path):
        return {}
    return {c["configuration"]: c for c in json.load(open(path))["configurations"] if c["evaluated_seeds"]}


def mean_and_std(metric):
    """Mean and sample std over seeds, in %; std is None under two seeds."""
    values = metric["values"]
    return 100 * metric["mean"], (100 * metric["std"] if len(values) >= 2 else None)


def shown(mean, std, sign=False):
    text = f"{mean:+.1f}" if sign else f"{mean:.1f}"
    return text if std is None else f"{text} +- {std:.2f}"


def difference(a, b):
    """mean(a) - mean(b) with the std of that difference, sqrt(s_a^2/n_a + s_b^2/n_b), as the
    sweep's ablation view (report/aggregate.h); None where either has under two seeds."""
    (ma, sa), (mb, sb) = mean_and_std(a), mean_and_std(b)
    na, nb = len(a["values"]), len(b["values"])
    std = (sa * sa / na + sb * sb / nb) ** 0.5 if sa is not None and sb is not None else None
    return ma - mb, std


def collect_backbones(out):
    """OUT/resnet18-claims/backbones.{md,csv}: each compared configuration on both backbones, its
    mean image and pixel AUROC over seeds and its difference to that backbone's unified UniAD,
    read from the leaderboards (leaderboard.json) that collect_sweep wrote."""
    sweeps = {backbone: (leaderboard_configurations(out, claims), leaderboard_configurations(out, reference))
              for backbone, claims, reference in BACKBONES}
    if not sweeps["ResNet18"][0]:
        return
    csv_header = ["configuration"]
    md_header = ["configuration"]
    for backbone, _, _ in BACKBONES:
        md_header += [f"{backbone}: image / pixel AUROC", "vs unified", "seeds"]
        for key, _ in COMPARED_METRICS:
            csv_header += [f"{backbone}_{key}_mean", f"{backbone}_{key}_std",
                           f"{backbone}_{key}_vs_unified", f"{backbone}_{key}_vs_unified_std"]
        csv_header.append(f"{backbone}_seeds")
    md_rows, csv_rows = [], []
    for row, *names in COMPARED:
        md, csv = [row], [row]
        for (backbone, _, _), name in zip(BACKBONES, names):
            claims, reference = sweeps[backbone]
            found, base = claims.get(name) or reference.get(name), claims.get("base")
            if found is None:
                md += ["-", "-", "0"]
                csv += [""] * (4 * len(COMPARED_METRICS)) + ["0"]
                continue
            values, differences = [], []
            for key, _ in COMPARED_METRICS:
                value = mean_and_std(found["metrics"][key])
                change = (None, None) if name == "base" or base is None else \
                    difference(found["metrics"][key], base["metrics"][key])
                values.append(shown(*value))
                differences.append("-" if change[0] is None else shown(*change, sign=True))
                csv += ["" if x is None else f"{x:.4f}" for x in value + change]
            seeds = str(found["evaluated_seeds"])
            md += [" / ".join(values), " / ".join(differences), seeds]
            csv.append(seeds)
        md_rows.append(md)
        csv_rows.append(csv)
    note = ("Mean image / pixel AUROC in % over the evaluated seeds (last epoch), +- the sample std; "
            "\"vs unified\" is the difference to the same backbone's unified UniAD, +- its std "
            "(sqrt(s_a^2/n_a + s_b^2/n_b), as the sweep's ablation view), shown where both have two seeds "
            "or more. MobileNetV2: sweeps/claims.ini and, for the memory bank, "
            "sweeps/reference-one-seed.ini (one run: the bank with every patch has no seed); "
            "ResNet18: sweeps/resnet18-claims.ini.")
    lines = [note, "", "| " + " | ".join(md_header) + " |", "|---|" + "---:|" * (len(md_header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in md_rows]
    target = os.path.join(out, "resnet18-claims")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "backbones.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(target, "backbones.csv"), "w") as f:
        f.write("\n".join(",".join(r) for r in [csv_header] + csv_rows) + "\n")


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
    for sweep in ("claims", "resnet18-claims"):
        collect_headline(args.uniad, args.exp, args.out, sweep)
    collect_backbones(args.out)
    collect_score_rules(args.exp, args.out)
    fill_includes(os.path.join(ROOT, "docs", "RESULTS.md"))


if __name__ == "__main__":
    main()
