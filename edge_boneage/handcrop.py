"""Hand localisation: find the hand in a radiograph and give a canonical square box around it.

Why: a model that sees the whole film reads "how much of the frame the hand fills" as age (zooming a test image by
1.25x moved the old model's prediction by +5 months). Cropping every image to a box fitted to the hand, in training
and inference alike, takes that cue away and makes registered (hand fills the frame) and raw (hand small in a big
film, cassette edges, markers, rulers) radiographs look alike.

The rule (`locate_hand`, version ``HAND_RULE``), on the *frame* (the image after the model's resize rule made it
square: squeezed or letterboxed, see edge_boneage.preprocess):

1. ``g`` = the frame resized to 128 x 128 (cv2.INTER_AREA), Gaussian blur 5x5 (sigma 0: OpenCV's default).
2. ``mask`` = g > t with t halfway between Otsu's threshold and the mean of the pixels below it (Otsu alone cuts
   the dimmer soft tissue of the thumb); morphological opening with a 5x5 ellipse (drops thin edges, marker letters).
3. If the largest component fills more than 85 % of its own bounding box (a bright cassette, plate or background:
   a hand fills 50-70 %), threshold again the same way over the pixels inside it (the hand is brighter there).
4. The largest 8-connected component is the hand; its bounding box (x0, y0, x1, y1) in frame pixels.
5. Canonical box: a square of the 128 grid centred on that box, side = max(w, h) * (1 + 2 * margin) (margin 0.04),
   mapped back to frame pixels (a rectangle when the frame is not square: "squeeze"), allowed to extend past the frame (the outside reads as 0, like the letterbox padding), so the hand always has the same scale.

Also reported: the fraction of the frame the hand component covers, and its principal-axis angle (degrees from
vertical, from second moments) for the orientation checks. Imports numpy and OpenCV only (edge boxes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

HAND_RULE = "otsu128-open5-refine80-largest-square-v1"  # (the name of the first version; frozen: models carry it)
WORK_SIZE = 128
DEFAULT_MARGIN = 0.04


@dataclass(frozen=True)
class HandBox:
    """A square box in frame pixels (may extend past the frame), and what the localiser saw."""

    cx: float  # centre, frame pixels
    cy: float
    w: float  # box width and height in frame pixels (a square in the frame's 128x128 grid; equal on square frames)
    h: float
    hand_x0: float  # tight bounding box of the hand component, frame pixels
    hand_y0: float
    hand_x1: float
    hand_y1: float
    coverage: float  # hand component area / frame area
    angle_deg: float  # principal axis, degrees from vertical (positive: top leans right)
    found: bool  # False: no foreground, the box is the whole frame

    @property
    def x0(self) -> float:
        return self.cx - self.w / 2.0

    @property
    def y0(self) -> float:
        return self.cy - self.h / 2.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update({"x0": self.x0, "y0": self.y0, "x1": self.x0 + self.w, "y1": self.y0 + self.h})
        return {k: (round(float(v), 3) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == k


def _fill_ratio(comp: np.ndarray) -> float:
    """Component area / its bounding-box area: ~0.5-0.7 for a hand, > 0.85 for a cassette, plate or full frame."""
    ys, xs = np.nonzero(comp)
    return float(comp.sum()) / float((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))


def _otsu_mask(g: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    vals = g[where] if where is not None else g.reshape(-1)
    if vals.size == 0 or int(vals.max()) == int(vals.min()):
        return np.zeros(g.shape, bool)
    t, _ = cv2.threshold(vals.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    low = vals[vals <= t]
    t = 0.5 * (t + (float(low.mean()) if low.size else t))  # halfway down to the background: keeps soft tissue
    m = g > t
    if where is not None:
        m &= where
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool)


def locate_hand(frame: np.ndarray, margin: float = DEFAULT_MARGIN) -> HandBox:
    """The hand's canonical square box in a square-ish uint8 grey frame (see the module docstring for the rule)."""
    a = np.asarray(frame)
    if a.ndim != 2 or a.dtype != np.uint8 or min(a.shape) < 1:
        raise ValueError(f"locate_hand: need a 2-D uint8 image, got {a.dtype} {a.shape}")
    h, w = a.shape
    g = cv2.resize(a, (WORK_SIZE, WORK_SIZE), interpolation=cv2.INTER_AREA)
    g = cv2.GaussianBlur(g, (5, 5), 0)
    comp = _largest_component(_otsu_mask(g))
    if comp is not None and _fill_ratio(comp) > 0.85:
        inner = _largest_component(_otsu_mask(g, comp))
        if inner is not None and inner.sum() >= 0.05 * comp.sum():
            comp = inner
    if comp is None:
        return HandBox(w / 2.0, h / 2.0, float(w), float(h), 0.0, 0.0, float(w), float(h), 0.0, 0.0, False)
    ys, xs = np.nonzero(comp)
    sx, sy = w / WORK_SIZE, h / WORK_SIZE
    gx0, gx1, gy0, gy1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(gx1 - gx0, gy1 - gy0) * (1.0 + 2.0 * margin)  # in grid units
    x0, x1, y0, y1 = gx0 * sx, gx1 * sx, gy0 * sy, gy1 * sy
    # principal axis from central second moments (in frame pixels)
    dx, dy = (xs + 0.5) * sx, (ys + 0.5) * sy
    dx, dy = dx - dx.mean(), dy - dy.mean()
    mxx, myy, mxy = float((dx * dx).mean()), float((dy * dy).mean()), float((dx * dy).mean())
    angle = 0.5 * np.degrees(np.arctan2(2.0 * mxy, myy - mxx))  # 0 = vertical long axis
    return HandBox((x0 + x1) / 2.0, (y0 + y1) / 2.0, float(side * sx), float(side * sy), float(x0), float(y0), float(x1), float(y1),
                   float(comp.mean()), float(-angle), True)


def crop_box(img: np.ndarray, box_xywh: tuple[float, float, float, float], out_hw: tuple[int, int]) -> np.ndarray:
    """Pixels of the rectangle (x0, y0, w, h) of `img` (outside -> 0) resized to out_hw with cv2.INTER_AREA.

    The rectangle is rounded to whole pixels first (x0, y0 floored, x1, y1 = ceil), so the rule is exact to port.
    """
    a = np.asarray(img)
    x0, y0, bw, bh = box_xywh
    ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
    ix1, iy1 = max(ix0 + 1, int(np.ceil(x0 + bw))), max(iy0 + 1, int(np.ceil(y0 + bh)))
    out = np.zeros((iy1 - iy0, ix1 - ix0), a.dtype)
    sx0, sy0, sx1, sy1 = max(ix0, 0), max(iy0, 0), min(ix1, a.shape[1]), min(iy1, a.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = a[sy0:sy1, sx0:sx1]
    oh, ow = out_hw
    if out.shape == (oh, ow):
        return out
    return cv2.resize(out, (ow, oh), interpolation=cv2.INTER_AREA)


__all__ = ["DEFAULT_MARGIN", "HAND_RULE", "HandBox", "crop_box", "locate_hand"]
