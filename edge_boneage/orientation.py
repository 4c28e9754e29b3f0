"""Hand orientation: which of 8 rotations / mirrorings of an upright left hand a radiograph shows, and the undo.

Class c = k + 4 m: the image is ``rot90(U, k)`` (numpy, counter-clockwise) of the upright left hand U, mirrored
left-right first when m = 1 (a right hand, or a left hand seen from the other side). ``to_upright_left(img, c)``
undoes it. The classifier (keras_models.orientation; trained by benchmarks/train_orientation.py on rotated copies of
the protocol's training split) sees the whole decoded image squeezed to its input size (INTER_AREA), with no hand
crop. Inference imports numpy, OpenCV and the LiteRT runtime only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("upright", "rot90", "rot180", "rot270", "mirrored", "mirrored+rot90", "mirrored+rot180", "mirrored+rot270")
DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "orientation.tflite"
#: below this top probability the orientation is "unclear": the image is left as it is and the gate flags it. The
#: model file's metadata ("unclear_threshold") overrides it: benchmarks/orient_confidence.py chooses it per classifier
#: on the validation split + development non-hand suite (the lowest threshold at which no development picture passes)
MIN_CONFIDENCE = 0.5
#: default probabilities needed to turn an image (the model file's metadata overrides them): the rotation
#: (P(k) = p[k] + p[k + 4], k != 0) and the mirroring (P(mirrored) = p[4] + ... + p[7]) are decided separately,
#: because the classifier confuses left and right hands far more often than rotations
ROTATE_THRESHOLD = 0.9
MIRROR_THRESHOLD = 0.9


def apply_orientation(upright_left: np.ndarray, c: int) -> np.ndarray:
    """The image class c shows, made from an upright left hand (for training data and tests)."""
    k, m = int(c) % 4, int(c) // 4
    a = upright_left[:, ::-1] if m else upright_left
    return np.ascontiguousarray(np.rot90(a, k))


def to_upright_left(img: np.ndarray, c: int) -> np.ndarray:
    """Undo class c: rotate back, then mirror back."""
    k, m = int(c) % 4, int(c) // 4
    a = np.rot90(img, -k)
    return np.ascontiguousarray(a[:, ::-1] if m else a)


def squeeze(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(np.asarray(img, np.uint8), (size, size), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Orientation:
    cls: int
    prob: float
    probs: tuple
    rotate_threshold: float = ROTATE_THRESHOLD
    mirror_threshold: float = MIRROR_THRESHOLD
    unclear_threshold: float = MIN_CONFIDENCE

    @property
    def name(self) -> str:
        return CLASSES[self.cls]

    @property
    def confident(self) -> bool:
        return self.prob >= self.unclear_threshold

    @property
    def rotation(self) -> tuple[int, float]:
        """(quarter turns k, P(k)) marginalised over mirroring."""
        p = np.asarray(self.probs)
        pk = p[:4] + p[4:]
        k = int(np.argmax(pk))
        return k, float(pk[k])

    @property
    def mirror_prob(self) -> float:
        return float(np.sum(self.probs[4:]))

    @property
    def apply_cls(self) -> int:
        """The class to undo: the rotation if sure enough of it, plus the mirroring if sure enough of that (0: none)."""
        k, pk = self.rotation
        k = k if pk >= self.rotate_threshold else 0
        m = 1 if self.mirror_prob >= self.mirror_threshold else 0
        return k + 4 * m

    def to_dict(self) -> dict:
        return {"estimate": self.name, "prob": round(self.prob, 4), "confident": self.confident,
                "turned_as": CLASSES[self.apply_cls]}


class Orienter:
    """The orientation classifier from a .tflite file (no TensorFlow): ``estimate(img) -> Orientation``."""

    def __init__(self, path: str | os.PathLike = DEFAULT_MODEL, threads: int = 1):
        from edge_boneage.runtime import LiteRTModel

        self.path = Path(path)
        self.model = LiteRTModel(self.path, num_threads=threads)
        self.size = int(self.model.input_details()["image"]["shape"][1])
        from edge_boneage.tflite_meta import read_metadata

        meta = (read_metadata(self.path) or {}).get("orientation") or {}
        self.rotate_threshold = float(meta.get("rotate_threshold", ROTATE_THRESHOLD))
        self.mirror_threshold = float(meta.get("mirror_threshold", MIRROR_THRESHOLD))
        self.unclear_threshold = float(meta.get("unclear_threshold", MIN_CONFIDENCE))

    def estimate(self, img: np.ndarray) -> Orientation:
        x = squeeze(img, self.size)[None, :, :, None]
        p = np.asarray(self.model({"image": x})["orient"], np.float64).reshape(-1)
        c = int(np.argmax(p))
        return Orientation(c, float(p[c]), tuple(float(v) for v in p), self.rotate_threshold, self.mirror_threshold,
                           self.unclear_threshold)


_DEFAULT: Orienter | None = None


def default_orienter() -> Orienter | None:
    """The packaged classifier (loaded once), or None when the file is absent."""
    global _DEFAULT
    if _DEFAULT is None and DEFAULT_MODEL.is_file():
        _DEFAULT = Orienter(DEFAULT_MODEL)
    return _DEFAULT
