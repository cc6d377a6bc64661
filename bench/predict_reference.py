"""The reference's inference path, timed: images decoded with OpenCV and resized with Pillow (as
the reference's dataset), ImageNet-normalised, torchvision's EfficientNet-b4 (seeded random
weights, run to its stride-16 stage as the reference's outlayers 1-4 need), the reference's
MFCN neck (each stage bilinearly resized to 14 x 14, align_corners=True, concatenated: 272
channels) and the official UniAD module (../shared/reference/UniAD, reference size, eval mode),
whose output includes the 224 x 224 anomaly map; then the image score (16 x 16 average pool,
max). Prints one JSON line with images/s over the timed passes.

Usage: /usr/bin/python3 bench/predict_reference.py SHARED_DIR LIST_FILE THREADS [BATCH]
"""
import json
import os
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.models.feature_extraction import create_feature_extractor

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load(path):
    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR))
    return torch.from_numpy(((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1).copy())


def main():
    shared, list_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 16
    torch.set_num_threads(threads)
    sys.path[:0] = [os.path.join(shared, "reference", "UniAD"), os.path.join(shared, "reference", "einops041"),
                    os.path.join(shared, "reference")]
    from bench_reference import reference_model
    torch.manual_seed(0)
    backbone = torchvision.models.efficientnet_b4(weights=None).eval()
    nodes = ["features.1", "features.2", "features.3", "features.5"]
    stages = create_feature_extractor(backbone, return_nodes=nodes).eval()
    model = reference_model().eval()
    paths = [line.strip() for line in open(list_file) if line.strip()]

    def run_all():
        scores = []
        for first in range(0, len(paths), batch):
            x = torch.stack([load(p) for p in paths[first:first + batch]])
            with torch.no_grad():
                maps = stages(x)
                feature = torch.cat([F.interpolate(maps[n], size=(14, 14), mode="bilinear", align_corners=True)
                                     for n in nodes], 1)
                pred = model({"feature_align": feature})["pred"]  # [B, 1, 224, 224]
                scores.append(F.avg_pool2d(pred, 16, stride=1).flatten(1).max(1).values)
        return torch.cat(scores)

    run_all()  # warm-up
    start = time.perf_counter()
    scores = run_all()
    seconds = time.perf_counter() - start
    print(json.dumps({"images": len(paths), "seconds": round(seconds, 3), "images_per_s": round(len(paths) / seconds, 3),
                      "threads": threads, "batch": batch, "scores": int(scores.numel())}))


if __name__ == "__main__":
    main()
