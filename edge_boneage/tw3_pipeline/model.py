"""The stage model (``StageModel``): a .keras (safe_mode) or .tflite TW3 stage classifier behind one ``predict``.

``csp_resnext50_tw3`` / ``resnext50_tw3`` (keras_models/resnext.py): inputs "image" uint8 (B,S,S,1) and "bone"
int32 (B,1), output "probs" (B,8) over grades B..I (ulna: 7 grades, 8th is 0).

``StageModel.margin``: the crop margin the model was trained with, None when unknown. A .tflite made by
``tw3 export`` carries it in its metadata entry ``TFLITE_META_NAME`` (``StageModel.meta["crop"]``); a .keras in a
tw3 run folder has it from the run's run.json.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.tw3_pipeline.constants import N_BONES, N_CLASSES, TFLITE_META_NAME
from edge_boneage.tw3_pipeline.run_config import trained_margin

if TYPE_CHECKING:
    from edge_boneage.tw3_pipeline.data import StageData


class StageModel:
    """A .keras (safe_mode) or .tflite stage classifier: ``predict(crops (N,S,S), bones (N,)) -> probs (N, 8)``."""

    def __init__(self, model, num_threads: int = 1):
        self.meta: dict = {}
        if not isinstance(model, (str, os.PathLike)):  # an in-memory Keras model
            self.path, self.format, self._keras, self._lite = "<keras model>", "keras", model, None
        else:
            path = Path(model)
            if not path.is_file():
                raise EdgeBoneageError(f"{path}: no such model file")
            self.path = str(path)
            if path.suffix == ".tflite":
                from edge_boneage.runtime import LiteRTModel
                from edge_boneage.tflite_meta import read_metadata

                self.format, self._keras = "tflite", None
                self._lite = LiteRTModel(path, num_threads=num_threads)
                self.meta = read_metadata(path, TFLITE_META_NAME) or {}
            elif path.suffix == ".keras":
                from edge_boneage.modelfile import load_model

                self.format, self._lite = "keras", None
                self._keras = load_model(path)
            else:
                raise EdgeBoneageError(f"{path}: unknown model format (use .keras or .tflite)")
        if self._lite is not None:
            det = self._lite.input_details()
            if "image" not in det:
                raise EdgeBoneageError(f"{self.path}: inputs are {self._lite.input_names}; expected 'image' (+ 'bone')")
            self.size = int(list(det["image"].get("shape_signature", det["image"]["shape"]))[1])
            self.input_names = set(det)
        else:
            from edge_boneage.modelfile import model_input_names, model_input_size

            self.size = model_input_size(self._keras)
            self.input_names = set(model_input_names(self._keras))
        self.shared = "bone" in self.input_names
        self.margin, self.margin_from = self._recorded_margin()

    def _recorded_margin(self) -> tuple[float | None, str | None]:
        """(margin, where it was recorded) from the .tflite metadata or the .keras's training run, else (None, None)."""
        crop = self.meta.get("crop") or {}
        if crop.get("margin") is not None:
            return float(crop["margin"]), f"{self.path} metadata {TFLITE_META_NAME}"
        if self.format != "keras" or self.path == "<keras model>":
            return None, None
        rec = trained_margin(self.path, self.size)
        return (rec[0], str(rec[1])) if rec else (None, None)

    def predict(self, crops: np.ndarray, bones, batch: int = 128) -> np.ndarray:
        crops = np.asarray(crops, np.uint8)
        if crops.ndim == 3:
            crops = crops[..., None]
        if crops.shape[1] != self.size:
            raise EdgeBoneageError(f"{self.path}: model input is {self.size}x{self.size}, crops are "
                                   f"{crops.shape[1]}x{crops.shape[2]}")
        bones = np.asarray(bones, np.int32).reshape(-1, 1)
        if not self.shared:
            raise EdgeBoneageError(f"{self.path}: a per-bone model (no 'bone' input); the pipeline needs the "
                                   "shared-backbone stage model")
        outs = []
        for i in range(0, crops.shape[0], batch):
            x = {"image": crops[i : i + batch], "bone": bones[i : i + batch]}
            if self._lite is not None:
                out = self._lite(x)
                probs = out["probs"] if "probs" in out else next(iter(out.values()))
            else:
                out = self._keras.predict_on_batch(x)
                probs = out["probs"] if isinstance(out, dict) else out
            outs.append(np.asarray(probs, np.float64))
        return np.concatenate(outs).reshape(-1, N_CLASSES)

    def predict_images(self, data: StageData, batch: int = 128) -> np.ndarray:
        """(N, 13, 8) stage probabilities of every image of `data`."""
        return self.predict(data.crops, data.bone, batch).reshape(len(data), N_BONES, N_CLASSES)


__all__ = ["StageModel"]
