"""Bone-age evaluation metrics, a JSON report and PNG plots (NumPy + matplotlib only; no TensorFlow, no Keras).

All ages are in MONTHS on the way in. Definitions (`err = predicted - true`, months):

- ``mae_months`` = mean |err|; ``mae_years`` = mae_months / 12 (the papers report MAE in years).
- ``rmse_months`` = sqrt(mean err^2).
- ``acc_1y`` = fraction of images with |err| <= 12 months: the "accuracy" of Guo et al. 2022 (seed 003)
  is the share of predictions within one year of the truth.
- ``bias_months`` = mean signed err (positive = the model over-estimates the age).
- ``sd_err_months`` = sample SD of err (ddof=1; ``None`` for n < 2); Bland-Altman limits of agreement are
  ``bias +- 1.96 * sd_err``.
- ``n``: number of images. A group with n = 0 has every metric ``None`` (JSON null), never NaN.

Groups: overall, per sex (``male``/``female``, when sex is given) and per age band of the TRUE age in years,
half-open ``[lo, hi)`` except the last band, which also holds its upper bound (19 y = 228 months).
Ages outside every band count in ``overall`` only.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.fileutil import atomic_path, write_json_atomic, write_text_atomic

AGE_BANDS_YEARS: tuple[tuple[float, float], ...] = ((0, 2), (2, 5), (5, 10), (10, 15), (15, 19))
ONE_YEAR_MONTHS = 12.0

_METRIC_KEYS = ("n", "mae_months", "mae_years", "rmse_months", "acc_1y", "bias_months", "sd_err_months",
                "loa_low_months", "loa_high_months")


def _as_1d(name: str, x, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if n is not None and a.shape[0] != n:
        raise EdgeBoneageError(f"metrics: {name} has {a.shape[0]} values but true ages have {n}")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise EdgeBoneageError(f"metrics: {name} value #{bad} is not a finite number ({a[bad]})")
    return a


def band_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g}y"


def band_masks(true_months: np.ndarray, bands: Sequence[tuple[float, float]] = AGE_BANDS_YEARS) -> dict[str, np.ndarray]:
    """Boolean mask per age band of the true age (years); the last band is closed on the right."""
    years = np.asarray(true_months, dtype=np.float64) / 12.0
    out = {}
    for i, (lo, hi) in enumerate(bands):
        upper = years <= hi if i == len(bands) - 1 else years < hi
        out[band_label(lo, hi)] = (years >= lo) & upper
    return out


def summarize(true_months, pred_months) -> dict:
    """Metrics for one group (see module docstring). JSON-serialisable: Python floats/ints or None."""
    t = _as_1d("true ages", true_months)
    p = _as_1d("predicted ages", pred_months, t.shape[0])
    n = int(t.shape[0])
    if n == 0:
        return {k: (0 if k == "n" else None) for k in _METRIC_KEYS}
    err = p - t
    abs_err = np.abs(err)
    mae = float(abs_err.mean())
    bias = float(err.mean())
    sd = float(err.std(ddof=1)) if n > 1 else None
    return {
        "n": n,
        "mae_months": mae,
        "mae_years": mae / 12.0,
        "rmse_months": float(math.sqrt(float((err**2).mean()))),
        "acc_1y": float((abs_err <= ONE_YEAR_MONTHS).mean()),
        "bias_months": bias,
        "sd_err_months": sd,
        "loa_low_months": None if sd is None else bias - 1.96 * sd,
        "loa_high_months": None if sd is None else bias + 1.96 * sd,
    }


def compute_report(true_months, pred_months, male=None, *, bands: Sequence[tuple[float, float]] = AGE_BANDS_YEARS,
                   meta: dict | None = None) -> dict:
    """Full report: ``{"overall", "by_sex", "by_age_band", "bands_years", "meta"}``.

    `male`: optional per-image sex (1/True = male, 0/False = female); ``by_sex`` is ``{}`` without it.
    `meta`: free JSON-serialisable context (model path, data source, ...) copied into the report.
    """
    t = _as_1d("true ages", true_months)
    p = _as_1d("predicted ages", pred_months, t.shape[0])
    report = {"overall": summarize(t, p), "by_sex": {}, "by_age_band": {},
              "bands_years": [[float(lo), float(hi)] for lo, hi in bands], "meta": dict(meta or {})}
    if male is not None:
        m = _as_1d("sex", male, t.shape[0])
        if not np.all((m == 0) | (m == 1)):
            raise EdgeBoneageError("metrics: sex values must be 0 (female) or 1 (male)")
        report["by_sex"] = {"male": summarize(t[m == 1], p[m == 1]), "female": summarize(t[m == 0], p[m == 0])}
    for label, mask in band_masks(t, bands).items():
        report["by_age_band"][label] = summarize(t[mask], p[mask])
    return report


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(report: dict) -> str:
    """A plain-text table of the report (one row per group) for printing."""
    rows = [("overall", report["overall"])]
    rows += [(f"sex={k}", v) for k, v in report.get("by_sex", {}).items()]
    rows += [(f"age {k}", v) for k, v in report.get("by_age_band", {}).items()]
    head = f"{'group':<14}{'n':>7}{'MAE mo':>9}{'MAE y':>8}{'RMSE mo':>9}{'±1y acc':>9}{'bias mo':>9}"
    lines = [head, "-" * len(head)]
    for name, s in rows:
        acc = None if s["acc_1y"] is None else 100.0 * s["acc_1y"]
        lines.append(f"{name:<14}{s['n']:>7d}{_fmt(s['mae_months'], '.2f'):>9}{_fmt(s['mae_years'], '.3f'):>8}"
                     f"{_fmt(s['rmse_months'], '.2f'):>9}{_fmt(acc, '.1f') + ('%' if acc is not None else ''):>9}"
                     f"{_fmt(s['bias_months'], '+.2f'):>9}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- plots


def _new_figure(w=5.0, h=5.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


def plot_scatter(true_months, pred_months, path, *, male=None, title: str = "Predicted vs true bone age") -> None:
    t = _as_1d("true ages", true_months)
    p = _as_1d("predicted ages", pred_months, t.shape[0])
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    if male is not None:
        m = _as_1d("sex", male, t.shape[0]) == 1
        ax.scatter(t[m], p[m], s=8, alpha=0.6, label="male")
        ax.scatter(t[~m], p[~m], s=8, alpha=0.6, label="female")
    else:
        ax.scatter(t, p, s=8, alpha=0.6)
    hi = float(max(t.max(initial=0.0), p.max(initial=0.0), 12.0)) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="identity")
    ax.plot([0, hi], [12, hi + 12], color="grey", lw=0.7, ls=":", label="±1 year")
    ax.plot([0, hi], [-12, hi - 12], color="grey", lw=0.7, ls=":")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("true bone age (months)")
    ax.set_ylabel("predicted bone age (months)")
    ax.set_title(title)
    _save_png(fig, Path(path))


def plot_bland_altman(true_months, pred_months, path, *, title: str = "Bland-Altman") -> None:
    t = _as_1d("true ages", true_months)
    p = _as_1d("predicted ages", pred_months, t.shape[0])
    s = summarize(t, p)
    fig = _new_figure(6, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter((t + p) / 2.0, p - t, s=8, alpha=0.6)
    if s["n"]:
        ax.axhline(s["bias_months"], color="k", lw=1, label=f"bias {s['bias_months']:+.2f} mo")
    if s["sd_err_months"] is not None:
        for key in ("loa_low_months", "loa_high_months"):
            ax.axhline(s[key], color="r", lw=1, ls="--")
        ax.plot([], [], "r--", label=f"±1.96 SD [{s['loa_low_months']:.1f}, {s['loa_high_months']:.1f}] mo")
    ax.axhline(0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("mean of predicted and true (months)")
    ax.set_ylabel("predicted - true (months)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, Path(path))


def plot_error_by_band(true_months, pred_months, path, *, bands=AGE_BANDS_YEARS,
                       title: str = "Absolute error by true age band") -> None:
    t = _as_1d("true ages", true_months)
    p = _as_1d("predicted ages", pred_months, t.shape[0])
    masks = band_masks(t, bands)
    labels = list(masks)
    data = [np.abs(p - t)[masks[k]] for k in labels]
    fig = _new_figure(6, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), [f"{k}\n(n={d.size})" for k, d in zip(labels, data)])
    ax.axhline(12, color="grey", lw=0.7, ls=":", label="1 year")
    ax.set_ylabel("|predicted - true| (months)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    _save_png(fig, Path(path))


PLOT_FILES = {"scatter": "pred_vs_true.png", "bland_altman": "bland_altman.png", "error_by_band": "error_by_band.png"}


def write_report(out_dir: str | os.PathLike, true_months, pred_months, male=None, *, meta: dict | None = None,
                 ids: Sequence[str] | None = None, bands=AGE_BANDS_YEARS, plots: bool = True,
                 columns: dict[str, Sequence[str]] | None = None, sections: dict | None = None) -> dict:
    """Compute the report and write ``report.json``, ``predictions.csv`` (plus any extra per-image ``columns``) and
    the PNG plots into `out_dir`; ``sections``: further top-level report entries (evaluate's "quality_gate").

    Every file is written atomically. Returns the report dict (with ``files``: name -> path written).
    """
    out = Path(out_dir)
    t = _as_1d("true ages", true_months)
    p = _as_1d("predicted ages", pred_months, t.shape[0])
    report = compute_report(t, p, male, bands=bands, meta=meta)
    report.update(sections or {})
    files = {}
    if plots:
        plot_scatter(t, p, out / PLOT_FILES["scatter"], male=male)
        plot_bland_altman(t, p, out / PLOT_FILES["bland_altman"])
        plot_error_by_band(t, p, out / PLOT_FILES["error_by_band"], bands=bands)
        files.update({k: str(out / v) for k, v in PLOT_FILES.items()})
    m = None if male is None else _as_1d("sex", male, t.shape[0])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = dict(columns or {})
    for k, v in extra.items():
        if len(v) != t.shape[0]:
            raise ValueError(f"column {k}: {len(v)} values for {t.shape[0]} images")
    w.writerow(["id", "true_months", "pred_months", "male", *extra])
    for i in range(t.shape[0]):
        w.writerow([str(ids[i]) if ids is not None else str(i), f"{t[i]:.4f}", f"{p[i]:.4f}",
                    "" if m is None else str(int(m[i])), *(v[i] for v in extra.values())])
    write_text_atomic(out / "predictions.csv", buf.getvalue())
    files["predictions"] = str(out / "predictions.csv")
    files["report"] = str(out / "report.json")
    report["files"] = files
    write_json_atomic(out / "report.json", report)
    return report
