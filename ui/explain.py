"""What the Predict tab adds to a prediction: Grad-CAM heatmaps drawn over the image. No framework
import. A heatmap (the backends' `gradcam`) is coloured with matplotlib's "jet" colormap and blended
with the image the model saw. Models packed to take home are trainer/export.py's.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ALPHA = 0.45  # the heatmap's share of each blended pixel
SHOWN_SIZE = 224  # overlays are shown at least this large, so small models' maps stay readable


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """A uint8 HWC image with the [0, 1] heatmap (same H, W) blended over it, red where hot."""
    from matplotlib import colormaps
    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    blended = (1 - ALPHA) * image.astype(np.float32) + ALPHA * colours
    picture = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))
    if picture.width < SHOWN_SIZE:
        picture = picture.resize((SHOWN_SIZE, SHOWN_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(picture)
