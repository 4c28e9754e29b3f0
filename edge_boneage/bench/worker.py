"""Child processes of the benchmark harness (never imported by the parent for their heavy parts).

    python -m edge_boneage.bench.worker export JOB.json      # build/load a Keras model, export every variant
    python -m edge_boneage.bench.worker run RUN.json         # time an .onnx (ONNX Runtime) or .keras (Keras) model

export: JOB = {"source": registry name or .keras path, "kwargs": {...}, "weights": .keras/.weights.h5 or null,
"workdir": dir, "stem": name, "variants": ["f32", ...], "onnx": bool, "calib": "synth", "calib_n", "check_n",
"rsna_dir"}. Writes <workdir>/<stem>.keras (registry models), <stem>.info.json (task, inputs, params, Keras MACs)
and per variant <stem>_<variant>.tflite + <stem>_<variant>.export.json ({"status", "error", "parity", ...}); a
<stem>_<variant>.started marker is written first, so a crash (no .export.json) is attributed to that variant.

run: RUN = {"runtime": "onnxruntime"|"openvino"|"keras", "model": path, "eval": npz, "threads", "runs", "warmup", "out"}.
The timing/accuracy definitions are device_runner's (same code), so rows of every runtime compare.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

VARIANT_QUANT = {"f32": "float32", "fp16": "fp16", "dynamic": "dynamic", "int8": "int8"}


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}"[:500] if not msg.startswith(type(exc).__name__) else msg[:500]


def _write_json(path: Path, obj) -> None:
    from edge_boneage.fileutil import write_json_atomic

    write_json_atomic(path, obj)


# --------------------------------------------------------------------------------------------------------------
# export


def _build_or_load(job: dict):
    from edge_boneage.convert.export import ensure_tensorflow_backend

    ensure_tensorflow_backend()
    import keras

    from edge_boneage.train import import_custom_objects, load_model

    import_custom_objects()
    src = job["source"]
    if src.endswith(".keras"):
        return load_model(src), Path(src), None
    from keras_models.registry import build_model, get_entry

    keras.utils.set_random_seed(int(job.get("seed", 0)))
    model = build_model(src, **(job.get("kwargs") or {}))
    weights = job.get("weights")
    note = "random weights (no trained weights given)"
    if weights:
        if str(weights).endswith(".keras"):
            model.set_weights(load_model(weights).get_weights())
        else:
            model.load_weights(weights)
        note = f"trained weights from {weights}"
    job["weights_note"] = note
    path = Path(job["workdir"]) / f"{job['stem']}.keras"
    from edge_boneage.train import save_model_atomic

    save_model_atomic(model, path)
    return model, path, get_entry(src).task


def _call_once(model) -> None:
    """Keras' ONNX exporter refuses a model that has never been called."""
    feed = {}
    for t in model.inputs:
        name = t.name.split(":")[0]
        shape = (1,) + tuple(int(d) for d in t.shape[1:])
        feed[name] = np.zeros(shape, np.dtype(str(t.dtype).replace("<dtype: '", "").replace("'>", "")))
    model(feed, training=False)


def _export_variant(model, keras_path: Path, variant: str, out: Path, job: dict) -> dict:
    """{"status": "ok"|"validation failed"|"export failed", "error", "parity", "seconds", "method"} through the one
    gated exporter (convert.export; force=True: a file that fails the gate is written and its row says so)."""
    from edge_boneage.convert import export as X
    from edge_boneage import EdgeBoneageError

    t0 = time.time()
    q = VARIANT_QUANT[variant]
    try:
        res = X.export(keras_path, out, quantization=q, calib=job.get("calib", "synth"),
                       rsna_dir=job.get("rsna_dir"), calib_n=int(job.get("calib_n", 32)),
                       check_n=int(job.get("check_n", 16)), force=True, model=model, log=lambda *a: None,
                       recipe=job.get("int8_recipe") or "tf_int8")
    except EdgeBoneageError as exc:
        return {"status": "export failed", "error": _one_line(exc), "seconds": time.time() - t0}
    parity = res.parity
    status = "ok" if res.passed else "validation failed"
    err = None if res.passed else f"parity gate: {parity.get('reason')}"
    return {"status": status, "error": err, "parity": parity, "seconds": time.time() - t0,
            "method": (res.info or {}).get("method"), "exporter": "edge_boneage.convert.export.export"}


