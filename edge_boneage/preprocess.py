"""The one preprocessing pipeline shared by training, Python inference and the apps.

    img (uint8 HxW grey, from edge_boneage.io.read_image)
      -> letterbox_square (centred, pad 0; odd padding: the extra pixel goes bottom/right)
      -> resize_area to S x S (cv2.INTER_AREA, also when enlarging; see below)
      -> optional enhancement on the S x S image: "clahe" (cv2 CLAHE) or "hist" (cv2.equalizeHist)
      -> uint8 (S, S), values 0..255; the model casts to float itself.

The exact rules, with worked examples for a Java/JS reimplementation, are in docs/PREPROCESSING.md.
`PreprocessSpec` records them; its `to_dict()` is embedded in .tflite metadata and read by the apps.

Imports only numpy and OpenCV (no TensorFlow/Keras): used on edge boxes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

SPEC_VERSION = 3  # the newest; a spec without source_size is still written as version 2, which older apps read
# version 1 files (no frame / crop fields) read as frame "letterbox", no crop; version 2 files have no source_size
READABLE_VERSIONS = (1, 2, 3)
ENHANCE_CHOICES = (None, "clahe", "hist")
FRAME_CHOICES = ("letterbox", "squeeze")
CROP_CHOICES = (None, "hand")
LETTERBOX_RULE = "centre-pad-extra-bottom-right"
RESIZE_RULE = "cv2.INTER_AREA"


def _as_grey_uint8(img: np.ndarray, name: str = "img") -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D greyscale image (H, W) or (H, W, 1), got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {a.dtype} (read images with edge_boneage.io.read_image)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {a.shape}")
    return a


def letterbox_offsets(height: int, width: int) -> tuple[int, int, int, int, int]:
    """(side, top, bottom, left, right) for padding an HxW image to a centred square of side max(H, W).

    top = (side - H) // 2 and bottom = side - H - top, so with odd padding the extra pixel is at the
    bottom (and likewise at the right).
    """
    side = max(int(height), int(width))
    top = (side - height) // 2
    left = (side - width) // 2
    return side, top, side - height - top, left, side - width - left


def letterbox_square(img: np.ndarray, pad_value: int = 0) -> np.ndarray:
    """Pad to a centred square of side max(H, W) with `pad_value`; odd padding puts the extra pixel bottom/right.

    Works for (H, W) and (H, W, C) arrays of any dtype; always returns a new C-contiguous array.
    """
    a = np.asarray(img)
    if a.ndim not in (2, 3):
        raise ValueError(f"letterbox_square: expected (H, W) or (H, W, C), got shape {a.shape}")
    h, w = a.shape[:2]
    side, top, _bottom, left, _right = letterbox_offsets(h, w)
    out = np.full((side, side) + a.shape[2:], pad_value, dtype=a.dtype)
    out[top : top + h, left : left + w] = a
    return out


def resize_area(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA); `size` is S (-> S x S) or (H, W).

    Shrinking: true area averaging (each output pixel = weighted mean of the source pixels it covers).
    Enlarging (source smaller than S, e.g. the 100x100 RSNA set to 128 or 224): we still call INTER_AREA,
    on purpose, so that one rule holds for every input. OpenCV then does not average: it uses a
    bilinear interpolation whose weight is 0 except in one output pixel per source-pixel boundary
    (sx = floor(dx * scale); f = (dx + 1) - (sx + 1) / scale; f = 0 if f <= 0 else f - floor(f);
    out = (1 - f) * src[sx] + f * src[sx + 1]), i.e. pixel replication with a one-pixel linear
    transition: sharp, like INTER_NEAREST, but without its phase shift. docs/PREPROCESSING.md has the
    formulas and examples. (A square input to a square output always scales both axes the same way,
    so preprocess() never mixes shrinking on one axis with enlarging on the other.)
    """
    a = _as_grey_uint8(img, "resize_area")
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"resize_area: size must be positive, got {size}")
    if a.shape == (h, w):
        return a.copy()
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)


