"""Small LiteRT models with the project's I/O contract for the demo's tests, benchmark and screenshot.

Random weights: they check that the browser/phone pipeline computes what Python computes, not bone age.
Must run under KERAS_BACKEND=tensorflow (LiteRT export).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _tag(path: Path, record: dict) -> Path:
    from edge_boneage.fileutil import write_bytes_atomic
    from edge_boneage.tflite_meta import add_metadata

    write_bytes_atomic(path, add_metadata(path.read_bytes(), record))
    return path


def _record(name: str, size: int, enhance=None, **extra) -> dict:
    from edge_boneage.preprocess import PreprocessSpec

    return {"model": name, "task": "age", "inputs": ["image", "sex"], "outputs": ["age", "probs"],
            "preprocess": PreprocessSpec(size, enhance).to_dict(), "note": "random weights: demo/test only", **extra}


def build_tiny(size: int = 64, seed: int = 0):
    """Two strided convs -> flatten (+ sex) -> 19-way softmax -> expected age; every pixel moves the output."""
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 1), dtype="uint8", name="image")
    sex = keras.Input((1,), dtype="float32", name="sex")
    x = layers.Rescaling(1 / 255.0)(layers.Lambda(lambda t: keras.ops.cast(t, "float32"), name="to_float")(image))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Concatenate()([layers.Flatten()(x), sex])
    logits = layers.Dense(19, kernel_initializer=keras.initializers.RandomNormal(stddev=0.08, seed=seed))(x)
    probs = layers.Softmax(name="probs")(logits)
    age = layers.Dense(1, use_bias=False, trainable=False, name="age")(probs)
    model = keras.Model([image, sex], {"age": age, "probs": probs}, name="tiny_age")
    model.get_layer("age").set_weights([(12.0 * np.arange(19) + 6.0).reshape(19, 1).astype("float32")])
    return model


def export_tiny(path, size: int = 64, enhance=None, seed: int = 0) -> Path:
    from edge_boneage.convert.export import export_litert

    path = export_litert(build_tiny(size, seed), path)
    return _tag(path, _record("tiny_age (2 convs)", size, enhance))


def export_mobilenet(path, size: int = 64, alpha: float = 0.35, seed: int = 0) -> Path:
    """keras_models' plain MobileNetV3-Large regressor (hard-swish, SE, depthwise: the ops a real model uses)."""
    import keras

    from edge_boneage.convert.export import export_litert
    from keras_models.registry import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("mobilenetv3_large", input_size=size, alpha=alpha)
    path = export_litert(model, path)
    return _tag(path, _record(f"mobilenetv3_large alpha={alpha}", size))
