"""Evaluating an age model file (.keras or .tflite, through edge_boneage.modelfile) on a source: predictions with
the same batching for both formats (``predict_source``) and the report files (``evaluate_model``: report.json,
predictions.csv, plots via edge_boneage.metrics)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.modelfile import KerasModelFile, TFLiteModelFile
from edge_boneage.modelfile import open_model as open_age_model


def predict_source(age_model, source, batch: int = 32) -> np.ndarray:
    """Predicted ages (months) over a source: the same batching/preprocessing code for .keras and .tflite."""
    from edge_boneage.sources import BatchMaker

    maker = BatchMaker(source, batch)
    return np.concatenate([age_model.predict(maker.batch(b)[0]) for b in range(len(maker))]).astype(np.float64)


def evaluate_model(model_path, source, out_dir, *, batch: int = 32, meta: dict | None = None, plots: bool = True) -> dict:
    """Evaluate a .keras/.tflite age model (path, or an `open_age_model` result) on a source; writes
    report.json, predictions.csv and PNGs to out_dir and returns the report."""
    from edge_boneage import metrics

    m = model_path if isinstance(model_path, (KerasModelFile, TFLiteModelFile)) else open_age_model(model_path)
    model_path = m.path
    if m.size != source.size:
        raise EdgeBoneageError(f"{model_path}: model input is {m.size}x{m.size} but the data is {source.size}x{source.size}")
    t0 = time.time()
    pred = predict_source(m, source, batch)
    secs = time.time() - t0
    info = {"model": str(model_path), "format": Path(model_path).suffix[1:], "size": m.size,
            "predict_seconds": secs, **(meta or {})}
    return metrics.write_report(out_dir, source.months, pred, source.male, ids=source.ids, meta=info, plots=plots)


__all__ = ["evaluate_model", "predict_source"]
