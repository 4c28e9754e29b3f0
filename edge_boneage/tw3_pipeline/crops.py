"""RUS crops (``crop_region``): a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box (parts outside
the image are 0), resized to the model's input size with cv2.INTER_AREA (``preprocess.resize_area``, the project's
one resize rule), then ``cv2.equalizeHist`` (the paper's histogram equalisation), uint8.

Pixels outside the image are 0 and equalizeHist's LUT is (cdf(v) - cdf_min) / (N - cdf_min), so zero padding does
not change how the other pixels are mapped when the crop's darkest value is 0 anyway.
"""

from __future__ import annotations

import math

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.tw3_pipeline.boxes import ImageBoxes
from edge_boneage.tw3_pipeline.constants import BONES, DEFAULT_MARGIN, N_BONES


def crop_window(box, margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """(ox, oy, side): the integer square window of a box (side = max(w, h) * (1 + 2 * margin), centred)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(2, int(round(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * float(margin)))))
    ox = int(math.floor(0.5 * (x0 + x1) - side / 2.0 + 0.5))
    oy = int(math.floor(0.5 * (y0 + y1) - side / 2.0 + 0.5))
    return ox, oy, side


def crop_region(image: np.ndarray, box, size: int, margin: float = DEFAULT_MARGIN, equalize: bool = True) -> np.ndarray:
    """One RUS crop: square window around `box` (zero outside the image), INTER_AREA to size x size, equalizeHist."""
    from edge_boneage.preprocess import equalize_hist, resize_area

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or img.dtype != np.uint8:
        raise EdgeBoneageError(f"crop_region: expected a 2-D uint8 grey image, got {img.dtype} {img.shape}")
    ox, oy, side = crop_window(box, margin)
    h, w = img.shape
    sq = np.zeros((side, side), np.uint8)
    ax0, ay0, ax1, ay1 = max(ox, 0), max(oy, 0), min(ox + side, w), min(oy + side, h)
    if ax1 > ax0 and ay1 > ay0:
        sq[ay0 - oy : ay1 - oy, ax0 - ox : ax1 - ox] = img[ay0:ay1, ax0:ax1]
    out = resize_area(sq, int(size))
    return equalize_hist(out) if equalize else out


def region_crops(image: np.ndarray, boxes, size: int, margin: float = DEFAULT_MARGIN, equalize: bool = True) -> np.ndarray:
    """uint8 (13, size, size): the RUS crops of an image in BONES order (`boxes`: ImageBoxes, dict or (13, 4))."""
    if isinstance(boxes, ImageBoxes):
        boxes = boxes.array()
    elif isinstance(boxes, dict):
        boxes = [boxes[b] for b in BONES]
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (N_BONES, 4):
        raise EdgeBoneageError(f"expected {N_BONES} boxes of 4 numbers, got shape {boxes.shape}")
    return np.stack([crop_region(image, b, size, margin, equalize) for b in boxes])


__all__ = ["crop_region", "crop_window", "region_crops"]
