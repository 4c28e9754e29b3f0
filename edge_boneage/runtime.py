"""Run a .tflite model with the LiteRT interpreter: inputs and outputs by name, (de)quantisation handled.

Imports only numpy and the interpreter (ai-edge-litert, else tflite-runtime): no TensorFlow, no Keras.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise EdgeBoneageError("no LiteRT interpreter: pip install ai-edge-litert") from exc
    return Interpreter


def tensor_key(name: str) -> str:
    """'serving_default_image:0' -> 'image' (the Keras input name inside a converter tensor name)."""
    name = re.sub(r":\d+$", "", name)
    return re.sub(r"^serving_default_", "", name)


def _by_key(details: list[dict]) -> dict[str, dict]:
    """{short name: detail}; tensors whose short names collide (e.g. 'StatefulPartitionedCall:0' and ':1') keep
    their full names."""
    keys = [tensor_key(d["name"]) for d in details]
    return {(k if keys.count(k) == 1 else d["name"]): d for k, d in zip(keys, details)}


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float values -> the tensor's integer dtype with its scale/zero-point (plain cast when not quantised)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    x = np.asarray(x)
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float64) / scale) + zero
        return np.clip(q, info.min, info.max).astype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    """Integer tensor with scale/zero-point -> float32; other tensors are returned unchanged."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(np.asarray(q).dtype, np.integer) and scale:
        return ((q.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)
    return q


class LiteRTModel:
    """A .tflite model: `model(image=..., sex=...)` or `model({"image": ...})` -> dict of named numpy outputs.

    Inputs are fed by name (the SignatureDef names, i.e. the Keras input names), never by position.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeBoneageError(f"{self.path}: no such .tflite file")
        Interpreter = _interpreter_class()
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=int(num_threads))
        except (ValueError, RuntimeError) as exc:
            raise EdgeBoneageError(f"{self.path}: cannot load as a LiteRT model ({exc})".replace("\n", " ")) from exc
        sigs = self.interpreter.get_signature_list() if hasattr(self.interpreter, "get_signature_list") else {}
        self._runner = None
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            self._runner = self.interpreter.get_signature_runner(key)
            self._in = dict(self._runner.get_input_details())
            self._out = dict(self._runner.get_output_details())
        else:  # no SignatureDef: fall back to the tensor names the converter wrote
            self.interpreter.allocate_tensors()
            self._in = _by_key(self.interpreter.get_input_details())
            self._out = _by_key(self.interpreter.get_output_details())

    def input_details(self) -> dict[str, dict]:
        """{input name: tensor detail (shape_signature, dtype, quantization, ...)}."""
        return dict(self._in)

    def output_details(self) -> dict[str, dict]:
        """{output name: tensor detail}."""
        return dict(self._out)

    @property
    def input_names(self) -> list[str]:
        return list(self._in)

    @property
    def output_names(self) -> list[str]:
        return list(self._out)

    def _prepare(self, inputs: dict) -> dict[str, np.ndarray]:
        missing = [n for n in self._in if n not in inputs]
        extra = [n for n in inputs if n not in self._in]
        if missing or extra:
            raise EdgeBoneageError(
                f"{self.path}: model inputs are {self.input_names}; missing {missing}, unexpected {extra}"
            )
        prepared = {}
        for name, detail in self._in.items():
            x = np.asarray(inputs[name])
            sig = list(detail.get("shape_signature", detail["shape"]))
            if len(sig) != x.ndim or any(s not in (-1, d) for s, d in zip(sig[1:], x.shape[1:])):
                raise EdgeBoneageError(
                    f"{self.path}: input {name!r} has shape {x.shape}, model expects {tuple(sig)} (-1 = any)"
                )
            prepared[name] = np.ascontiguousarray(quantize(x, detail))
        return prepared

    def __call__(self, inputs: dict | None = None, **kwargs) -> dict[str, np.ndarray]:
        feed = self._prepare({**(inputs or {}), **kwargs})
        try:
            raw = self._invoke(feed)
        except (RuntimeError, ValueError) as exc:
            msg = " ".join(str(exc).split())[:500]
            raise EdgeBoneageError(f"{self.path}: LiteRT inference failed: {msg}") from exc
        return {name: np.array(dequantize(raw[name], self._out[name])) for name in self._out}

    def _invoke(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._runner is not None:
            raw = self._runner(**feed)  # resizes inputs (e.g. batch) to the fed shapes
        else:
            it = self.interpreter
            for name, x in feed.items():
                it.resize_tensor_input(self._in[name]["index"], list(x.shape))
            it.allocate_tensors()
            for name, x in feed.items():
                it.set_tensor(self._in[name]["index"], x)
            it.invoke()
            raw = {name: it.get_tensor(d["index"]) for name, d in self._out.items()}
        return raw

    def __repr__(self) -> str:
        return f"LiteRTModel({str(self.path)!r}, inputs={self.input_names}, outputs={self.output_names})"
