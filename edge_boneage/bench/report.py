"""Benchmark report: printed table, JSON, CSV and a Pareto PNG (all written atomically), ratios, CPU peak estimate."""

from __future__ import annotations

import csv
import io
import os
import platform
import re
from pathlib import Path

from edge_boneage.fileutil import atomic_path, write_json_atomic, write_text_atomic

#: the columns of a row, in table/CSV order
COLUMNS = ["model", "variant", "runtime", "threads", "device", "status", "size_mb", "gmacs", "mae_months", "acc_1y",
           "stage_acc", "init_ms", "first_ms", "warmup_ms", "mean_ms", "p10_ms", "p50_ms", "p90_ms", "timing",
           "peak_mem_mb",
           "gmacs_per_s", "error", "file"]

_TABLE = [("model", "model", "{}"), ("variant", "var", "{}"), ("runtime", "runtime", "{}"), ("threads", "thr", "{}"),
          ("status", "status", "{}"), ("size_mb", "MB", "{:.2f}"), ("gmacs", "GMAC", "{:.3f}"),
          ("mae_months", "MAE mo", "{:.2f}"), ("acc_1y", "+-1y", "{:.3f}"), ("stage_acc", "stage", "{:.3f}"),
          ("init_ms", "init", "{:.1f}"), ("first_ms", "first", "{:.2f}"), ("warmup_ms", "warm", "{:.2f}"),
          ("mean_ms", "mean", "{:.2f}"), ("p10_ms", "p10", "{:.2f}"), ("p50_ms", "p50", "{:.2f}"),
          ("p90_ms", "p90", "{:.2f}"),
          ("peak_mem_mb", "peakMB", "{:.0f}"), ("gmacs_per_s", "GMAC/s", "{:.1f}")]


def _fmt(v, spec: str) -> str:
    if v is None or v == "":
        return "-"
    try:
        return spec.format(v)
    except (ValueError, TypeError):
        return str(v)


