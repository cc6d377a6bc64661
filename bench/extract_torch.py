"""The extraction work of `uniad extract` done in Python (Debian torch 1.13, OpenCV,
numpy), for the speed comparison: decode, resize, normalise, TorchScript backbone,
bilinear align_corners=True resize to 14x14, concatenation. No file is written.

Usage: /usr/bin/python3 bench/extract_torch.py DATA_ROOT BACKBONE.pt --threads N [--batch B]
Prints one JSON object.
"""
import argparse
import glob
import json
import os
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("backbone")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    paths = sorted(glob.glob(os.path.join(args.data, "*", "train", "good", "*")) +
                   glob.glob(os.path.join(args.data, "*", "test", "*", "*")))
    model = torch.jit.load(args.backbone).eval()
    start = time.perf_counter()
    for i in range(0, len(paths), args.batch):
        images = []
        for p in paths[i:i + args.batch]:
            image = cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            image = np.asarray(Image.fromarray(image, "RGB").resize((224, 224), Image.BILINEAR))  # the reference's resize
            images.append(((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1))
        x = torch.from_numpy(np.ascontiguousarray(np.stack(images)))
        with torch.inference_mode():
            maps = model(x)
            torch.cat([F.interpolate(maps[l], size=(14, 14), mode="bilinear", align_corners=True) for l in (0, 1, 2)], 1)
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "python", "images": len(paths), "seconds": round(seconds, 2),
                      "images_per_s": round(len(paths) / seconds, 1)}))


if __name__ == "__main__":
    main()
