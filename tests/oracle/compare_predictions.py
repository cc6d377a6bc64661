"""Compares `uniad predict` with `uniad eval` on the same images, with the csv module and
h5py: image scores (predictions.csv vs scores.csv) and anomaly maps (predict's maps.h5 vs
eval's maps.h5, matched by image path through the cache's test paths). Prints JSON.

Usage: compare_predictions.py CACHE.h5 EVAL_DIR PREDICT_DIR
"""
import csv
import json
import sys

import h5py
import numpy as np


def text(values):
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def main():
    cache_path, eval_dir, predict_dir = sys.argv[1:4]
    evaluated = {r["path"]: float(r["score"]) for r in csv.DictReader(open(eval_dir + "/scores.csv"))}
    predicted = {r["path"]: r for r in csv.DictReader(open(predict_dir + "/predictions.csv"))}
    ok = {p: float(r["score"]) for p, r in predicted.items() if not r["error"]}
    score_diff = max(abs(evaluated[p] - s) for p, s in ok.items())
    test_paths = text(h5py.File(cache_path, "r")["test/path"][:])
    eval_maps, predict_maps = h5py.File(eval_dir + "/maps.h5", "r"), h5py.File(predict_dir + "/maps.h5", "r")
    index = {p: i for i, p in enumerate(text(predict_maps["paths"][:]))}
    map_diff, compared = 0.0, 0
    for name in eval_maps.keys():
        for row, m in zip(eval_maps[name + "/rows"][:], eval_maps[name + "/maps"][:]):
            map_diff = max(map_diff, float(np.abs(predict_maps["maps"][index[test_paths[row]]] - m).max()))
            compared += 1
    print(json.dumps({"score_diff": score_diff, "map_diff": map_diff, "images": len(ok), "maps": compared,
                      "skipped": sorted(p for p, r in predicted.items() if r["error"]),
                      "max_map": float(predict_maps["maps"][:].max())}))


if __name__ == "__main__":
    main()
