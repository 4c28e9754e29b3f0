"""Scoring stage probabilities (``edge_boneage.tw3``): per-bone scores (classic argmax stage, Top2, TopN with
threshold P: the paper's formula 1), the 13 summed and mapped to bone age on the sex's TW3-C RUS curve; the
threshold sweep on validation (MAE vs P, argmin per sex: the paper's Fig. 2/3 and Table 3), the Table-4 method
comparison, per-bone stage accuracy and the true-stage floor."""

from __future__ import annotations

import numpy as np

from edge_boneage import EdgeBoneageError, tw3
from edge_boneage.tw3_pipeline.constants import BONES, DEFAULT_THRESHOLDS, N_BONES, N_CLASSES


def bone_probs(probs: np.ndarray) -> dict[str, np.ndarray]:
    """(..., 13, 8) model probabilities -> {bone: (..., n_grades)} (the ulna's masked 8th grade dropped, so the
    vectors have the paper's grades-1..n layout that edge_boneage.tw3 expects)."""
    p = np.asarray(probs, np.float64)
    if p.shape[-2:] != (N_BONES, N_CLASSES):
        raise EdgeBoneageError(f"expected stage probabilities (..., {N_BONES}, {N_CLASSES}), got {p.shape}")
    return {b: p[..., i, : tw3.N_GRADES[b]] for i, b in enumerate(BONES)}


def bone_scores(probs, male, method: str = "topn", threshold: float = tw3.DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-bone TW3-C RUS scores (..., 13) from (..., 13, 8) probabilities; `male` bool per image (or scalar)."""
    bp = bone_probs(probs)
    batch = np.asarray(probs).shape[:-2]
    is_male = np.broadcast_to(np.asarray(male, bool), batch)
    cols = []
    for b in BONES:
        sm = tw3.bone_score(bp[b], b, "male", method, threshold)
        sf = tw3.bone_score(bp[b], b, "female", method, threshold)
        cols.append(np.where(is_male, sm, sf))
    return np.stack(cols, axis=-1)


def score_probs(probs, male, method: str = "topn", threshold: float = tw3.DEFAULT_THRESHOLD, curve: str = "tw3c"):
    """(bone scores (..., 13), total RUS score (...), bone age years (...), clamped flags (...))."""
    s = bone_scores(probs, male, method, threshold)
    total = s.sum(axis=-1)
    age, flags = tw3.score_to_age(total, np.broadcast_to(np.asarray(male, bool), total.shape), curve=curve,
                                  return_flags=True)
    return s, total, np.asarray(age), np.asarray(flags)


def _metrics(pred_years, true_years) -> dict:
    err = np.asarray(pred_years, np.float64) - np.asarray(true_years, np.float64)
    n = int(err.size)
    if n == 0:
        return {"n": 0, "mae_years": None, "acc_1y": None, "bias_years": None}
    return {"n": n, "mae_years": float(np.abs(err).mean()), "acc_1y": float((np.abs(err) <= 1.0).mean()),
            "bias_years": float(err.mean())}


def threshold_sweep(probs, true_years, male, thresholds=DEFAULT_THRESHOLDS, curve: str = "tw3c") -> dict:
    """MAE (years) of TopN vs threshold P, per sex and overall; ``best`` = argmin P (the smallest P on ties)."""
    thr = [float(t) for t in thresholds]
    true_years = np.asarray(true_years, np.float64)
    male = np.asarray(male, bool)
    groups = {"male": male, "female": ~male, "all": np.ones_like(male)}
    mae = {g: [] for g in groups}
    for t in thr:
        _, _, age, _ = score_probs(probs, male, "topn", t, curve)
        err = np.abs(age - true_years)
        for g, m in groups.items():
            mae[g].append(float(err[m].mean()) if m.any() else None)
    best = {}
    for g, vals in mae.items():
        ok = [(v, i) for i, v in enumerate(vals) if v is not None]
        if ok:
            v, i = min(ok)
            best[g] = {"threshold": thr[i], "mae_years": v}
    return {"thresholds": thr, "mae_years": mae, "best": best, "n": {g: int(m.sum()) for g, m in groups.items()},
            "curve": curve}


def method_table(probs, true_years, male, thresholds: dict | float, curve: str = "tw3c") -> dict:
    """Table 4: {method: {sex: {n, mae_years, acc_1y, bias_years}}} for classic, Top2 and TopN (per-sex P)."""
    true_years = np.asarray(true_years, np.float64)
    male = np.asarray(male, bool)
    if not isinstance(thresholds, dict):
        thresholds = {"male": float(thresholds), "female": float(thresholds)}
    table = {}
    for method in tw3.METHODS:
        row = {}
        pred = np.zeros_like(true_years)
        for sex, m in (("male", male), ("female", ~male)):
            if m.any():
                _, _, pred[m], _ = score_probs(probs[m], True if sex == "male" else False, method,
                                               thresholds.get(sex, tw3.DEFAULT_THRESHOLD), curve)
            row[sex] = _metrics(pred[m], true_years[m])
        row["all"] = _metrics(pred, true_years)
        table[method] = row
    return table


def stage_accuracy(probs, grades) -> dict:
    """Per-bone stage accuracy of argmax vs the true grade (stage-A crops excluded): exact and within 1 stage."""
    pred = np.asarray(probs).argmax(-1) + 1  # (N, 13) grades 1..8
    grades = np.asarray(grades)
    out = {}
    for i, b in enumerate(BONES):
        keep = grades[:, i] > 0
        d = np.abs(pred[keep, i] - grades[keep, i])
        out[b] = {"n": int(keep.sum()), "excluded_stage_a": int((~keep).sum()),
                  "acc": float((d == 0).mean()) if keep.any() else None,
                  "acc_pm1": float((d <= 1).mean()) if keep.any() else None}
    keep = grades > 0
    d = np.abs(pred - grades)[keep]
    out["all"] = {"n": int(keep.sum()), "excluded_stage_a": int((~keep).sum()),
                  "acc": float((d == 0).mean()) if d.size else None,
                  "acc_pm1": float((d <= 1).mean()) if d.size else None}
    return out


def oracle_table(grades, true_years, male, curve: str = "tw3c") -> dict:
    """MAE of the TRUE stages (classic scoring of the generator's grades): the floor any stage model can reach."""
    grades = np.asarray(grades)
    male = np.asarray(male, bool)
    total = np.array([tw3.total_score(g, "male" if m else "female") for g, m in zip(grades, male)])
    age = tw3.score_to_age(total, male, curve=curve)
    return {"male": _metrics(age[male], np.asarray(true_years)[male]),
            "female": _metrics(age[~male], np.asarray(true_years)[~male]),
            "all": _metrics(age, true_years)}


__all__ = ["bone_probs", "bone_scores", "method_table", "oracle_table", "score_probs", "stage_accuracy",
           "threshold_sweep"]