def format_table(rows: list[dict]) -> str:
    head = [h for _, h, _ in _TABLE]
    body = [[_fmt(r.get(k), spec) for k, _, spec in _TABLE] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    errs = [f"  [{i}] {r['model']} {r['variant']} {r['runtime']} t{r['threads']}: {r['status']}: {r['error']}"
            for i, r in enumerate(rows) if r.get("error")]
    if errs:
        out += ["", "notes / errors (row index from 0):", *errs]
    return "\n".join(out)


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------------------
# CPU peak


def cpu_peak(cpuinfo: str | None = None, lscpu_mhz: float | None = None) -> dict:
    """Estimated fp32 peak of one core in GMAC/s = FMA lanes per cycle x clock (GHz); how it was estimated.

    Lanes per cycle: AVX-512 on Intel server cores: 2 FMA units x 16 fp32 = 32; AVX-512 on AMD Zen 4 (family 25,
    0x19) is executed on 2 x 256-bit FMA pipes: 16; AVX2+FMA: 2 x 8 = 16; SSE only: 2 x 4 = 8 (assumes two FMA
    pipes everywhere, the common case). Clock: /proc/cpuinfo "cpu MHz" (in a VM this is usually the nominal clock,
    boost may be higher: the estimate is then a little low and the fraction of peak a little high).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set((re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M) or [None, ""])[1].split())
    vendor = (re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo, re.M) or [None, "?"])[1]
    family = int((re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.M) or [None, "0"])[1])
    model_name = (re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M) or [None, platform.processor() or "?"])[1]
    mhz = lscpu_mhz
    if mhz is None:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
        mhz = float(m.group(1)) if m else None
    if "avx512f" in flags and vendor == "AuthenticAMD":
        lanes, isa = 16, "AVX-512 on AMD (Zen 4: 2 x 256-bit FMA pipes)" if family == 25 else "AVX-512 on AMD"
    elif "avx512f" in flags:
        lanes, isa = 32, "AVX-512 (2 x 512-bit FMA units assumed)"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 16, "AVX2 + FMA (2 x 256-bit FMA units)"
    elif flags:
        lanes, isa = 8, "SSE (2 x 128-bit)"
    else:
        lanes, isa = None, "unknown (no /proc/cpuinfo flags)"
    peak = lanes * mhz / 1000.0 if (lanes and mhz) else None
    return {"cpu": model_name.strip(), "vendor": vendor, "family": family, "mhz": mhz, "isa": isa,
            "fp32_macs_per_cycle": lanes, "peak_gmacs_per_core": peak,
            "how": "fp32 FMA lanes per cycle x clock from /proc/cpuinfo; x threads for a multi-thread row"}


# --------------------------------------------------------------------------------------------------------------
# Ratios


def _find(rows, **kw):
    return [r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in kw.items())]


def compute_ratios(rows: list[dict], *, pairs=(), peak: dict | None = None, stat: str = "p50_ms") -> list[dict]:
    """[{"name", "model", "threads", "value", "goal", "meets", "a", "b"}] from ok rows; latency statistic `stat`.

    * litert_vs_onnxruntime: LiteRT f32 / ONNX Runtime, the same network (goal <= 1.0);
    * int8_vs_f32: LiteRT int8 / LiteRT f32 (goal <= 0.8);
    * pairs [{"a": model, "b": model, "goal": g}]: LiteRT f32 latency of a / b (e.g. RIL vs plain, goal <= 1.5);
    * gmacs_vs_peak: achieved GMAC/s of each LiteRT row / (peak per core x threads).
    """
    out = []
    models = sorted({r["model"] for r in rows}, key=[r["model"] for r in rows].index)
    threads = sorted({r["threads"] for r in rows if isinstance(r.get("threads"), int)})

    def add(name, model, t, a, b, goal, what):
        if a and b and a.get(stat) and b.get(stat):
            v = a[stat] / b[stat]
            out.append({"name": name, "model": model, "threads": t, "value": v, "goal": goal,
                        "meets": None if goal is None else v <= goal, "what": what,
                        "a": a[stat], "b": b[stat], "stat": stat})

    for m in models:
        for t in threads:
            f32 = _find(rows, model=m, variant="f32", runtime="litert", threads=t)
            ort = _find(rows, model=m, variant="f32", runtime="onnxruntime", threads=t)
            i8 = _find(rows, model=m, variant="int8", runtime="litert", threads=t)
            if f32 and ort:
                add("litert_vs_onnxruntime", m, t, f32[0], ort[0], 1.0, "LiteRT f32 / ONNX Runtime (same network)")
            if f32 and i8:
                add("int8_vs_f32", m, t, i8[0], f32[0], 0.8, "LiteRT int8 / LiteRT f32")
    for p in pairs:
        for t in threads:
            a = _find(rows, model=p["a"], variant="f32", runtime="litert", threads=t)
            b = _find(rows, model=p["b"], variant="f32", runtime="litert", threads=t)
            if a and b:
                add(p.get("name", f"{p['a']}_vs_{p['b']}"), f"{p['a']} / {p['b']}", t, a[0], b[0], p.get("goal"),
                    f"LiteRT f32 latency {p['a']} / {p['b']}")
    per_core = (peak or {}).get("peak_gmacs_per_core")
    if per_core:
        for r in rows:
            # float rows only: dynamic-range and int8 rows run integer kernels (VNNI: 4 int8 MACs per 32-bit lane),
            # for which the fp32 FMA peak is not the ceiling (their GMAC/s stays in the table)
            if r.get("status") == "ok" and r.get("runtime") == "litert" and r.get("gmacs_per_s") and \
                    isinstance(r.get("threads"), int) and r.get("variant") in ("f32", "fp16"):
                v = r["gmacs_per_s"] / (per_core * r["threads"])
                out.append({"name": "gmacs_vs_peak", "model": r["model"], "variant": r["variant"],
                            "threads": r["threads"], "value": v, "goal": None, "meets": None,
                            "what": f"achieved {r['gmacs_per_s']:.1f} GMAC/s (mean latency) / fp32 peak "
                                    f"{per_core * r['threads']:.1f} GMAC/s", "stat": "mean_ms"})
    return out


def format_ratios(ratios: list[dict]) -> str:
    lines = []
    for q in ratios:
        goal = "" if q["goal"] is None else f"  goal <= {q['goal']:g}: {'MET' if q['meets'] else 'NOT MET'}"
        var = f" {q['variant']}" if q.get("variant") else ""
        stat = "" if q["name"] == "gmacs_vs_peak" else f"; {q['stat']} {q['a']:.2f} / {q['b']:.2f} ms"
        if q.get("ratio_p10") is not None:
            stat += (f"; interleaved, p10-p90 of the ratio over {q['ratio_repeats']} repeats "
                     f"{q['ratio_p10']:.3f}-{q['ratio_p90']:.3f}")
        lines.append(f"{q['name']:<24} {q['model']}{var} t{q['threads']}: {q['value']:.3f}  ({q['what']}{stat}){goal}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Pareto plot


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (lower x and lower y are better), sorted by x."""
    idx = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in idx:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(rows: list[dict], path: str | os.PathLike, title: str = "Accuracy vs latency") -> bool:
    """MAE (age models) / stage error (TW3 stage models) against p50 latency, one labelled point per ok row.
    Returns False (and writes nothing) when no row has both numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    age = [r for r in rows if r.get("status") == "ok" and r.get("p50_ms") and r.get("mae_months") is not None]
    stage = [r for r in rows if r.get("status") == "ok" and r.get("p50_ms") and r.get("stage_acc") is not None]
    if age:
        panels.append(("age MAE (months)", age, lambda r: r["mae_months"]))
    if stage:
        panels.append(("stage error (1 - top-1 accuracy)", stage, lambda r: 1.0 - r["stage_acc"]))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 6), squeeze=False)
    for ax, (ylabel, rs, fy) in zip(axes[0], panels):
        pts = [(r["p50_ms"], fy(r)) for r in rs]
        colors = {"litert": "tab:blue", "onnxruntime": "tab:orange", "keras": "tab:green"}
        seen = set()
        for k, (r, (x, y)) in enumerate(zip(rs, pts)):
            rt = r["runtime"]
            ax.scatter(x, y, c=colors.get(rt, "tab:gray"), s=28, label=None if rt in seen else rt)
            seen.add(rt)
            # stagger the labels vertically so that points with (nearly) the same position stay readable
            ax.annotate(f"{r['model']} {r['variant']} {rt} t{r['threads']}", (x, y), fontsize=6,
                        xytext=(4, 3 + 7 * (k % 4)), textcoords="offset points")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=0.8, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency (ms, batch 1, log scale)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def write_outputs(report: dict, out_dir: str | os.PathLike, *, plot: bool = True) -> dict:
    """report.json / results.csv / pareto.png / table.txt in out_dir (atomic); returns {kind: path}."""
    out = Path(out_dir)
    files = {"json": out / "benchmark.json", "csv": out / "benchmark.csv", "table": out / "benchmark.txt"}
    if plot:
        png = out / "pareto.png"
        if plot_pareto(report["rows"], png, title=report.get("title", "Accuracy vs latency")):
            files["png"] = png
    report["files"] = {k: str(v) for k, v in files.items()}
    write_text_atomic(files["csv"], rows_csv(report["rows"]))
    write_text_atomic(files["table"], report.get("text", format_table(report["rows"])) + "\n")
    write_json_atomic(files["json"], report)
    return report["files"]
