"""The benchmark run loop: models x variants x runtimes x threads -> one row each.

Modules: bench.config (the plan), bench.exports (phase 1), bench.rows (rows, phase 2's data), this one
(phase 3 and the report).

Phases (the parent imports neither TensorFlow nor Keras; everything that could crash runs in a child process):

1. export: for each Keras model (registry name built with kwargs and optional weights, or a .keras file) ONE
   exporter child (``python -m edge_boneage.bench.worker export``) writes the f32/fp16/dynamic/int8 .tflite files
   through convert.export's parity gate (force=True: a model that fails the gate is still written and its row is
   marked "validation failed") and the .onnx (the "onnx" row of the same table and gate, when tf2onnx is
   installed). If the child dies,
   the variant it was on becomes an "export failed" row and a fresh child continues with the rest.
2. data: the labelled evaluation set is packed once per (task, input size, channels) into an .npz of preprocessed
   uint8 images + labels (the same file a device gets).
3. run: every (variant, runtime, threads) runs in its own child process: LiteRT rows through
   edge_boneage/device_runner.py (locally or on the device), ONNX Runtime and Keras rows through the worker.
   A crash is a row ("validation failed", the signal named), never a dead harness.

Intermediate files go to a fresh folder OUT/work/run_<time>_<id>/ that the run makes and marks as its own
(WORK_MARK); a later run removes earlier marked run folders and nothing else, so a file in OUT or OUT/work that
this tool did not make is never deleted, and no run reuses another run's files.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError, __version__
from edge_boneage.bench.config import WORK_MARK, WORK_TOOL, BenchConfig, child_env, validate
from edge_boneage.bench.exports import onnx_info, signal_text, tflite_info, export_model, spec_file
from edge_boneage.bench.rows import fill_row, new_row, pack_eval_set


# --------------------------------------------------------------------------------------------------------------
# run phase


def run_worker(runtime: str, model: str, eval_npz: str, threads: int, cfg: BenchConfig, work: Path) -> dict:
    from edge_boneage.bench.devices import run_child

    tag = f"{Path(model).stem}_{runtime}_t{threads}"
    run_cfg = {"runtime": runtime, "model": model, "eval": eval_npz, "threads": threads, "runs": cfg.runs,
               "warmup": cfg.warmup, "out": str(work / f"{tag}.result.json")}
    (work / f"{tag}.run.json").write_text(json.dumps(run_cfg))
    out = Path(run_cfg["out"])
    out.unlink(missing_ok=True)
    return run_child([sys.executable, "-m", "edge_boneage.bench.worker", "run", str(work / f"{tag}.run.json")], out,
                     timeout=cfg.run_timeout, env=child_env())


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _is_our_work(d: Path) -> bool:
    """Whether `d` is a run folder a benchmark run made (a real folder holding a WORK_MARK that names this tool)."""
    mark = d / WORK_MARK
    if d.is_symlink() or not d.is_dir() or mark.is_symlink() or not mark.is_file():
        return False
    try:
        return json.loads(mark.read_text()).get("tool") == WORK_TOOL
    except (OSError, ValueError, AttributeError):
        return False


def new_work_dir(out: Path, log=print) -> Path:
    """Remove the run folders earlier runs made under OUT/work (only those: any other file stays) and make a fresh,
    marked one for this run: every number comes from this run, never from a stale file."""
    root = out / "work"
    if (root.exists() or root.is_symlink()) and not root.is_dir():
        raise EdgeBoneageError(f"{root}: exists and is not a folder; move it away or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    for d in sorted(root.iterdir()):
        if _is_our_work(d):
            shutil.rmtree(d)
            log(f"removed the earlier run's work folder {d}")
    work = root / f"run_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
    work.mkdir()
    (work / WORK_MARK).write_text(json.dumps({"tool": WORK_TOOL, "version": __version__, "pid": os.getpid()}))
    return work


def run_benchmark(cfg: BenchConfig, log=print) -> dict:
    """Export, run and report; returns the report dict (rows, ratios, environment, files)."""
    from edge_boneage.bench import report as Rep
    from edge_boneage.bench.devices import LocalBackend, make_backend

    validate(cfg)
    out = Path(cfg.out).expanduser().resolve()  # absolute: children run in the work folder, not the caller's
    work = new_work_dir(out, log)
    t_start = time.time()
    load_before = _load_average()
    device = cfg.device or "local"
    remote = device != "local"
    runtimes = list(cfg.runtimes)
    if remote and any(r != "litert" for r in runtimes):  # noqa: SIM102
        log(f"device {device}: only LiteRT rows run on the device; {[r for r in runtimes if r != 'litert']} skipped")
        runtimes = ["litert"]
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    have_tflite_rt = importlib.util.find_spec("tflite_runtime") is not None
    have_ov = importlib.util.find_spec("openvino") is not None

    # 1. export
    models = []
    for spec in cfg.models:
        entry = {"spec": spec, "label": spec.label}
        if spec.model.endswith((".tflite", ".onnx")):  # given files: nothing to export, a bad file fails validation
            try:
                if spec.model.endswith(".tflite"):
                    info = tflite_info(spec.model)
                else:
                    info = onnx_info(spec.model) if have_ort else {"error": "onnxruntime not installed"}
            except Exception as exc:  # noqa: BLE001 - a row, not a dead harness
                info = {"error": f"{spec.model}: cannot load ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"}
            info["given_file"] = True
            entry.update(info=info, variants=None, weights=None,
                         onnx={"status": "ok", "file": spec.model} if spec.model.endswith(".onnx") else None)
            if spec.model.endswith(".tflite"):
                entry["direct_tflite"] = spec.model
        else:
            log(f"export {spec.label} ({', '.join(cfg.variants)}{', onnx' if 'onnxruntime' in runtimes else ''}) ...")
            want_onnx = ("onnxruntime" in runtimes and have_ort) or ("openvino" in runtimes and have_ov)
            entry.update(export_model(spec, cfg, work, want_onnx, log=log))
        models.append(entry)

    # 2. evaluation sets
    eval_sets: dict[tuple, dict] = {}
    for m in models:
        info = m["info"]
        if "error" in info:
            continue
        shape = info["inputs"]["image"]["shape"]
        spec = info.get("preprocess") or None
        ckey = json.dumps({k: (spec or {}).get(k) for k in ("frame", "crop", "crop_margin", "enhance")}, sort_keys=True)
        key = (info["task"], int(shape[0]), int(shape[-1]), ckey)
        if key not in eval_sets:
            path = work / f"eval_{key[0]}_{key[1]}_c{key[2]}_{len(eval_sets)}.npz"
            eval_sets[key] = pack_eval_set(*key[:3], cfg.data, path, spec)
            log(f"evaluation set {path.name}: {eval_sets[key]['desc']}")
        m["eval"] = eval_sets[key]

    # 3. run
    backend = make_backend(device, ssh_opts=cfg.ssh_opts, remote_python=cfg.remote_python,
                           benchmark_model_bin=cfg.benchmark_model_bin)
    rows: list[dict] = []
    evals: dict[str, str] = {}
    try:
        backend.prepare([e["path"] for e in eval_sets.values()])
        for m in models:
            label, info = m["label"], m["info"]
            if "error" in info:
                status = "validation failed" if info.get("given_file") else "export failed"
                rows.append(new_row(label, "-", "-", "-", device, status, info["error"], spec_file(m)))
                continue
            ev = m["eval"]["path"]
            evals[label] = ev
            f32_macs = None
            tfl = {}
            if m.get("direct_tflite"):
                tfl[info["variant"]] = {"status": "ok", "file": m["direct_tflite"]}
            elif m.get("variants"):
                tfl = m["variants"]
            for variant, ex in tfl.items():
                if ex["status"] == "export failed" or not ex.get("file"):
                    rows.append(new_row(label, variant, "litert", "-", device, "export failed", ex.get("error")))
                    continue
                lite_runtimes = [r for r in runtimes if r in ("litert", "tflite_runtime")]
                for rt in lite_runtimes:
                    if rt == "tflite_runtime" and not have_tflite_rt:
                        continue
                    for t in cfg.threads:
                        row = new_row(label, variant, rt, int(t), device, ex["status"], ex.get("error"), ex["file"])
                        log(f"run {label} {variant} {rt} t{t} on {backend.name} ...")
                        if rt == "tflite_runtime":
                            res = LocalBackend(env={**child_env(), "EDGE_BONEAGE_FORCE_TFLITE_RUNTIME": "1"}) \
                                .run_tflite(ex["file"], ev, threads=t, runs=cfg.runs, warmup=cfg.warmup,
                                            timeout=cfg.run_timeout)
                        else:
                            res = backend.run_tflite(ex["file"], ev, threads=t, runs=cfg.runs, warmup=cfg.warmup,
                                                     timeout=cfg.run_timeout)
                        fill_row(row, res, None)
                        row["parity"] = ex.get("parity")
                        if variant == "f32" and row.get("gmacs"):
                            f32_macs = row["gmacs"] * 1e9
                        rows.append(row)
            if "tflite_runtime" in runtimes and not have_tflite_rt:
                rows.append(new_row(label, "-", "tflite_runtime", "-", device, "skipped",
                                    "tflite-runtime is not installed (it fails with numpy 2; see STACK.md)"))
            fallback_macs = f32_macs or ((info.get("keras_macs") or {}).get("macs"))
            for ort_rt, have, missing in (("onnxruntime", have_ort, "onnxruntime is not installed"),
                                          ("openvino", have_ov, "openvino is not installed (pip install "
                                                                "'edge-boneage[openvino]')")):
                if ort_rt not in runtimes:  # both read the one exported ONNX file
                    continue
                ox = m.get("onnx")
                if not have:
                    rows.append(new_row(label, "f32", ort_rt, "-", device, "skipped", missing))
                elif ox is None:
                    pass
                elif ox["status"] != "ok" or not ox.get("file"):
                    rows.append(new_row(label, "f32", ort_rt, "-", device, ox["status"], ox.get("error")))
                else:
                    for t in cfg.threads:
                        log(f"run {label} onnx {ort_rt} t{t} ...")
                        row = new_row(label, "f32", ort_rt, int(t), device, "ok", None, ox["file"])
                        rows.append(fill_row(row, run_worker(ort_rt, ox["file"], ev, int(t), cfg, work),
                                             fallback_macs))
            if "keras" in runtimes and info.get("keras_path"):
                for t in cfg.threads:
                    log(f"run {label} keras t{t} ...")
                    row = new_row(label, "f32", "keras", int(t), device, "ok", None, info["keras_path"])
                    rows.append(fill_row(row, run_worker("keras", info["keras_path"], ev, int(t), cfg, work),
                                         fallback_macs))
    finally:
        backend.close()

    spreads = {}
    if cfg.interleave and not remote:
        log("interleaved timing of every ok row (one child per thread count) ...")
        spreads = interleave_rows(rows, evals, cfg, work, log)
    peak = Rep.cpu_peak() if not remote else None
    ratios = Rep.compute_ratios(rows, pairs=cfg.compare, peak=peak)
    for q in ratios:
        q.update(spreads.get((q["name"], q["model"], q["threads"]), {}))
    env = {"python": sys.version.split()[0], "edge_boneage": __version__, "platform": os.uname().sysname + " " +
           os.uname().machine, "cpus": os.cpu_count(), "load_average_before": load_before,
           "load_average_after": _load_average(), "seconds": round(time.time() - t_start, 1),
           "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    for mod in ("ai_edge_litert", "onnxruntime", "tensorflow", "keras", "numpy", "tf2onnx"):
        env[mod] = _dist_version(mod)
    models_meta = {m["label"]: {"source": m["spec"].model, "kwargs": m["spec"].kwargs, "weights": m.get("weights"),
                                "task": m["info"].get("task"), "params": m["info"].get("params"),
                                "keras_macs": (m["info"].get("keras_macs") or {}).get("macs"),
                                "eval_set": (m.get("eval") or {}).get("desc")} for m in models}
    text = Rep.format_table(rows)
    if ratios:
        text += "\n\nratios (latency statistic p50 unless noted):\n" + Rep.format_ratios(ratios)
    if peak:
        text += (f"\n\nCPU peak estimate: {peak['cpu']}, {peak['isa']}: {peak['fp32_macs_per_cycle']} fp32 MAC/cycle x "
                 f"{peak['mhz']} MHz = {peak['peak_gmacs_per_core'] or 0:.1f} GMAC/s per core")
    text += (f"\nload average before/after: {env['load_average_before']} / {env['load_average_after']} "
             f"({env['cpus']} CPUs)")
    for label, mm in models_meta.items():
        if mm["weights"]:
            text += f"\n{label}: {mm['weights']}"
    text += "".join(f"\n{line}" for line in _delegate_notes(rows))
    text += "".join(f"\n{line}" for line in _xnnpack_int8_notes(rows))
    report = {"title": cfg.title, "config": _jsonable(cfg.to_json()), "device": device, "work_dir": str(work),
              "environment": env, "cpu_peak": peak, "models": models_meta, "rows": _jsonable(rows), "ratios": ratios,
              "text": text}
    Rep.write_outputs(report, out)
    return report


INTERLEAVE_KINDS = ("litert", "onnxruntime", "openvino", "keras")


def interleave_rows(rows: list[dict], evals: dict, cfg: BenchConfig, work: Path, log=print) -> dict:
    """Time every ok local LiteRT / ONNX Runtime / Keras row again, all rows of one thread count in ONE child
    (edge_boneage.bench.interleave: shuffled blocks), and replace the row's latency statistics with those (p10 /
    p50 / p90 / mean; the sequential run's p50 stays as ``seq_p50_ms``). Returns the spread over repeats of each
    ratio compute_ratios reports, {(name, model, threads): {"ratio_p10", "ratio_p90", "repeats"}}."""
    spreads = {}
    for t in sorted({r["threads"] for r in rows if isinstance(r.get("threads"), int)}):
        sel = {str(i): r for i, r in enumerate(rows) if r.get("status") == "ok" and r.get("threads") == t
               and r.get("runtime") in INTERLEAVE_KINDS and r.get("file") and r["model"] in evals}
        if not sel:
            continue
        key = {(r["model"], r["variant"], r["runtime"]): i for i, r in sel.items()}
        pairs = {}
        for (m, v, rt), i in key.items():
            f32 = key.get((m, "f32", "litert"))
            if v == "int8" and rt == "litert" and f32:
                pairs[("int8_vs_f32", m, t)] = (i, f32)
            if v == "f32" and rt == "onnxruntime" and f32:
                pairs[("litert_vs_onnxruntime", m, t)] = (f32, i)
        for p in cfg.compare:
            a, b = key.get((p["a"], "f32", "litert")), key.get((p["b"], "f32", "litert"))
            if a and b:
                pairs[(p.get("name", f"{p['a']}_vs_{p['b']}"), f"{p['a']} / {p['b']}", t)] = (a, b)
        job = {"rows": [{"label": i, "kind": r["runtime"], "path": r["file"], "threads": t, "eval": evals[r["model"]]}
                        for i, r in sel.items()], "repeats": cfg.interleave_repeats, "block": cfg.interleave_block,
               "pairs": [list(v) for v in pairs.values()]}
        jp, op = work / f"interleave_t{t}.job.json", work / f"interleave_t{t}.result.json"
        jp.write_text(json.dumps(job))
        try:
            proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.interleave", str(jp), str(op)],
                                  capture_output=True, text=True, timeout=cfg.run_timeout, env=child_env())
            res = json.loads(op.read_text()) if proc.returncode == 0 and op.is_file() else None
        except subprocess.TimeoutExpired:
            res, proc = None, None
        if res is None:
            why = "timed out" if proc is None else signal_text(proc.returncode)
            log(f"  interleaved timing t{t}: child {why}; the rows keep their sequential timings")
            continue
        for i, r in sel.items():
            st = res["rows"].get(i)
            if st is None:
                r["error"] = (f"{r['error']}; " if r.get("error") else "") + \
                    f"interleaved timing: {res['errors'].get(i, 'did not run')}"
                continue
            r.update(seq_p50_ms=r.get("p50_ms"), p10_ms=st["p10_ms"], p50_ms=st["p50_ms"], p90_ms=st["p90_ms"],
                     mean_ms=st["mean_ms"], timing="interleaved", interleaved_calls=st["calls"])
            if r.get("gmacs") and st["mean_ms"]:
                r["gmacs_per_s"] = r["gmacs"] / (st["mean_ms"] / 1000.0)
        by_pair = {(q["a"], q["b"]): q for q in res["ratios"]}
        for name_key, (a, b) in pairs.items():
            q = by_pair.get((a, b))
            if q:
                spreads[name_key] = {"ratio_p10": q["ratio_p10"], "ratio_p90": q["ratio_p90"],
                                     "ratio_repeats": q["repeats"], "interleaved": True}
    return spreads


def _delegate_notes(rows: list[dict]) -> list[str]:
    """One line per LiteRT file: its XNNPACK partitions and the ops left to the builtin kernels."""
    out, seen = [], set()
    for r in rows:
        d = r.get("delegate")
        if r.get("runtime") != "litert" or not d or "partitions" not in d or r.get("file") in seen:
            continue
        seen.add(r.get("file"))
        rest = ", ".join(f"{n} {op}" for op, n in d["outside"].items()) or "none"
        out.append(f"{r['model']} {r['variant']}: XNNPACK {d['partitions']} partition(s), {d['delegated']} of "
                   f"{d['ops']} ops delegated; outside: {rest}")
    return out


def _xnnpack_int8_notes(rows: list[dict]) -> list[str]:
    """One line per int8 .tflite with int8 ADD/MUL ops XNNPACK refuses (convert.litert.xnnpack_int8_rejects): why
    such a file can be slower than float32 on a CPU."""
    from edge_boneage.convert.litert import xnnpack_int8_rejects

    out, seen = [], set()
    for r in rows:
        f = r.get("file")
        if r.get("variant") != "int8" or r.get("runtime") != "litert" or not f or f in seen or not Path(f).is_file():
            continue
        seen.add(f)
        try:
            bad = xnnpack_int8_rejects(f)
        except Exception as exc:  # diagnosis only: never fail the report over it
            out.append(f"{r['model']} int8: could not read its quantisation scales ({type(exc).__name__})")
            continue
        if bad:
            out.append(f"{r['model']} int8: {', '.join(f'{n} {op}' for op, n in bad.items())} outside XNNPACK's int8 "
                       f"requantisation range (reference kernels, extra XNNPACK partitions); typical of random "
                       f"weights, so time int8 with trained weights")
    return out


def _dist_version(mod: str):
    from importlib import metadata

    for name in ({"ai_edge_litert": "ai-edge-litert", "tensorflow": "tensorflow-cpu"}.get(mod, mod), mod):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