def _export_onnx(model, keras_path: Path, out: Path, job: dict) -> dict:
    """The "onnx" row of convert.export.FORMATS through the same gated exporter as every LiteRT variant (force=True:
    a file that fails the gate is written and its row says so)."""
    import importlib.util

    from edge_boneage.convert import export as X

    t0 = time.time()
    if importlib.util.find_spec("tf2onnx") is None:
        return {"status": "skipped", "error": "tf2onnx not installed (Keras' ONNX export needs it)", "seconds": 0.0}
    try:
        _call_once(model)
        res = X.export(keras_path, out, quantization="onnx", check_n=int(job.get("check_n", 16)), force=True,
                       model=model, log=lambda *a: None)
    except Exception as exc:  # noqa: BLE001 - one row (tf2onnx raises its own error types)
        return {"status": "export failed", "error": _one_line(exc), "seconds": time.time() - t0}
    status = "ok" if res.passed else "validation failed"
    err = None if res.passed else f"parity gate: {res.parity.get('reason')}"
    return {"status": status, "error": err, "parity": res.parity, "seconds": time.time() - t0,
            "method": (res.info or {}).get("method"), "exporter": "edge_boneage.convert.export.export"}


def _model_info(model, task) -> dict:
    from edge_boneage.convert.checkdata import input_specs, model_task

    from edge_boneage.bench.macs import keras_macs

    ins = {k: {"shape": list(s), "dtype": d} for k, (s, d) in input_specs(model).items()}
    spec = None
    if (task or model_task(model)) == "age":  # the model's own input contract: the evaluation set is made by it
        from edge_boneage.preprocess import spec_of_keras_model

        try:
            spec = spec_of_keras_model(model).to_dict()
        except Exception:  # noqa: BLE001 - a model without a recorded contract gets the default one
            spec = None
    return {"task": task or model_task(model), "inputs": ins, "params": int(model.count_params()),
            "keras_macs": keras_macs(model), "name": model.name, "preprocess": spec}


def export_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    work = Path(job["workdir"])
    work.mkdir(parents=True, exist_ok=True)
    stem = job["stem"]
    info_path = work / f"{stem}.info.json"
    try:
        model, keras_path, task = _build_or_load(job)
        info = _model_info(model, task)
        info["keras_path"] = str(keras_path)
        info["weights_note"] = job.get("weights_note")
        _write_json(info_path, info)
    except Exception as exc:  # noqa: BLE001
        _write_json(info_path, {"error": _one_line(exc)})
        traceback.print_exc()
        return 3
    for variant in job.get("variants", []):
        res_path = work / f"{stem}_{variant}.export.json"
        if res_path.exists():
            continue
        (work / f"{stem}_{variant}.started").write_text(str(os.getpid()))
        faults = os.environ.get("EDGE_BONEAGE_BENCH_FAULT", "").split(",")
        if f"export-abort:{stem}_{variant}" in faults:
            os.abort()  # fault injection for tests: an exporter that dies mid-variant
        res = _export_variant(model, keras_path, variant, work / f"{stem}_{variant}.tflite", job)
        _write_json(res_path, res)
    if job.get("onnx"):
        res_path = work / f"{stem}.onnx.export.json"
        if not res_path.exists():
            (work / f"{stem}_onnx.started").write_text(str(os.getpid()))
            _write_json(res_path, _export_onnx(model, keras_path, work / f"{stem}.onnx", job))
    return 0


# --------------------------------------------------------------------------------------------------------------
# run (ONNX Runtime / Keras)


def _age_or_probs(outputs: dict) -> dict:
    return {k: np.asarray(v) for k, v in outputs.items()}


def _run_onnx(model_path: str, data: dict, threads: int):
    import onnxruntime as ort

    from edge_boneage import device_runner as R

    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    init_us = (time.perf_counter() - t0) * 1e6
    feed_all = R.model_inputs(data)
    types = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int32)": np.int32,
             "tensor(int64)": np.int64, "tensor(int8)": np.int8}
    ins = {i.name: types.get(i.type, np.float32) for i in sess.get_inputs()}
    missing = [k for k in ins if k not in feed_all]
    if missing:
        raise RuntimeError(f"{model_path}: ONNX inputs {sorted(ins)}; the evaluation set lacks {missing}")
    out_names = [o.name for o in sess.get_outputs()]

    def call(i):
        return sess.run(out_names, {k: feed_all[k][i:i + 1].astype(t) for k, t in ins.items()})

    return init_us, call, out_names, f"onnxruntime {ort.__version__}"


