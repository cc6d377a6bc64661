"""Independent check of a feature cache written by `uniad extract`, with h5py, OpenCV, Pillow
and Debian's torch: opens the file with h5py, checks shapes/dtypes/attributes, recomputes the
features of a few samples from their source images (decode, resize, normalise, TorchScript
backbone, bilinear align_corners=True resize to the grid, concatenation) and prints JSON with
the largest differences.

Usage: check_cache.py CACHE.h5 BACKBONE SAMPLES_PER_SPLIT
BACKBONE is a TorchScript file, or torchvision:ARCH:SEED for torchvision's own network with
seeded random weights (as scripts/export_backbone.py --random --seed SEED makes them), its
stage maps taken by torchvision's feature extractor, independently of the exported file.
"""
import json
import sys

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(path, size):
    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = np.asarray(Image.fromarray(image, "RGB").resize((size, size), Image.BILINEAR))  # as the reference
    x = (image.astype(np.float32) / np.float32(255.0) - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


# The stage ends of each architecture, as torchvision names its nodes (the reference
# UniAD's EfficientNet-b4 stages: strides 2, 4, 8, 16).
TORCHVISION_STAGES = {
    "efficientnet_b4": ["features.1", "features.2", "features.3", "features.5"],
    "resnet18": ["layer1", "layer2", "layer3", "layer4"],
    "wide_resnet50_2": ["layer1", "layer2", "layer3", "layer4"],
    "mobilenet_v2": ["features.3", "features.6", "features.13", "features.17"],
}


def load_backbone(spec):
    if not spec.startswith("torchvision:"):
        return torch.jit.load(spec).eval()
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor
    _, arch, seed = spec.split(":")
    torch.manual_seed(int(seed))
    model = getattr(torchvision.models, arch)(weights=None).eval()
    nodes = TORCHVISION_STAGES[arch]
    extractor = create_feature_extractor(model, return_nodes=nodes).eval()
    return lambda x: [extractor(x)[n] for n in nodes]


def main():
    cache_path, backbone_path, per_split = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    f = h5py.File(cache_path, "r")
    identity = json.loads(f.attrs["identity_json"])
    size, layers = int(f.attrs["input_size"]), json.loads(f.attrs["layers"])
    grid = json.loads(f.attrs["grid"])
    model = load_backbone(backbone_path)
    report = {"classes": [c.decode() if isinstance(c, bytes) else c for c in f["classes"][:]],
              "dtype": str(f["train/features"].dtype), "train_shape": list(f["train/features"].shape),
              "test_shape": list(f["test/features"].shape), "mask_shape": list(f["test/mask"].shape),
              "mask_dtype": str(f["test/mask"].dtype), "backbone_hash_attr": f.attrs["backbone_identity"],
              "complete": int(f.attrs["complete"]), "max_abs_diff": 0.0, "max_feature": 0.0,
              "mask_mismatch": 0, "layers": layers, "identity_dtype": identity["dtype"]}
    for split in ("train", "test"):
        paths = [p.decode() if isinstance(p, bytes) else p for p in f[split + "/path"][:]]
        for i in range(min(per_split, len(paths))):
            x = preprocess(paths[i], size).unsqueeze(0)
            with torch.no_grad():
                maps = model(x)
            feats = torch.cat([F.interpolate(maps[l], size=tuple(grid), mode="bilinear", align_corners=True)
                               for l in layers], 1)[0].numpy()
            stored = f[split + "/features"][i].astype(np.float32)
            report["max_abs_diff"] = max(report["max_abs_diff"], float(np.abs(stored - feats).max()))
            report["max_feature"] = max(report["max_feature"], float(np.abs(feats).max()))
    report["labels"] = f["test/label"][:].tolist()
    report["mask_pixels"] = int(f["test/mask"][:].sum())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
