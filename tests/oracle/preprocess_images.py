"""Independent oracle for the image pipeline (uniad-spec.md, "Image pipeline").

Usage: preprocess_images.py OUT_DIR SIZE IMAGE[:MASK] ...
For the i-th argument writes OUT_DIR/i.image.f32 (float32 [3, SIZE, SIZE], C order) and,
when a mask is given, OUT_DIR/i.mask.u8 (uint8 [SIZE, SIZE], values 0/1).
Written with OpenCV's Python module and numpy, as the reference implementation reads images.
"""
import sys

import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def main():
    out_dir, size = sys.argv[1], int(sys.argv[2])
    for i, item in enumerate(sys.argv[3:]):
        image_path, _, mask_path = item.partition(":")
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        x = image.astype(np.float32) / np.float32(255.0)
        x = (x - MEAN) / STD
        np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32).tofile(f"{out_dir}/{i}.image.f32")
        if mask_path:
            mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
            (mask > 0).astype(np.uint8).tofile(f"{out_dir}/{i}.mask.u8")


if __name__ == "__main__":
    main()
