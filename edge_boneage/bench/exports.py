"""The export phase of a benchmark: ONE exporter child per Keras model (``python -m edge_boneage.bench.worker
export``) writes every variant through convert.export's format table and parity gate (force=True: a failing file
is written and its row says so), a fresh child continuing after a crash; what the files are (ops, sizes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_boneage.bench.config import BenchConfig, ModelSpec, _is_file_spec, child_env


# --------------------------------------------------------------------------------------------------------------
# export phase


def signal_text(rc: int) -> str:
    from edge_boneage.bench.devices import describe_exit

    return describe_exit(rc)[0]


def export_model(spec: ModelSpec, cfg: BenchConfig, work: Path, want_onnx: bool, log=print) -> dict:
    """Run the exporter child(ren) for one Keras model; returns {"info", "variants": {v: result}, "onnx": result}."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.label)
    weights = spec.weights
    job = {"source": spec.model, "kwargs": spec.kwargs, "weights": weights,
           "workdir": str(work), "stem": stem,
           "variants": list(cfg.variants), "onnx": want_onnx, "int8_recipe": cfg.int8_recipe,
           "calib": "rsna" if cfg.data.get("source") == "rsna"
           else "synth", "rsna_dir": cfg.data.get("rsna_dir"), "calib_n": cfg.calib_n, "check_n": cfg.check_n}
    job_path = work / f"{stem}.job.json"
    job_path.write_text(json.dumps(job, indent=1))
    crash_notes: dict[str, str] = {}
    for attempt in range(len(cfg.variants) + 2):
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.worker", "export", str(job_path)],
                                  capture_output=True, text=True, timeout=cfg.export_timeout, env=child_env(),
                                  cwd=str(work))
            rc, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, f"timed out after {cfg.export_timeout:g} s"
        log(f"  exporter for {spec.label}: {'ok' if rc == 0 else ('exit ' + str(rc))} in {time.time() - t0:.0f} s")
        info_path = work / f"{stem}.info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {"error": f"exporter {rc}: "
                                                                                       f"{(err or '').strip()[-300:]}"}
        if "error" in info:
            break
        pending = [v for v in cfg.variants if not (work / f"{stem}_{v}.export.json").is_file()]
        onnx_pending = want_onnx and not (work / f"{stem}.onnx.export.json").is_file()
        if rc == 0 or not (pending or onnx_pending):
            break
        culprit = next((v for v in pending if (work / f"{stem}_{v}.started").is_file()), None)
        how = signal_text(rc) if rc is not None else err
        if culprit is None and onnx_pending and (work / f"{stem}_onnx.started").is_file():
            (work / f"{stem}.onnx.export.json").write_text(json.dumps(
                {"status": "export failed", "error": f"exporter {how} during the ONNX export"}))
        elif culprit is not None:
            crash_notes[culprit] = how
            (work / f"{stem}_{culprit}.export.json").write_text(json.dumps(
                {"status": "export failed", "error": f"exporter {how} during the {culprit} export", "crashed": True}))
        else:
            break
    variants = {}
    for v in cfg.variants:
        p = work / f"{stem}_{v}.export.json"
        variants[v] = json.loads(p.read_text()) if p.is_file() else \
            {"status": "export failed", "error": (info.get("error") if "error" in info else "exporter did not finish")}
        f = work / f"{stem}_{v}.tflite"
        variants[v]["file"] = str(f) if f.is_file() and variants[v]["status"] != "export failed" else None
    onnx = None
    if want_onnx:
        p = work / f"{stem}.onnx.export.json"
        onnx = json.loads(p.read_text()) if p.is_file() else {"status": "export failed", "error": info.get(
            "error", "exporter did not finish")}
        f = work / f"{stem}.onnx"
        onnx["file"] = str(f) if f.is_file() and onnx["status"] == "ok" else None
    return {"info": info, "variants": variants, "onnx": onnx, "stem": stem, "weights": info.get("weights_note")}


def tflite_info(path: str) -> dict:
    """Task and inputs of a .tflite from its interpreter (+ edge_boneage metadata when present)."""
    from edge_boneage import device_runner as R

    Interpreter, _ = R.interpreter_class()
    ins, outs = R.io_details(Interpreter(model_path=path))
    inputs = {k: {"shape": [int(s) for s in d.get("shape_signature", d["shape"])][1:],
                  "dtype": np.dtype(d["dtype"]).name} for k, d in ins.items()}
    task = "age" if "age" in outs else "tw3_stage"
    variant = "file"
    try:
        from edge_boneage.tflite_meta import read_metadata

        meta = read_metadata(path) or {}
        mode = (meta.get("quantization") or {}).get("mode")
        variant = {"float32": "f32"}.get(mode, mode or "file")
        task = (meta.get("model") or {}).get("task") or task
    except Exception:  # noqa: BLE001 - metadata is optional
        pass
    return {"task": task, "inputs": inputs, "variant": variant}


def spec_file(m: dict) -> str | None:
    return m["spec"].model if _is_file_spec(m["spec"].model) and Path(m["spec"].model).is_file() else None


def onnx_info(path: str) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = {i.name: {"shape": list(i.shape[1:]), "dtype": i.type} for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    return {"task": "age" if "age" in outs else "tw3_stage", "inputs": inputs}
