"""Multiply-accumulates (MACs) of a Keras model counted from its layers, per sample (batch dimension excluded).

Counted: Conv1D/2D/3D (incl. grouped), DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and Dense, from each
layer's kernel shape and output shape; nested models are walked. Layers called on a reshaped batch (e.g. a
recognition net run on N regions folded into the batch) are counted once per *sample of their own batch*, so such
models are under-counted here: the exported .tflite graph count (``device_runner.count_macs``) sees the real
shapes and is what the benchmark table reports whenever a .tflite exists.
"""

from __future__ import annotations

import numpy as np


def _walk(layer):
    for sub in getattr(layer, "layers", []) or []:
        yield sub
        yield from _walk(sub)


def _out_shape(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return None
    return tuple(shape)


def layer_macs(layer) -> int:
    """MACs of one (non-container) layer for one sample; 0 for layers that are not conv/dense."""
    out = _out_shape(layer)
    if out is None or any(d is None for d in out[1:]):
        return 0
    n_out = int(np.prod(out[1:]))
    kind = type(layer).__name__
    kernel = getattr(layer, "kernel", None)
    if kind == "DepthwiseConv2D" or kind == "DepthwiseConv1D":
        k = tuple(layer.depthwise_kernel.shape if hasattr(layer, "depthwise_kernel") else kernel.shape)
        return n_out * int(np.prod(k[:-2]))
    if kind == "SeparableConv2D":
        dk = tuple(layer.depthwise_kernel.shape)  # (kh, kw, Cin, mult)
        pk = tuple(layer.pointwise_kernel.shape)  # (1, 1, Cin*mult, Cout)
        spatial = n_out // int(out[-1])
        return spatial * int(np.prod(dk)) + n_out * int(pk[2])
    if kind in ("Conv1D", "Conv2D", "Conv3D") and kernel is not None:
        k = tuple(kernel.shape)  # (*spatial, Cin/groups, Cout)
        return n_out * int(np.prod(k[:-1]))
    if kind in ("Conv2DTranspose", "Conv1DTranspose", "Conv3DTranspose") and kernel is not None:
        k = tuple(kernel.shape)  # (*spatial, Cout, Cin)
        in_shape = tuple(layer.input.shape)
        return int(np.prod(in_shape[1:])) * int(np.prod(k[:-2])) * int(k[-2])
    if kind == "Dense" and kernel is not None:
        return n_out * int(kernel.shape[0])
    return 0


def keras_macs(model) -> dict:
    """{"macs": total per sample, "by_layer_type": {class name: macs}}."""
    by_type: dict[str, int] = {}
    for layer in _walk(model):
        if getattr(layer, "layers", None):
            continue
        m = layer_macs(layer)
        if m:
            name = type(layer).__name__
            by_type[name] = by_type.get(name, 0) + int(m)
    return {"macs": int(sum(by_type.values())), "by_layer_type": dict(sorted(by_type.items()))}
