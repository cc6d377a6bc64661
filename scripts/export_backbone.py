#!/usr/bin/python3
"""Exports a torchvision backbone as the TorchScript file `uniad extract --backbone` reads.

The file returns the list of stage maps UniAD assembles, and carries its own description in
the TorchScript extra file `uniad.json`: architecture, the strides and channels of the maps,
the default layers, the input sizes it takes, the preprocessing, and where its weights came
from. `uniad extract` reads it, so the right layers are used without flags and an input size
the model cannot take is refused.

    scripts/export_backbone.py efficientnet_b4 --weights efficientnet_b4_rwightman-7eb33cd5.pth --out effb4.pt
    scripts/export_backbone.py resnet18 --random --out resnet18-random.pt      # tests, speed runs

Weights are never downloaded: --weights takes a state dict saved by torchvision (fetch it
where there is internet), --random keeps torchvision's seeded initialisation.
Needs Debian's python3-torch and python3-torchvision (scripts/setup.sh installs them).
"""
import argparse
import hashlib
import json
import os
import sys
from typing import List

import torch
import torchvision

def resnet_blocks(m):
    """A torchvision ResNet as stem, layer1 .. layer4."""
    return [torch.nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool), m.layer1, m.layer2, m.layer3, m.layer4]


# Per architecture: how to cut torchvision's network into a sequence of blocks, which block
# ends each returned stage, and what those stages are. EfficientNet-b4 keeps the reference
# UniAD's stages (its config: outlayers 1-4, strides 2, 4, 8, 16, 24 + 32 + 56 + 160 = 272
# channels, 14 x 14 at 224); the others return their four stride-4..32 stages.
ARCHITECTURES = {
    "efficientnet_b4": {
        "blocks": lambda m: list(m.features.children())[:6],
        "taps": [1, 2, 3, 5],
        "strides": [2, 4, 8, 16],
        "channels": [24, 32, 56, 160],
        "default_layers": [0, 1, 2, 3],
    },
    "wide_resnet50_2": {
        "blocks": resnet_blocks,
        "taps": [1, 2, 3, 4],
        "strides": [4, 8, 16, 32],
        "channels": [256, 512, 1024, 2048],
        "default_layers": [0, 1, 2],
    },
    "resnet18": {
        "blocks": resnet_blocks,
        "taps": [1, 2, 3, 4],
        "strides": [4, 8, 16, 32],
        "channels": [64, 128, 256, 512],
        "default_layers": [0, 1, 2],
    },
    "mobilenet_v2": {
        "blocks": lambda m: list(m.features.children())[:18],
        "taps": [3, 6, 13, 17],
        "strides": [4, 8, 16, 32],
        "channels": [24, 32, 96, 320],
        "default_layers": [0, 1, 2],
    },
}

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class Stages(torch.nn.Module):
    """Runs the blocks in order and returns the output of each tapped block."""

    def __init__(self, blocks: List[torch.nn.Module], taps: List[int]):
        super().__init__()
        self.features = torch.nn.Sequential(*blocks)
        self.taps = taps

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        maps: List[torch.Tensor] = []
        i = 0
        for block in self.features:
            x = block(x)
            if i in self.taps:
                maps.append(x)
            i += 1
        return maps


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(architecture, weights, seed):
    """The torchvision model with the requested weights, and a description of them."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, architecture)(weights=None)
    if weights is None:
        return model, {"kind": "random", "seed": seed,
                       "note": "torchvision's default initialisation after torch.manual_seed(seed); not pretrained"}
    state = torch.load(weights, map_location="cpu")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        sys.exit(f"export_backbone: {weights} is not a {architecture} state dict of torchvision: {e}")
    return model, {"kind": "file", "file": os.path.basename(weights), "sha256": sha256(weights)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("architecture", choices=sorted(ARCHITECTURES))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="torchvision state dict (.pth) of this architecture")
    source.add_argument("--random", action="store_true", help="seeded random weights (tests, speed runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    parser.add_argument("--out", required=True, help="TorchScript file to write")
    args = parser.parse_args()

    spec = ARCHITECTURES[args.architecture]
    model, weights = build(args.architecture, None if args.random else args.weights, args.seed)
    model.eval()
    stages = Stages(spec["blocks"](model), spec["taps"]).eval()
    # Frozen: the weights become constants and each BatchNorm is folded into the convolution
    # before it (the backbone is never trained here), which makes `uniad predict` ~13% faster on
    # one thread; the maps change by float rounding only (checked against torchvision in tests).
    scripted = torch.jit.freeze(torch.jit.script(stages))

    # The maps must be what the description says at the reference input size.
    with torch.no_grad():
        maps = scripted(torch.zeros(1, 3, 224, 224))
    for k, (m, stride, channels) in enumerate(zip(maps, spec["strides"], spec["channels"])):
        if list(m.shape[1:]) != [channels, 224 // stride, 224 // stride]:
            sys.exit(f"export_backbone: stage {k} is {list(m.shape)}, expected {channels} x {224 // stride}^2")

    multiple = max(spec["strides"])
    metadata = {
        "format": "uniad-backbone",
        "format_version": 1,
        "architecture": args.architecture,
        "outputs": [{"stride": s, "channels": c} for s, c in zip(spec["strides"], spec["channels"])],
        "default_layers": spec["default_layers"],
        "input": {"reference_size": 224, "multiple_of": multiple, "min_size": 2 * multiple},
        "preprocessing": {"color": "RGB", "resize": "bilinear (Pillow)", "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "weights": weights,
        "exported_with": {"torch": torch.__version__, "torchvision": torchvision.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    temporary = args.out + ".partial"
    torch.jit.save(scripted, temporary, _extra_files={"uniad.json": json.dumps(metadata, indent=2)})
    os.replace(temporary, args.out)  # never a half-written file under the final name
    channels = sum(spec["channels"][l] for l in spec["default_layers"])
    print(f"{args.out}: {args.architecture}, stages at strides {spec['strides']} ({spec['channels']} channels); "
          f"default layers {spec['default_layers']} = {channels} channels; weights: {weights['kind']}")


if __name__ == "__main__":
    main()
