"""Independent check of a memory-bank run's anomaly maps (`uniad eval --save-maps`), with h5py,
scikit-learn and Debian's torch: the bank is every training patch of the cache (after the
k x k neighbourhood mean, zero padding counted, as PatchCore), each test patch's score is
its brute-force nearest-neighbour distance (sklearn, float64), and the maps are those scores
upsampled bilinearly (align_corners=True) to the masks' size. Prints JSON with the largest
difference to the maps the project wrote.

Usage: memory_bank_maps.py CACHE.h5 MAPS.h5 NEIGHBORHOOD
"""
import json
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.neighbors import NearestNeighbors


def patches(features, k):
    x = torch.from_numpy(features.astype(np.float64))
    if k > 1:
        x = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=True)
    return x, x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).numpy()


def main():
    cache_path, maps_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache, maps = h5py.File(cache_path, "r"), h5py.File(maps_path, "r")
    _, bank = patches(cache["train/features"][:], k)
    search = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(bank)
    test = cache["test/features"]
    worst, largest, compared = 0.0, 0.0, 0
    for name in maps.keys():
        rows = maps[name + "/rows"][:]
        written = maps[name + "/maps"][:]
        x, queries = patches(test[np.sort(rows)][np.argsort(np.argsort(rows))], k)
        distance, _ = search.kneighbors(queries)
        grid = torch.from_numpy(distance.reshape(x.shape[0], 1, x.shape[2], x.shape[3]))
        expected = F.interpolate(grid, size=written.shape[1:], mode="bilinear", align_corners=True)[:, 0].numpy()
        worst = max(worst, float(np.abs(expected - written).max()))
        largest = max(largest, float(np.abs(expected).max()))
        compared += len(rows)
    print(json.dumps({"max_abs_diff": worst, "max_value": largest, "images": compared, "bank": int(bank.shape[0])}))


if __name__ == "__main__":
    main()
