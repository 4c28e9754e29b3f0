"""The quality gate's feature check: how far an input lies from the training radiographs in the age model's own features.

    from edge_boneage.featuregate import fit_feature_gate, feature_gate_of
    gated = fit_feature_gate(model, fit_images, val_images, k=64, quantile=99.8, record={...})
    feature_gate_of(gated)      # {"output": "feature_residual", "threshold": 4.76, "k": 64, ...}

The model's pooled features (its ``global_pool`` layer) of ``fit_images`` (training images through the model's own
contract) give a mean and the top-k principal directions; a new output ``feature_residual`` (the layer
keras_models.layers.FeatureResidual) is the length of an input's feature vector outside that subspace. Its
threshold is the ``quantile`` % point of the residual over ``val_images`` (validation images, never the test split).
`predict` flags an image whose residual is above the threshold ("unlike the training radiographs"). Why this score,
k = 64 and 99.8 %: BENCHMARKS.md `feature_distance` (chosen on a development suite of non-hand pictures, then
checked on a held-out one). The age outputs are unchanged: the new output only reads the pooled features.
"""

from __future__ import annotations

import numpy as np

from edge_boneage import EdgeBoneageError

OUTPUT = "feature_residual"
FEATURE_LAYER = "global_pool"
REASON = "unlike the training radiographs"


def _features_model(model):
    import keras

    try:
        pool = model.get_layer(FEATURE_LAYER)
    except ValueError:
        raise EdgeBoneageError(f"{model.name}: no '{FEATURE_LAYER}' layer to take features from") from None
    return keras.Model(model.inputs, pool.output)


def residuals(F: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """(N,) lengths of the rows of F - mean outside the span of the (k, C) orthonormal rows `comps`."""
    v = np.asarray(F, np.float64) - mean
    return np.linalg.norm(v - (v @ comps.T) @ comps, axis=1)


def pooled_features(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, C) float64 pooled features of (N, S, S) uint8 contract images (sex 0.5: the features precede the sex input)."""
    fm = _features_model(model)
    feed = {"image": np.asarray(images, np.uint8)[..., None]}
    if "sex" in [t.name.split(":")[0] for t in fm.inputs]:
        feed["sex"] = np.full((len(images), 1), 0.5, np.float32)
    return np.asarray(fm.predict(feed, batch_size=batch, verbose=0), np.float64)


def fit_feature_gate(model, fit_images: np.ndarray, val_images: np.ndarray, k: int = 64, quantile: float = 99.8,
                     record: dict | None = None):
    """A copy of `model` with the extra output OUTPUT (FeatureResidual fitted on fit_images, threshold on val_images)."""
    import keras

    from keras_models.layers import FeatureResidual

    if OUTPUT in model.output_names:
        raise EdgeBoneageError(f"{model.name}: already has a '{OUTPUT}' output")
    F = pooled_features(model, fit_images)
    if len(F) <= k:
        raise EdgeBoneageError(f"feature gate: {len(F)} fitting images are too few for k={k} directions")
    mu = F.mean(0)
    _u, _s, vt = np.linalg.svd(F - mu, full_matrices=False)
    comps = vt[:k]
    res = residuals(pooled_features(model, val_images), mu, comps)
    thr = float(np.percentile(res, quantile))
    rec = {**(record or {}), "fit_n": int(len(F)), "val_n": int(len(res)), "val_quantile_pct": float(quantile)}
    layer = FeatureResidual(dim=F.shape[1], k=k, threshold=thr, record=rec, name=OUTPUT)
    outputs = {name: t for name, t in zip(model.output_names, model.outputs)}
    outputs[OUTPUT] = layer(model.get_layer(FEATURE_LAYER).output)
    gated = keras.Model(model.inputs, outputs, name=model.name)
    layer.set_weights([mu.astype(np.float32), comps.astype(np.float32)])
    return gated


def feature_gate_of(model) -> dict | None:
    """{"output", "threshold", "k", ...record} of a Keras model with the gate, else None."""
    try:
        layer = model.get_layer(OUTPUT)
    except ValueError:
        return None
    if getattr(layer, "threshold", None) is None:
        return None
    return {"output": OUTPUT, "threshold": float(layer.threshold), "k": int(layer.k), **(layer.record or {})}


def feature_gate_of_metadata(outputs_meta: dict, output_names) -> dict | None:
    """The same record from a .tflite's metadata "outputs" (None when absent, or off in that file: threshold None)."""
    rec = (outputs_meta or {}).get(OUTPUT) or {}
    if rec.get("threshold") is None or OUTPUT not in output_names:
        return None
    return {"output": OUTPUT, **rec}


def judge(outputs: dict, gate: dict | None) -> tuple[float | None, str | None]:
    """(residual or None, reason or None) of one prediction's outputs under the model's gate record."""
    if not gate or OUTPUT not in outputs:
        return None, None
    v = float(np.asarray(outputs[OUTPUT]).reshape(-1)[0])
    if not np.isfinite(v) or v > gate["threshold"]:
        return v, f"{REASON} (feature residual {v:.2f} > {gate['threshold']:.2f})"
    return v, None