def clahe(img: np.ndarray, clip: float = 2.0, tiles: tuple[int, int] | int = (8, 8)) -> np.ndarray:
    """OpenCV CLAHE: cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles_x, tiles_y)).apply(img)."""
    a = _as_grey_uint8(img, "clahe")
    if isinstance(tiles, (int, np.integer)):
        tiles = (int(tiles), int(tiles))
    tx, ty = (int(t) for t in tiles)
    if tx < 1 or ty < 1:
        raise ValueError(f"clahe: tiles must be >= 1, got {tiles}")
    if not clip > 0:
        raise ValueError(f"clahe: clip must be > 0, got {clip}")
    return cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(tx, ty)).apply(np.ascontiguousarray(a))


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation, cv2.equalizeHist (LUT: round(255 * (cdf(v) - cdf_min) / (N - cdf_min)))."""
    a = _as_grey_uint8(img, "equalize_hist")
    return cv2.equalizeHist(np.ascontiguousarray(a))


def enhance_image(img: np.ndarray, enhance: str | None, clip: float = 2.0, tiles=(8, 8)) -> np.ndarray:
    if enhance is None or enhance == "none":
        return _as_grey_uint8(img).copy()
    if enhance == "clahe":
        return clahe(img, clip, tiles)
    if enhance == "hist":
        return equalize_hist(img)
    raise ValueError(f"unknown enhance {enhance!r}; choose one of None, 'clahe', 'hist'")


def preprocess(
    img: np.ndarray,
    size: int,
    enhance: str | None = None,
    *,
    clip: float = 2.0,
    tiles: tuple[int, int] = (8, 8),
    pad_value: int = 0,
) -> np.ndarray:
    """letterbox_square -> resize_area(size) -> optional enhancement. Returns uint8 (size, size).

    Enhancement runs on the S x S image (after resizing), so its result does not depend on the source
    resolution and costs the same on a phone for any input.
    """
    a = _as_grey_uint8(img, "preprocess")
    if enhance not in ENHANCE_CHOICES and enhance != "none":
        raise ValueError(f"unknown enhance {enhance!r}; choose one of None, 'clahe', 'hist'")
    out = resize_area(letterbox_square(a, pad_value), int(size))
    return enhance_image(out, enhance, clip, tiles)


def make_frame(img: np.ndarray, frame: str, pad_value: int = 0) -> np.ndarray:
    """The square frame the model's world is drawn in: "letterbox" (pad to a centred square) or "squeeze" (the
    image itself, to be resized to a square without keeping its aspect ratio, as the RSNA 100x100 set was made)."""
    if frame == "letterbox":
        return letterbox_square(img, pad_value)
    if frame == "squeeze":
        return np.asarray(img)
    raise ValueError(f"unknown frame rule {frame!r}; choose one of {FRAME_CHOICES}")


def preprocess_full(img: np.ndarray, size: int, enhance: str | None = None, *, frame: str = "letterbox",
                    crop: str | None = None, crop_margin: float | None = None, clip: float = 2.0,
                    tiles: tuple[int, int] = (8, 8), pad_value: int = 0, source_size: int | None = None):
    """(uint8 (size, size), hand box dict or None): frame -> [source_size] -> [hand crop] -> resize_area -> [enhance].

    With source_size the frame is first resized to source_size x source_size (cv2.INTER_AREA), the resolution the
    model's training images had (RSNA img100: 100): a full-resolution film then reaches the hand crop as the
    training films did, and a source_size x source_size image is unchanged.
    With crop="hand" the square box of edge_boneage.handcrop.locate_hand (found on the frame, in its 128x128 grid, so
    a squeezed frame gets a box that is square in squeezed coordinates) is cut from the frame (outside -> pad_value 0)
    and resized to size x size with cv2.INTER_AREA. The box is reported in the original image's pixels.
    """
    from edge_boneage import handcrop

    a = _as_grey_uint8(img, "preprocess")
    if enhance not in ENHANCE_CHOICES and enhance != "none":
        raise ValueError(f"unknown enhance {enhance!r}; choose one of None, 'clahe', 'hist'")
    if crop not in CROP_CHOICES:
        raise ValueError(f"unknown crop {crop!r}; choose one of None, 'hand'")
    f = make_frame(a, frame, pad_value)
    fx = fy = 1.0  # frame pixels per working pixel
    if source_size and f.shape != (int(source_size), int(source_size)):
        fx, fy = f.shape[1] / float(source_size), f.shape[0] / float(source_size)
        f = cv2.resize(f, (int(source_size), int(source_size)), interpolation=cv2.INTER_AREA)
    box = None
    if crop == "hand":
        hb = handcrop.locate_hand(f, handcrop.DEFAULT_MARGIN if crop_margin is None else crop_margin)
        out = handcrop.crop_box(f, (hb.x0, hb.y0, hb.w, hb.h), (int(size), int(size)))
        box = hb.to_dict()
        if (fx, fy) != (1.0, 1.0):  # back to frame pixels
            for k in ("x0", "x1", "hand_x0", "hand_x1", "cx", "w"):
                box[k] = round(box[k] * fx, 3)
            for k in ("y0", "y1", "hand_y0", "hand_y1", "cy", "h"):
                box[k] = round(box[k] * fy, 3)
        if frame == "letterbox":  # report in original pixels
            _side, top, _b, left, _r = letterbox_offsets(*a.shape)
            for k in ("x0", "x1", "hand_x0", "hand_x1", "cx"):
                box[k] = round(box[k] - left, 3)
            for k in ("y0", "y1", "hand_y0", "hand_y1", "cy"):
                box[k] = round(box[k] - top, 3)
    else:
        out = resize_area(f, int(size)) if f.shape[0] == f.shape[1] else cv2.resize(
            f, (int(size), int(size)), interpolation=cv2.INTER_AREA)
    return enhance_image(out, enhance, clip, tiles), box


def to_model_input(img: np.ndarray) -> np.ndarray:
    """(S, S) uint8 -> (1, S, S, 1) uint8 batch for the model input "image"."""
    a = _as_grey_uint8(img, "to_model_input")
    return a[None, :, :, None].copy()


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects as input; embedded in .tflite metadata (JSON of `to_dict()`) and read by the apps."""

    input_size: int
    enhance: str | None = None
    clahe_clip: float = 2.0
    clahe_tiles: tuple[int, int] = (8, 8)
    dtype: str = "uint8"
    channels: int = 1
    value_range: tuple[int, int] = (0, 255)
    pad_value: int = 0
    letterbox: str = LETTERBOX_RULE
    resize: str = RESIZE_RULE
    colour: str = "grey; RGB -> (19595 R + 38470 G + 7471 B + 32768) >> 16; MONOCHROME1 inverted"
    version: int | None = None  # None: the lowest version that holds these fields (3 with source_size, else 2)
    frame: str = "letterbox"  # "letterbox" | "squeeze" (see make_frame)
    crop: str | None = None  # None | "hand" (edge_boneage.handcrop)
    crop_margin: float = 0.04
    crop_rule: str | None = None  # handcrop.HAND_RULE when crop == "hand"
    source_size: int | None = None  # the frame is first resized to this square (the training images' size); v3
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.version is None:
            object.__setattr__(self, "version", 3 if self.source_size is not None else 2)
        if self.enhance == "none":
            object.__setattr__(self, "enhance", None)
        if int(self.input_size) <= 0:
            raise ValueError(f"PreprocessSpec: input_size must be positive, got {self.input_size}")
        if self.enhance not in ENHANCE_CHOICES:
            raise ValueError(f"PreprocessSpec: enhance must be one of None, 'clahe', 'hist', got {self.enhance!r}")
        if self.dtype != "uint8" or self.channels != 1 or tuple(self.value_range) != (0, 255):
            raise ValueError("PreprocessSpec: the model contract is uint8, 1 channel, values 0..255")
        if self.letterbox != LETTERBOX_RULE or self.resize != RESIZE_RULE:
            raise ValueError(f"PreprocessSpec: unknown letterbox/resize rule {self.letterbox!r}/{self.resize!r}")
        if self.version not in READABLE_VERSIONS:
            raise ValueError(f"PreprocessSpec: version {self.version} is not supported (this code reads "
                             f"{READABLE_VERSIONS})")
        if self.frame not in FRAME_CHOICES:
            raise ValueError(f"PreprocessSpec: frame must be one of {FRAME_CHOICES}, got {self.frame!r}")
        if self.crop == "none":
            object.__setattr__(self, "crop", None)
        if self.crop not in CROP_CHOICES:
            raise ValueError(f"PreprocessSpec: crop must be one of None, 'hand', got {self.crop!r}")
        if self.crop == "hand":
            from edge_boneage.handcrop import HAND_RULE

            if self.crop_rule is None:
                object.__setattr__(self, "crop_rule", HAND_RULE)
            elif self.crop_rule != HAND_RULE:
                raise ValueError(f"PreprocessSpec: hand-crop rule {self.crop_rule!r} is not this code's {HAND_RULE!r}")
        if self.source_size is not None:
            ss = self.source_size
            if isinstance(ss, bool) or not isinstance(ss, (int, float)) or float(ss) != int(ss):
                raise ValueError(f"PreprocessSpec: source_size must be an integer number of pixels, got {ss!r}")
            if self.version < 3:
                raise ValueError(f"PreprocessSpec: source_size needs spec version 3, got version {self.version}")
            if int(self.source_size) < 16:
                raise ValueError(f"PreprocessSpec: source_size must be >= 16, got {self.source_size}")
            object.__setattr__(self, "source_size", int(self.source_size))
        object.__setattr__(self, "clahe_tiles", tuple(int(t) for t in self.clahe_tiles))
        object.__setattr__(self, "value_range", tuple(int(v) for v in self.value_range))

    def apply(self, img: np.ndarray) -> np.ndarray:
        return self.apply_with_box(img)[0]

    def apply_with_box(self, img: np.ndarray):
        """(uint8 (S, S) model image, hand box dict in image pixels or None)."""
        return preprocess_full(img, self.input_size, self.enhance, frame=self.frame, crop=self.crop,
                               crop_margin=self.crop_margin, clip=self.clahe_clip, tiles=self.clahe_tiles,
                               pad_value=self.pad_value, source_size=self.source_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["source_size"] is None:  # a version-2 record, byte for byte as before (older apps refuse unknown keys)
            del d["source_size"]
        d["clahe_tiles"] = list(self.clahe_tiles)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"PreprocessSpec.from_dict: unknown keys {unknown}")
        if "input_size" not in d:
            raise ValueError("PreprocessSpec.from_dict: missing 'input_size'")
        if "version" in d and d["version"] is None:
            raise ValueError("PreprocessSpec.from_dict: version is null")
        kw = dict(d)
        for k in ("clahe_tiles", "value_range"):
            if k in kw:
                kw[k] = tuple(kw[k])
        kw["extra"] = dict(kw.get("extra") or {})
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PreprocessSpec:
        return cls.from_dict(json.loads(text))


def spec_of_keras_model(model, *, enhance: str | None = None) -> PreprocessSpec:
    """The input contract a Keras model carries (a layer's ``preprocess`` config, see
    keras_models.mobilenet.CastToFloat); models saved before contracts existed get the version-1 default
    (letterbox, no crop) at their input size, with `enhance` as their run recorded it. No Keras import here."""
    for layer in getattr(model, "layers", []):
        d = getattr(layer, "preprocess", None)
        if isinstance(d, dict) and d:
            return PreprocessSpec.from_dict(d)
    size = None
    for t in getattr(model, "inputs", []):
        if t.name.split(":")[0] == "image" or len(t.shape) == 4:
            size = int(t.shape[1])
            break
    if size is None:
        raise ValueError(f"model {getattr(model, 'name', '?')!r} has no (B,S,S,1) image input")
    return PreprocessSpec(input_size=size, enhance=enhance, version=1)


__all__ = [
    "spec_of_keras_model",
    "ENHANCE_CHOICES",
    "PreprocessSpec",
    "clahe",
    "enhance_image",
    "equalize_hist",
    "letterbox_offsets",
    "letterbox_square",
    "make_frame",
    "preprocess",
    "preprocess_full",
    "resize_area",
    "to_model_input",
]
