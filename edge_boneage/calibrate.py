"""Bias correction against the pull to the middle age, fitted on validation images, stored inside the model.

A regressor trained with L1 / soft labels over-predicts the young and under-predicts the old (regression to the
mean). As Deeplasia does, fit a line ``true = a * pred + b`` by least squares on **validation** predictions
(never the test split) and apply it. Because the age output is ``sum_k p_k c_k`` with ``sum_k p_k = 1``,
``a * age + b = sum_k p_k (a c_k + b)``: the correction is exactly a change of the SoftmaxExpectation centres,
so it lives in the model file (config of its ``age`` layer), runs unchanged in every export and runtime, and the
class centres in the metadata stay the ones the age is computed from. Records ``{a, b, n, fitted_on}`` in the
layer's config too, so a second calibration composes and is visible.
"""

from __future__ import annotations

import numpy as np

from edge_boneage import EdgeBoneageError


def fit_linear(pred, true) -> tuple[float, float]:
    """(a, b) minimising sum (a * pred + b - true)^2."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(p) < 10 or np.ptp(p) <= 0:
        raise EdgeBoneageError(f"bias correction needs at least 10 varied predictions, got {len(p)}")
    a, b = np.polyfit(p, t, 1)
    return float(a), float(b)


def age_layer(model):
    from keras_models.layers import SoftmaxExpectation

    layers = [l for l in model._flatten_layers(include_self=False) if isinstance(l, SoftmaxExpectation)]
    if len(layers) != 1:
        raise EdgeBoneageError(f"model {model.name!r}: expected one SoftmaxExpectation age layer, found {len(layers)}")
    return layers[0]


def apply_linear(model, a: float, b: float, *, n: int, fitted_on: str) -> dict:
    """Fold age' = a * age + b into the model's class centres (in place); returns the calibration record."""
    layer = age_layer(model)
    layer.centres = [float(a * c + b) for c in layer.centres]
    rec = {"a": float(a), "b": float(b), "n": int(n), "fitted_on": fitted_on}
    layer.calibration = list(getattr(layer, "calibration", None) or []) + [rec]
    return rec


__all__ = ["age_layer", "apply_linear", "fit_linear"]
