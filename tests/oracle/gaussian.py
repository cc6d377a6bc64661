"""Oracle for eval::smooth_maps: scipy.ndimage.gaussian_filter (mode 'reflect', truncate 4).
Usage: gaussian.py IN.f32 OUT.f32 N H W SIGMA   (maps [N, H, W], each smoothed alone)"""
import sys

import numpy as np
from scipy.ndimage import gaussian_filter

n, h, w, sigma = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
maps = np.fromfile(sys.argv[1], dtype=np.float32).reshape(n, h, w).astype(np.float64)
out = np.stack([gaussian_filter(m, sigma=sigma, mode="reflect", truncate=4.0) for m in maps])
out.astype(np.float32).tofile(sys.argv[2])
