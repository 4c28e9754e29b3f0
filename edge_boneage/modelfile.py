"""One handle for a model file: ``open_model(path)`` for ``.keras`` and ``.tflite`` alike, and the only ``.keras``
loader (``load_model``: custom layers registered, ``safe_mode=True``).

The handle says what the file is and how to feed it, all read from the file itself: ``kind`` ("keras" |
"tflite"), ``task``, ``size``, ``input_names``, ``spec`` (the PreprocessSpec contract), ``interval`` (the calibrated
prediction interval record), ``class_centres`` and ``metadata``; ``run(inputs) -> {output: array}`` and, for age
models, ``predict(inputs) -> ages (B,)``. A ``.tflite`` handle imports numpy + the LiteRT runtime only; Keras is
imported only for a ``.keras`` file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.vocab import AGE_CLASS_CENTRES_MONTHS

#: the 19 one-year classes' centres, 12k+6 months (edge_boneage.vocab)
DEFAULT_CLASS_CENTRES_MONTHS = list(AGE_CLASS_CENTRES_MONTHS)


def import_custom_objects() -> None:
    """Register every custom layer (needed before keras.saving.load_model)."""
    import keras_models.layers  # noqa: F401
    from keras_models.registry import list_models

    list_models()  # imports every builder module and their layers


def load_model(path: str | os.PathLike):
    """The project's only .keras loader: custom layers registered, safe_mode=True (no code from the file runs)."""
    import keras

    import_custom_objects()
    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: no such model file")
    try:
        return keras.saving.load_model(str(path), safe_mode=True)
    except Exception as exc:  # keras raises many kinds here
        raise EdgeBoneageError(f"{path}: cannot load Keras model ({type(exc).__name__}: {exc})".replace("\n", " ")) from exc


def model_input_names(model) -> list[str]:
    return [t.name.split(":")[0] for t in model.inputs] if not isinstance(model.input, dict) else list(model.input)


def model_input_size(model) -> int:
    for t in model.inputs:
        if t.name.split(":")[0] == "image" or len(t.shape) == 4:
            return int(t.shape[1])
    raise EdgeBoneageError(f"model {model.name!r} has no (B,S,S,1) 'image' input")


def _age_of(out: dict, where) -> np.ndarray:
    if "age" in out:
        return np.asarray(out["age"]).reshape(-1)
    ones = [v for v in out.values() if np.asarray(v).ndim == 2 and np.asarray(v).shape[1] == 1]
    if len(ones) != 1:
        raise EdgeBoneageError(f"{where}: cannot tell which output is the age (outputs {list(out)})")
    return np.asarray(ones[0]).reshape(-1)


class TFLiteModelFile:
    """A .tflite through edge_boneage.runtime (no TensorFlow / Keras)."""

    kind = "tflite"

    def __init__(self, path, threads: int = 1):
        from edge_boneage.preprocess import PreprocessSpec
        from edge_boneage.runtime import LiteRTModel
        from edge_boneage.tflite_meta import read_metadata

        self.path = Path(path)
        self.model = LiteRTModel(self.path, num_threads=threads)
        details = self.model.input_details()
        if "image" not in details:
            raise EdgeBoneageError(f"{path}: model inputs are {self.model.input_names}; expected an 'image' input")
        shape = list(details["image"].get("shape_signature", details["image"]["shape"]))
        self.size = int(shape[1])
        self.input_names = list(self.model.input_names)
        self.metadata = read_metadata(self.path) or {}
        d = (self.metadata.get("input") or {}).get("preprocess") or self.metadata.get("preprocess")
        self.spec = PreprocessSpec.from_dict(d) if d else PreprocessSpec(input_size=self.size, version=1)
        outputs = self.metadata.get("outputs") or {}
        self.interval = (outputs.get("age") or {}).get("interval")
        from edge_boneage.featuregate import feature_gate_of_metadata

        self.feature_gate = feature_gate_of_metadata(outputs, self.model.output_names)
        centres = outputs.get("class_centres_months") or (outputs.get("probs") or {}).get("class_centres_months")
        self.class_centres = list(centres or DEFAULT_CLASS_CENTRES_MONTHS)
        self.task = (self.metadata.get("model") or {}).get("task") or ("age" if "age" in self.model.output_names
                                                                        else "tw3_stage")

    def run(self, inputs: dict) -> dict:
        out = self.model({k: v for k, v in inputs.items() if k in self.input_names})
        return {k: np.asarray(v) for k, v in out.items()}

    def predict(self, inputs: dict) -> np.ndarray:
        return _age_of(self.run(inputs), self.path)


class KerasModelFile:
    """A .keras through load_model (safe_mode)."""

    kind = "keras"

    def __init__(self, path, threads: int = 1):  # threads: TensorFlow's own setting applies
        from edge_boneage.calibrate import keras_interval
        from edge_boneage.preprocess import spec_of_keras_model

        self.path = Path(path)
        self.model = load_model(self.path)
        self.size = model_input_size(self.model)
        self.input_names = model_input_names(self.model)
        self.spec = spec_of_keras_model(self.model)
        self.interval = keras_interval(self.model)
        from edge_boneage.featuregate import feature_gate_of

        self.feature_gate = feature_gate_of(self.model)
        self.metadata = {}
        self.class_centres = list(DEFAULT_CLASS_CENTRES_MONTHS)
        try:
            from edge_boneage.calibrate import age_layer

            self.class_centres = [float(c) for c in age_layer(self.model).centres]
        except (EdgeBoneageError, AttributeError, TypeError):
            pass
        self.task = "age" if "age" in list(self.model.output_names) else "tw3_stage"

    def run(self, inputs: dict) -> dict:
        out = self.model.predict_on_batch({k: v for k, v in inputs.items() if k in self.input_names})
        if not isinstance(out, dict):
            out = dict(zip(self.model.output_names, out if isinstance(out, (list, tuple)) else [out]))
        return {k: np.asarray(v) for k, v in out.items()}

    def predict(self, inputs: dict) -> np.ndarray:
        return _age_of(self.run(inputs), self.path)


def open_model(path: str | os.PathLike, threads: int = 1):
    """A handle on a .keras or .tflite model file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: no such model file")
    if path.suffix == ".tflite":
        return TFLiteModelFile(path, threads)
    if path.suffix == ".keras":
        return KerasModelFile(path, threads)
    raise EdgeBoneageError(f"{path}: unknown model format (use .keras or .tflite)")
