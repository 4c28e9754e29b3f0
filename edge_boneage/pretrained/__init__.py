"""Pretrained models shipped as package data (see MODEL_CARD.md beside this file when present)."""

from __future__ import annotations

from pathlib import Path

from edge_boneage import EdgeBoneageError

HERE = Path(__file__).resolve().parent
# Preferred order: a LiteRT file runs without TensorFlow; a .keras file needs the [train] extra.
DEFAULT_NAMES = ("boneage_age.tflite", "boneage_age.keras")


def default_model_path() -> Path:
    for name in DEFAULT_NAMES:
        if (HERE / name).is_file():
            return HERE / name
    raise EdgeBoneageError(
        f"no pretrained model is packaged in {HERE} (looked for {', '.join(DEFAULT_NAMES)}); pass --model FILE"
    )
