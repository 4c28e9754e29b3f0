"""Bias correction against the pull to the middle age, fitted on validation images, stored inside the model.

A regressor trained with L1 / soft labels over-predicts the young and under-predicts the old (regression to the
mean). Fit a line ``age' = a * pred + b`` on **validation** predictions (never the test split) and apply it:
either by least squares of true on pred ("ols") or, as Deeplasia does, by regressing pred on true and inverting
("inverse", which undoes the pull to the middle; see FIT_METHODS). Because the age output is ``sum_k p_k c_k`` with ``sum_k p_k = 1``,
``a * age + b = sum_k p_k (a c_k + b)``: the correction is exactly a change of the SoftmaxExpectation centres,
so it lives in the model file (config of its ``age`` layer), runs unchanged in every export and runtime, and the
class centres in the metadata stay the ones the age is computed from. Records ``{a, b, n, fitted_on}`` in the
layer's config too, so a second calibration composes and is visible.
"""

from __future__ import annotations

import numpy as np

from edge_boneage import EdgeBoneageError


#: how the line is fitted: "ols" regresses true on pred (least squared error; its slope is < 1 when predictions are
#: noisy, so it does not undo the pull to the middle); "inverse" regresses pred on true and inverts the line (as
#: Deeplasia does): it stretches the predictions back out, so the young and old age bands lose most of their bias,
#: for a small rise in squared error
FIT_METHODS = ("ols", "inverse")


def fit_linear(pred, true, method: str = "ols") -> tuple[float, float]:
    """(a, b) of the correction age' = a * pred + b (see FIT_METHODS)."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if len(p) < 10 or np.ptp(p) <= 0 or np.ptp(t) <= 0:
        raise EdgeBoneageError(f"bias correction needs at least 10 varied predictions, got {len(p)}")
    if method == "ols":
        a, b = np.polyfit(p, t, 1)
        return float(a), float(b)
    if method == "inverse":
        c, d = np.polyfit(t, p, 1)  # pred = c * true + d
        if c < 0.2:
            raise EdgeBoneageError(f"bias correction: predictions barely follow the true age (slope {c:.3f}); "
                                   f"the inverse fit would blow them up")
        return float(1.0 / c), float(-d / c)
    raise EdgeBoneageError(f"bias correction method {method!r}; choose from {', '.join(FIT_METHODS)}")


def age_layer(model):
    from keras_models.layers import SoftmaxExpectation

    layers = [l for l in model._flatten_layers(include_self=False) if isinstance(l, SoftmaxExpectation)]
    if len(layers) != 1:
        raise EdgeBoneageError(f"model {model.name!r}: expected one SoftmaxExpectation age layer, found {len(layers)}")
    return layers[0]


def keras_interval(model) -> dict | None:
    """The conformal interval record a Keras age model carries (its SoftmaxExpectation config), or None."""
    try:
        return getattr(age_layer(model), "interval", None)
    except EdgeBoneageError:  # no single expected-age layer: no interval
        return None


def apply_linear(model, a: float, b: float, *, n: int, fitted_on: str, val_mae_months: float | None = None) -> dict:
    """Fold age' = a * age + b into the model's class centres (in place); returns the calibration record
    (val_mae_months: the corrected model's MAE on those validation images, in-sample for the 2-parameter fit)."""
    layer = age_layer(model)
    layer.centres = [float(a * c + b) for c in layer.centres]
    rec = {"a": float(a), "b": float(b), "n": int(n), "fitted_on": fitted_on,
           "val_mae_months": None if val_mae_months is None else float(val_mae_months)}
    layer.calibration = list(getattr(layer, "calibration", None) or []) + [rec]
    return rec


#: bands of the *predicted* age (years) for the conformal interval widths
INTERVAL_BANDS_YEARS = ((0, 5), (5, 10), (10, 15), (15, 100))


def fit_intervals(pred, true, coverage: float = 0.9, bands=INTERVAL_BANDS_YEARS) -> dict:
    """Split-conformal half-widths: per band of the predicted age, the ceil((n+1) * coverage)-th smallest |residual|
    (pred already bias-corrected). A band with fewer than 20 images takes the overall half-width."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    r = np.abs(p - t)

    def q(x):
        k = int(np.ceil((len(x) + 1) * coverage))
        return float(np.sort(x)[min(k, len(x)) - 1])

    overall = q(r)
    out = []
    for lo, hi in bands:
        m = (p >= 12 * lo) & (p < 12 * hi)
        out.append({"pred_from_months": 12.0 * lo, "pred_to_months": 12.0 * hi, "n": int(m.sum()),
                    "half_width_months": q(r[m]) if m.sum() >= 20 else overall})
    return {"coverage": coverage, "method": "split conformal on |residual|, by band of the predicted age",
            "overall_half_width_months": overall, "bands": out}


def interval_for(age_months: float, interval: dict | None) -> list[float] | None:
    """[low, high] months of a prediction under a fitted interval record (None without one)."""
    if not interval:
        return None
    hw = interval["overall_half_width_months"]
    for b in interval["bands"]:
        if b["pred_from_months"] <= age_months < b["pred_to_months"]:
            hw = b["half_width_months"]
            break
    return [max(0.0, float(age_months) - hw), float(age_months) + hw]


def set_interval(model, interval: dict) -> None:
    age_layer(model).interval = dict(interval)


__all__ = ["INTERVAL_BANDS_YEARS", "age_layer", "apply_linear", "fit_intervals", "fit_linear", "interval_for",
           "set_interval"]
