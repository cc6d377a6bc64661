"""Independent oracle for the image pipeline: the UniAD reference's own steps.

Usage: preprocess_images.py OUT_DIR WIDTH HEIGHT IMAGE[:MASK] ...
For the i-th argument writes
  OUT_DIR/i.resized.u8  uint8 [HEIGHT, WIDTH, 3], the RGB image after resizing (before scaling),
  OUT_DIR/i.image.f32   float32 [3, HEIGHT, WIDTH], C order, after ToTensor + Normalize,
and, when a mask is given, OUT_DIR/i.mask.u8 (uint8 [HEIGHT, WIDTH], values 0/1).

As the reference's datasets/custom_dataset.py does it: cv2.imread + BGR->RGB, PIL.Image.fromarray,
torchvision-style Resize((h, w), Image.BILINEAR) - that is PIL's Image.resize, which antialiases
when shrinking - and Image.NEAREST for masks (read with cv2.IMREAD_GRAYSCALE).
"""
import sys

import cv2
import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def main():
    out_dir, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for i, item in enumerate(sys.argv[4:]):
        image_path, _, mask_path = item.partition(":")
        image = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        resized = np.asarray(Image.fromarray(image, "RGB").resize((width, height), Image.BILINEAR))
        resized.astype(np.uint8).tofile(f"{out_dir}/{i}.resized.u8")
        x = (resized.astype(np.float32) / np.float32(255.0) - MEAN) / STD
        np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32).tofile(f"{out_dir}/{i}.image.f32")
        if mask_path:
            mask = Image.fromarray(cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE), "L")
            mask = np.asarray(mask.resize((width, height), Image.NEAREST))
            (mask > 0).astype(np.uint8).tofile(f"{out_dir}/{i}.mask.u8")


if __name__ == "__main__":
    main()
