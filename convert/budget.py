"""Quantise to an accuracy budget: `edge-boneage export --int8 --max-mae-increase M`.

Every candidate recipe (the TensorFlow converter's int8, ai-edge-quantizer's recipes of convert.aeq.RECIPES,
dynamic range) is exported through convert.export (the one exporter, its child-process parity gate included),
scored on HELD-OUT images against the float32 file, and timed INTERLEAVED with float32 in one child process
(edge_boneage.bench.interleave: LiteRT, 1 thread by default). The fastest candidate that is faster than float32 and
whose MAE exceeds float32's by at most M months is written (candidates within 5 % of the fastest median count as
equally fast, and the lower MAE wins among them), with the search table in its metadata (``quantization.search``) and beside it as
``<out>.search.json``; when none fits, nothing is written and the error names the closest one.

Held-out images: the protocol's VALIDATION split of the RSNA 100x100 set (``--rsna-dir``; never the test split,
which reports, and never the training split, which calibrates), else synthetic images of a seed the calibration
and parity sets do not use. Stage (TW3) models: grade agreement is not an MAE budget; the search is for age models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

TIE = 0.05  # candidates within 5 % of the fastest median latency count as equally fast (timing noise, p10-p90)
HELDOUT_SEED = 424242  # synthetic held-out images (calibration: convert.export.CALIB_SEED, parity: CHECK_SEED)


def candidates() -> list[tuple[str, str]]:
    """[(label, quantization:recipe)] in search order."""
    from edge_boneage.convert import aeq

    rows = [("tf_int8", "int8:tf_int8")]
    if aeq.available():
        rows += [(r, f"int8:{r}") for r in aeq.RECIPES]
    return rows + [("dynamic", "dynamic:")]


def heldout_data(model, rsna_dir=None, n: int | None = None):
    """(inputs, labels months, description): the protocol validation split (RSNA) or synthetic held-out images."""
    from edge_boneage.convert.checkdata import _age_inputs, _image_shape, age_data
    from edge_boneage.preprocess import spec_of_keras_model

    if rsna_dir is None:
        d = age_data(model, "synth", n or 256, seed=HELDOUT_SEED)
        return d.inputs, d.labels["age_months"], d.source
    from edge_boneage import datasets
    from edge_boneage.io import read_image
    from edge_boneage.train import protocol_split

    base = Path(rsna_dir)
    samples = list(datasets.load_rsna_csv(base / "labels.csv", base / "img100").samples)
    val = list(protocol_split(samples, base)[1])
    if n:
        val = val[:n]
    spec = spec_of_keras_model(model)
    images = np.stack([spec.apply(read_image(s.path)[0]) for s in val])
    male = np.array([bool(s.male) for s in val])
    inputs = _age_inputs(model, images, male, _image_shape(model))
    return inputs, np.array([s.boneage_months for s in val], np.float64), \
        f"RSNA protocol validation split ({base}, n={len(val)})"


def _time(files: dict[str, Path], threads: int, repeats: int, block: int, eval_npz: Path) -> dict:
    job = {"rows": [{"label": k, "kind": "litert", "path": str(p), "threads": threads} for k, p in files.items()],
           "pairs": [[k, "float32"] for k in files if k != "float32"], "repeats": repeats, "block": block,
           "eval": str(eval_npz)}
    jp, op = eval_npz.with_name("interleave.job.json"), eval_npz.with_name("interleave.out.json")
    jp.write_text(json.dumps(job))
    from edge_boneage.convert.litert import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.interleave", str(jp), str(op)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0 or not op.is_file():
        raise EdgeBoneageError(f"timing child failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return json.loads(op.read_text())


def search(keras_path, out=None, *, max_mae_increase: float = 0.3, rsna_dir=None, calib: str = "synth",
           calib_n: int = 64, check_n: int = 32, heldout_n: int | None = None, threads: int = 1, repeats: int = 15,
           block: int = 10, recipes=None, log=print) -> dict:
    """Run the search; writes the chosen file to `out` (default MODEL_int8.tflite) and returns the report.
    `recipes`: candidate labels to try (default: every one of candidates())."""
    from edge_boneage.convert.checkdata import model_task
    from edge_boneage.convert.export import default_out, export, load_keras_model
    from edge_boneage.convert.litert import validate_in_subprocess
    from edge_boneage.fileutil import atomic_path, write_json_atomic
    from edge_boneage.tflite_meta import add_metadata, read_metadata

    keras_path = Path(keras_path)
    out = Path(out) if out else default_out(keras_path, "int8")
    if max_mae_increase < 0:
        raise EdgeBoneageError(f"--max-mae-increase must be >= 0 months, got {max_mae_increase}")
    pool = candidates()
    if recipes:
        unknown = sorted(set(recipes) - {lab for lab, _ in pool})
        if unknown:
            raise EdgeBoneageError(f"unknown recipes {unknown}; choose from {', '.join(lab for lab, _ in pool)}")
        pool = [c for c in pool if c[0] in recipes]
    model = load_keras_model(keras_path)
    if model_task(model) != "age":
        raise EdgeBoneageError(f"{keras_path}: the accuracy-budgeted search is for age models (MAE in months)")
    inputs, labels, desc = heldout_data(model, rsna_dir, heldout_n)
    log(f"held-out set: {desc}")
    rows = []
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.search.", dir=out.parent if out.parent.is_dir() else None) as tmp:
        tmp = Path(tmp)
        files: dict[str, Path] = {}
        for label, spec in [("float32", "float32:")] + pool:
            quant, recipe = spec.split(":")
            row = {"candidate": label, "quantization": quant, "recipe": recipe or None}
            try:
                res = export(keras_path, tmp / f"{label}.tflite", quantization=quant, recipe=recipe or "tf_int8",
                             calib=calib, rsna_dir=rsna_dir, calib_n=calib_n, check_n=check_n, model=model,
                             log=lambda *_: None)
                pred = validate_in_subprocess(res.path, inputs)["age"].reshape(-1).astype(np.float64)
                row.update(status="ok", size_mb=res.path.stat().st_size / 2**20,
                           mae_months=float(np.abs(pred - labels).mean()), pred=pred,
                           int8_ops=(res.info.get("ops") or {}).get("int8_ops"),
                           float_ops=(res.info.get("ops") or {}).get("float_ops"))
                files[label] = res.path
            except EdgeBoneageError as exc:
                row.update(status="failed", error=str(exc).replace(str(tmp), "<search>")[:300])
            rows.append(row)
            log(f"  {label:<26} {row['status']:<7} " + (f"MAE {row['mae_months']:.3f}" if row["status"] == "ok"
                                                          else row.get("error", "")))
        if "float32" not in files:
            raise EdgeBoneageError(f"{keras_path}: the float32 reference did not export: {rows[0].get('error')}")
        base = next(r for r in rows if r["candidate"] == "float32")
        ev = tmp / "heldout_sample.npz"
        np.savez(ev, **{k: v[:1] for k, v in inputs.items()})
        timing = _time(files, threads, repeats, block, ev)
        ratios = {r["a"]: r for r in timing["ratios"]}
        for r in rows:
            if r["status"] != "ok":
                continue
            t = timing["rows"][r["candidate"]]
            r.update(p50_ms=t["p50_ms"], p10_ms=t["p10_ms"], p90_ms=t["p90_ms"],
                     mae_increase=r["mae_months"] - base["mae_months"],
                     mean_abs_diff_vs_float32=float(np.abs(r.pop("pred") - base["pred"]).mean())
                     if r is not base else 0.0)
            if r["candidate"] in ratios:
                q = ratios[r["candidate"]]
                r.update(ratio_vs_float32=q["ratio_p50"], ratio_p10=q["ratio_p10"], ratio_p90=q["ratio_p90"])
        base.pop("pred", None)
        fits = [r for r in rows if r["status"] == "ok" and r["candidate"] != "float32"
                and r["mae_increase"] <= max_mae_increase and r["p50_ms"] < base["p50_ms"]]
        report = {"keras": str(keras_path), "heldout": desc, "budget_months": max_mae_increase, "threads": threads,
                  "rule": f"faster than float32, +MAE <= budget; the fastest, ties within {TIE:.0%} by lower MAE",
                  "timing": {"repeats": repeats, "block": block, "interleaved": True}, "rows": rows}
        if not fits:
            ok = [r for r in rows if r["status"] == "ok" and r["candidate"] != "float32"]
            best = min(ok, key=lambda r: r["mae_increase"]) if ok else None
            report["chosen"] = None
            log(format_table(report))
            raise EdgeBoneageError(
                f"{keras_path}: no quantised recipe is faster than float32 and within +{max_mae_increase:g} months of it on "
                f"{desc}" + (f"; the closest is {best['candidate']} (+{best['mae_increase']:.2f})" if best else "")
                + "; nothing written")
        fastest = min(r["p50_ms"] for r in fits)  # within TIE of the fastest is a tie, broken by the lower MAE
        chosen = min((r for r in fits if r["p50_ms"] <= fastest * (1 + TIE)), key=lambda r: r["mae_months"])
        report["chosen"] = chosen["candidate"]
        meta = read_metadata(files[chosen["candidate"]]) or {}
        meta.setdefault("quantization", {})["search"] = {k: v for k, v in report.items() if k != "keras"}
        meta.pop("schema_version", None)
        data = add_metadata(files[chosen["candidate"]].read_bytes(), meta)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as t:
            Path(t).write_bytes(data)
        write_json_atomic(Path(f"{out}.search.json"), report)
    report["out"] = str(out)
    return report


def format_table(report: dict) -> str:
    lines = [f"held-out: {report['heldout']}; budget +{report['budget_months']:g} months vs float32; LiteRT "
             f"{report['threads']} thread(s), interleaved {report['timing']['repeats']}x{report['timing']['block']}",
             f"{'candidate':<26} {'status':<7} {'MiB':>6} {'MAE mo':>7} {'+MAE':>6} {'p50 ms':>7} "
             f"{'p10-p90 ms':>13} {'vs f32':>6} {'ratio p10-p90':>13}"]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['candidate']:<26} {'failed':<7} {r.get('error', '')[:90]}")
            continue
        ratio = r.get("ratio_vs_float32")
        lines.append(f"{r['candidate']:<26} {'ok':<7} {r['size_mb']:>6.2f} {r['mae_months']:>7.2f} "
                     f"{r['mae_increase']:>+6.2f} {r['p50_ms']:>7.3f} {'%.3f-%.3f' % (r['p10_ms'], r['p90_ms']):>13} "
                     + (f"{ratio:>6.2f} {'%.2f-%.2f' % (r['ratio_p10'], r['ratio_p90']):>13}" if ratio else
                        f"{'1.00':>6} {'':>13}")
                     + ("  <- written" if r["candidate"] == report.get("chosen") else ""))
    return "\n".join(lines)

