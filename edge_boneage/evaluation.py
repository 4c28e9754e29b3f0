"""Evaluating an age model file (.keras or .tflite, through edge_boneage.modelfile) on a source: predictions with
the same batching for both formats (``predict_source``), predict's quality gate on every image (``gate_source``)
and the report files (``evaluate_model``: report.json, predictions.csv, plots via edge_boneage.metrics)."""

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


def predict_outputs(age_model, source, batch: int = 32) -> dict[str, np.ndarray]:
    """Every output of the model over a source, concatenated (same batching as ``predict_source``)."""
    from edge_boneage.modelfile import _age_of
    from edge_boneage.sources import BatchMaker

    maker = BatchMaker(source, batch)
    outs = [age_model.run(maker.batch(b)[0]) for b in range(len(maker))]
    res = {k: np.concatenate([np.asarray(o[k]).reshape(len(np.asarray(o[k])), -1) for o in outs]) for k in outs[0]}
    res["age"] = np.concatenate([_age_of(o, age_model.path) for o in outs]).astype(np.float64)
    return res


def _raw_image(source, i: int):
    """(the image as decoded from its file, its ImageMeta) for a file source; the array itself for in-memory data."""
    samples = getattr(source, "samples", None)
    if samples is None:
        return np.asarray(source.image(i)), None
    from edge_boneage.io import read_image
    from edge_boneage.sources import _field

    return read_image(_field(samples[i], "path"))


def reason_key(reason: str) -> str:
    """A gate reason without its measured value ("feature residual 5.2 > 4.8" -> the phrase before " (")."""
    return reason.split(" (")[0]


def gate_source(source, outputs: dict, feature_gate: dict | None, *, orient: bool = True) -> list[tuple[bool, list[str]]]:
    """predict's quality gate (edge_boneage.predict.gate_verdict) on every image of a source: the image statistics
    on the decoded file, the orientation classifier's confidence (the image is not turned: labelled sets are
    upright left hands) and the model's feature check from its ``outputs`` (``predict_outputs``)."""
    from edge_boneage.featuregate import OUTPUT, judge
    from edge_boneage.orientation import default_orienter
    from edge_boneage.predict import gate_verdict
    from edge_boneage.quality import assess

    orienter = default_orienter() if orient else None
    verdicts = []
    for i in range(len(source)):
        img, meta = _raw_image(source, i)
        orientation = None if orienter is None else orienter.estimate(img).to_dict()
        row = {OUTPUT: outputs[OUTPUT][i]} if OUTPUT in outputs else {}
        _res, feature_reason = judge(row, feature_gate)
        verdicts.append(gate_verdict(assess(img, meta), orientation, feature_reason))
    return verdicts


def gate_summary(verdicts, true_months, pred_months, male, ids) -> dict:
    """report.json's "quality_gate": how many images were flagged, by reason, which, and the metrics of the rest."""
    from collections import Counter

    from edge_boneage.metrics import summarize

    ok = np.array([v[0] for v in verdicts], bool)
    counts = Counter(reason_key(r) for v in verdicts for r in v[1])
    acc = summarize(np.asarray(true_months, np.float64)[ok], np.asarray(pred_months, np.float64)[ok]) if ok.any() else None
    return {"n": int(ok.size), "n_flagged": int((~ok).sum()), "flagged_fraction": float((~ok).mean()),
            "reasons": dict(counts.most_common()),
            "flagged": [{"id": str(ids[i]), "reasons": verdicts[i][1]} for i in np.flatnonzero(~ok)],
            "accepted_overall": acc}


def evaluate_model(model_path, source, out_dir, *, batch: int = 32, meta: dict | None = None, plots: bool = True,
                   gate: bool = True) -> dict:
    """Evaluate a .keras/.tflite age model (path, or an `open_age_model` result) on a source; writes
    report.json, predictions.csv and PNGs to out_dir and returns the report. ``gate``: run predict's quality gate on
    every image too (report "quality_gate", predictions.csv columns quality_ok / quality_reasons); the metrics stay
    over all images, with the accepted images' overall metrics beside them."""
    from edge_boneage import metrics

    m = model_path if isinstance(model_path, (KerasModelFile, TFLiteModelFile)) else open_age_model(model_path)
    model_path = m.path
    if m.size != source.size:
        raise EdgeBoneageError(f"{model_path}: model input is {m.size}x{m.size} but the data is {source.size}x{source.size}")
    t0 = time.time()
    outputs = predict_outputs(m, source, batch)
    pred = outputs["age"]
    secs = time.time() - t0
    info = {"model": str(model_path), "format": Path(model_path).suffix[1:], "size": m.size,
            "predict_seconds": secs, **(meta or {})}
    columns, sections = None, None
    if gate:
        verdicts = gate_source(source, outputs, getattr(m, "feature_gate", None))
        sections = {"quality_gate": gate_summary(verdicts, source.months, pred, source.male, source.ids)}
        columns = {"quality_ok": [str(int(v[0])) for v in verdicts],
                   "quality_reasons": ["; ".join(v[1]) for v in verdicts]}
    return metrics.write_report(out_dir, source.months, pred, source.male, ids=source.ids, meta=info, plots=plots,
                                columns=columns, sections=sections)


__all__ = ["evaluate_model", "gate_source", "gate_summary", "predict_outputs", "predict_source", "reason_key"]