def _run_openvino(model_path: str, data: dict, threads: int):
    import openvino as ov

    from edge_boneage import device_runner as R

    t0 = time.perf_counter()
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model_path), "CPU",
                                  {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    init_us = (time.perf_counter() - t0) * 1e6
    feed_all = R.model_inputs(data)
    types = {"u8": np.uint8, "f32": np.float32, "i32": np.int32, "i64": np.int64, "i8": np.int8}
    ins = {p.get_any_name(): types.get(p.get_element_type().get_type_name(), np.float32) for p in compiled.inputs}
    missing = [k for k in ins if k not in feed_all]
    if missing:
        raise RuntimeError(f"{model_path}: OpenVINO inputs {sorted(ins)}; the evaluation set lacks {missing}")
    outs = list(compiled.outputs)
    out_names = [o.get_any_name() for o in outs]

    def call(i):
        res = request.infer({k: feed_all[k][i:i + 1].astype(t) for k, t in ins.items()})
        return [np.asarray(res[o]) for o in outs]

    return init_us, call, out_names, f"openvino {ov.__version__.split('-')[0]} (CPU plugin, from the ONNX file)"


def _run_keras(model_path: str, data: dict, threads: int):
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from edge_boneage import device_runner as R
    from edge_boneage.modelfile import load_model

    t0 = time.perf_counter()
    model = load_model(model_path)
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    init_us = (time.perf_counter() - t0) * 1e6
    feed_all = R.model_inputs(data)
    names = [t.name.split(":")[0] for t in model.inputs]
    missing = [k for k in names if k not in feed_all]
    if missing:
        raise RuntimeError(f"{model_path}: Keras inputs {names}; the evaluation set lacks {missing}")
    out_names = list(model.output_names)

    def call(i):
        res = fn({k: tf.constant(feed_all[k][i:i + 1]) for k in names})
        res = res if isinstance(res, dict) else dict(zip(out_names, res if isinstance(res, (list, tuple)) else [res]))
        return [np.asarray(res[k]) for k in out_names]

    return init_us, call, out_names, f"keras {keras.__version__} (tf.function, TF {tf.__version__})"


def run_main(run_path: str) -> int:
    from edge_boneage import device_runner as R

    cfg = json.loads(Path(run_path).read_text())
    out = Path(cfg["out"])
    try:
        rss0 = R.current_rss_kb()
        data = R.load_eval(cfg["eval"])
        make = {"onnxruntime": _run_onnx, "openvino": _run_openvino, "keras": _run_keras}[cfg["runtime"]]
        init_us, call, out_names, runtime = make(cfg["model"], data, int(cfg.get("threads", 1)))
        t = time.perf_counter()
        call(0)
        first_us = (time.perf_counter() - t) * 1e6
        warm, timed = [], []
        for _ in range(int(cfg.get("warmup", 5))):
            t = time.perf_counter()
            call(0)
            warm.append((time.perf_counter() - t) * 1e6)
        for _ in range(int(cfg.get("runs", 50))):
            t = time.perf_counter()
            call(0)
            timed.append((time.perf_counter() - t) * 1e6)
        n = int(next(iter(R.model_inputs(data).values())).shape[0])
        coll = {k: [] for k in out_names}
        for i in range(n):
            for k, v in zip(out_names, call(i)):
                coll[k].append(np.asarray(v, np.float32))
        outputs = {k: np.concatenate(v) for k, v in coll.items()}
        res = {"ok": True, "runtime": runtime, "threads": int(cfg.get("threads", 1)),
               "model": os.path.basename(cfg["model"]), "model_bytes": os.path.getsize(cfg["model"]),
               "timing_us": R.timing_summary(init_us, first_us, warm, timed),
               "memory": {"peak_rss_kb": R.peak_rss_kb(), "maxrss_kb": R.maxrss_kb(), "rss_before_model_kb": rss0},
               "accuracy": R.accuracy(data, outputs),
               "outputs_finite": bool(all(np.all(np.isfinite(v)) for v in outputs.values()))}
        rc = 0
    except Exception as exc:  # noqa: BLE001
        res = {"ok": False, "error": _one_line(exc)}
        rc = 3
    _write_json(out, res)
    return rc


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] not in ("export", "run"):
        print("usage: python -m edge_boneage.bench.worker export|run JOB.json", file=sys.stderr)
        return 2
    return export_main(argv[1]) if argv[0] == "export" else run_main(argv[1])


if __name__ == "__main__":
    sys.exit(main())
