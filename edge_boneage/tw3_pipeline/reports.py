"""Evaluation reports: ``evaluate`` (sweep P on validation, Table 4 + stage accuracy on test), the Markdown
tables (``report_markdown``) and the MAE-vs-P plot (``plot_sweep``); files written atomically."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_boneage.fileutil import atomic_path, write_json_atomic, write_text_atomic
from edge_boneage.tw3_pipeline.constants import BONES, DEFAULT_THRESHOLDS
from edge_boneage.tw3_pipeline.data import StageData
from edge_boneage.tw3_pipeline.model import StageModel
from edge_boneage.tw3_pipeline.scoring import method_table, oracle_table, stage_accuracy, threshold_sweep


def plot_sweep(sweep: dict, path, title: str = "TopN threshold sweep (validation)") -> None:
    """MAE vs P per sex (the paper's Fig. 2/3) as a PNG, argmin marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    colors = {"male": "tab:blue", "female": "tab:red", "all": "0.4"}
    for g in ("male", "female", "all"):
        vals = sweep["mae_years"].get(g)
        if not vals or all(v is None for v in vals):
            continue
        y = [np.nan if v is None else v for v in vals]
        ax.plot(sweep["thresholds"], y, color=colors[g], lw=1.2 if g != "all" else 0.8,
                ls="-" if g != "all" else "--", label=f"{g} (n={sweep['n'][g]})")
        if g in sweep["best"]:
            b = sweep["best"][g]
            ax.plot([b["threshold"]], [b["mae_years"]], "o", color=colors[g], ms=5)
            if g == "all":
                continue
            ax.annotate(f"P={b['threshold']:.2f}\n{b['mae_years']:.3f} y", (b["threshold"], b["mae_years"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=7, color=colors[g])
    ax.set_xlabel("threshold P")
    ax.set_ylabel("MAE (years)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _f(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def report_markdown(report: dict) -> str:
    """Markdown tables: threshold choice, Table-4-style comparison, per-bone stage accuracy."""
    lines = []
    meta = report.get("meta", {})
    if meta.get("model"):
        lines.append(f"Model: `{meta['model']}`" + (f" ({meta.get('arch')})" if meta.get("arch") else ""))
        lines.append("")
    sw = report.get("sweep")
    if sw:
        lines.append(f"Threshold P chosen on VALIDATION (n = {sw['n']['male']} male, {sw['n']['female']} female):")
        lines.append("")
        lines.append("| group | P | validation MAE (years) |")
        lines.append("|---|---|---|")
        for g in ("male", "female", "all"):
            if g in sw["best"]:
                lines.append(f"| {g} | {sw['best'][g]['threshold']:.2f} | {sw['best'][g]['mae_years']:.4f} |")
        lines.append("")
    t4 = report.get("table4")
    if t4:
        lines.append("Bone age on the TEST split (Table-4 style; MAE in years, +-1 y = share within one year):")
        lines.append("")
        lines.append("| method | male MAE | male +-1 y | female MAE | female +-1 y | all MAE | all +-1 y |")
        lines.append("|---|---|---|---|---|---|---|")
        names = {"classic": "TW3-C RUS (classic)", "top2": "Top2 TW3-C RUS", "topn": "TopN TW3-C RUS",
                 "oracle": "true stages (floor)"}
        rows = dict(t4)
        if report.get("oracle"):
            rows["oracle"] = report["oracle"]
        for mth, row in rows.items():
            cells = []
            for g in ("male", "female", "all"):
                r = row.get(g, {})
                cells += [_f(r.get("mae_years")), _f(r.get("acc_1y") and 100 * r["acc_1y"], ".1f") + " %"]
            lines.append(f"| {names.get(mth, mth)} | " + " | ".join(cells) + " |")
        n = t4["classic"]
        lines.append("")
        lines.append(f"n = {n['male']['n']} male, {n['female']['n']} female test images.")
        lines.append("")
    sa = report.get("stage_accuracy")
    if sa:
        lines.append("Stage accuracy per bone on the TEST split (argmax vs true grade; stage-A crops excluded):")
        lines.append("")
        lines.append("| bone | n | exact | within 1 stage |")
        lines.append("|---|---|---|---|")
        for b in (*BONES, "all"):
            r = sa[b]
            lines.append(f"| {b} | {r['n']} | {_f(r['acc'] and 100 * r['acc'], '.1f')} % | "
                         f"{_f(r['acc_pm1'] and 100 * r['acc_pm1'], '.1f')} % |")
        lines.append("")
    return "\n".join(lines)


def evaluate(model, val: StageData, test: StageData, out_dir=None, *, thresholds=DEFAULT_THRESHOLDS,
             curve: str = "tw3c", per_sex: bool = True, meta: dict | None = None, batch: int = 128) -> dict:
    """Sweep P on `val`, then Table 4 + stage accuracy on `test`; writes report.json, report.md, sweep.png."""
    m = model if isinstance(model, StageModel) else StageModel(model)
    t0 = time.time()
    pv = m.predict_images(val, batch)
    pt = m.predict_images(test, batch)
    secs = time.time() - t0
    sweep = threshold_sweep(pv, val.boneage_months / 12.0, val.male, thresholds, curve)
    chosen = ({s: sweep["best"][s]["threshold"] for s in ("male", "female") if s in sweep["best"]} if per_sex
              else {s: sweep["best"]["all"]["threshold"] for s in ("male", "female")})
    report = {"meta": {"model": m.path, "format": m.format, "crop": m.size, "curve": curve, "per_sex_threshold": per_sex,
                       "n_val": len(val), "n_test": len(test), "predict_seconds": secs, **(meta or {})},
              "sweep": sweep, "thresholds_used": chosen,
              "table4": method_table(pt, test.boneage_months / 12.0, test.male, chosen, curve)}
    if test.grades is not None:
        report["stage_accuracy"] = stage_accuracy(pt, test.grades)
        report["oracle"] = oracle_table(test.grades, test.boneage_months / 12.0, test.male, curve)
    if out_dir is not None:
        out = Path(out_dir)
        name = (meta or {}).get("arch") or Path(m.path).name
        plot_sweep(sweep, out / "sweep.png", title=f"TopN threshold sweep on validation ({name})")
        write_text_atomic(out / "report.md", report_markdown(report) + "\n")
        report["files"] = {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
                           "sweep_png": str(out / "sweep.png")}
        write_json_atomic(out / "report.json", report)
    return report


__all__ = ["evaluate", "plot_sweep", "report_markdown"]
