"""Independent oracle for eval/metrics: sklearn for AUROC, AP and the precision-recall curve
(F1-max), and a separate AUPRO written here with scipy's connected components.

Usage: metrics.py SCORES.f32 LABELS.u8 [IMAGES H W]
Without IMAGES/H/W: image-level metrics. With them: pixel-level metrics and AUPRO (FPR <= 0.3)
over maps [IMAGES, H, W]. Prints JSON.
"""
import json
import sys

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def aupro(scores, masks, max_fpr=0.3):
    weights = np.zeros(masks.shape, dtype=np.float64)
    regions = []
    for k in range(masks.shape[0]):
        labeled, count = ndimage.label(masks[k], structure=np.ones((3, 3)))
        for r in range(1, count + 1):
            regions.append((k, labeled == r))
    for k, region in regions:
        weights[k][region] = 1.0 / (len(regions) * region.sum())
    s, w, neg = scores.ravel(), weights.ravel(), (masks.ravel() == 0).astype(np.float64)
    order = np.argsort(-s, kind="stable")
    s, w, neg = s[order], w[order], neg[order]
    last_of_group = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # thresholds: distinct scores
    fpr = np.r_[0.0, np.cumsum(neg)[last_of_group] / neg.sum()]
    pro = np.r_[0.0, np.cumsum(w)[last_of_group]]
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:
        x, y = np.r_[x, max_fpr], np.r_[y, np.interp(max_fpr, fpr, pro)]
    return float(np.trapz(y, x) / max_fpr)


def main():
    scores = np.fromfile(sys.argv[1], dtype=np.float32)
    labels = np.fromfile(sys.argv[2], dtype=np.uint8)
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    out = {"auroc": roc_auc_score(labels, scores), "ap": average_precision_score(labels, scores),
           "f1_max": float(f1.max())}
    if len(sys.argv) > 3:
        n, h, w = (int(v) for v in sys.argv[3:6])
        out["aupro"] = aupro(scores.reshape(n, h, w), labels.reshape(n, h, w))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
