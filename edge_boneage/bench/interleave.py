"""Interleaved latency: several rows (model file x runtime, or a whole radiograph pipeline) timed in ONE process,
alternating in short blocks, so a ratio between rows holds on a machine whose speed drifts.

Each repeat visits every row once, in a freshly shuffled order, and times ``block`` calls of it; a row's latency
is the distribution of all its calls (p10 / p50 / p90), and a ratio between two rows is computed per repeat (block
median over block median) so its spread over repeats is reported beside it. Runtimes are imported only when a row
needs them: a LiteRT-only job imports numpy and ai-edge-litert (it runs on an edge box); ONNX Runtime, OpenVINO
and Keras rows import theirs.

Row kinds (``{"label", "kind", "path", "threads"}``):

* ``litert`` / ``onnxruntime`` / ``openvino`` / ``keras``: one ``invoke`` / ``run`` / ``infer`` / ``predict`` on
  a fixed preprocessed sample (inference alone);
* ``e2e``: ``edge_boneage.predict`` on a radiograph file (decode + quality gate + hand localisation +
  preprocessing + inference), cycling through ``images``.

``"rss": true`` (one row per job, a fresh process) adds the process's peak resident memory.

    python -m edge_boneage.bench.interleave JOB.json OUT.json
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import numpy as np


def _first_sample(eval_npz: str | None, names_shapes: dict) -> dict:
    if eval_npz:
        with np.load(eval_npz, allow_pickle=False) as z:
            return {k: z[k][:1] for k in z.files if not k.startswith("label_") and k != "task"}
    return {k: np.zeros([1, *shape], dtype) for k, (shape, dtype) in names_shapes.items()}


def litert_runner(path: str, threads: int, eval_npz: str | None):
    from edge_boneage import device_runner as R

    Interpreter, _ = R.interpreter_class()
    interp = Interpreter(model_path=path, num_threads=int(threads))
    ins, _outs = R.io_details(interp)
    for d in ins.values():
        shape = [int(s) for s in d["shape"]]
        if shape[0] != 1:
            interp.resize_tensor_input(d["index"], [1] + shape[1:])
    interp.allocate_tensors()
    feed = _first_sample(eval_npz, {k: ([int(s) for s in d["shape"]][1:], np.dtype(d["dtype"])) for k, d in ins.items()})
    for name, d in ins.items():
        interp.set_tensor(d["index"], np.ascontiguousarray(R.quantize(feed[name][:1], d)))
    return interp.invoke


def onnxruntime_runner(path: str, threads: int, eval_npz: str | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    spec = {i.name: ([int(s) if isinstance(s, int) else 1 for s in i.shape[1:]],
                     np.uint8 if "uint8" in i.type else np.float32) for i in sess.get_inputs()}
    sample = _first_sample(eval_npz, spec)
    feed = {n: np.asarray(sample[n] if n in sample else sample[_strip(n, sample)], spec[n][1]) for n in spec}
    return lambda: sess.run(None, feed)


def _strip(name: str, sample: dict) -> str:
    for k in sample:
        if name.endswith(k) or k.endswith(name):
            return k
    raise KeyError(f"model input {name!r} not in the evaluation set ({sorted(sample)})")


def openvino_runner(path: str, threads: int, eval_npz: str | None):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"})
    spec = {}
    for p in compiled.inputs:
        shape = [int(d) for d in p.get_partial_shape().get_min_shape()][1:]
        spec[p.get_any_name()] = (shape, np.uint8 if p.get_element_type().get_type_name() == "u8" else np.float32)
    sample = _first_sample(eval_npz, spec)
    feed = {n: np.asarray(sample[n] if n in sample else sample[_strip(n, sample)], spec[n][1]) for n in spec}
    request = compiled.create_infer_request()
    return lambda: request.infer(feed)


def keras_runner(path: str, threads: int, eval_npz: str | None):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised by an earlier Keras row: the first row's setting holds
        pass
    from edge_boneage.modelfile import load_model  # the safe_mode loader

    model = load_model(path)
    sample = _first_sample(eval_npz, {})
    feed = {k: sample[k] for k in [t.name.split(":")[0] for t in model.inputs] if k in sample} or sample
    fn = tf.function(lambda x: model(x, training=False))
    fn(feed)
    return lambda: fn(feed)


def e2e_runner(path: str, threads: int, images: list[str], sex: str = "M"):
    """decode + hand localisation + preprocessing + inference, cycling through `images` (edge_boneage.predict)."""

    from edge_boneage.predict import AgePredictor, predict_image

    predictor = AgePredictor(path, threads=int(threads))
    state = {"i": 0}

    def run():
        f = images[state["i"] % len(images)]
        state["i"] += 1
        predict_image(predictor, f, sex)

    return run


RUNNERS = {"litert": litert_runner, "onnxruntime": onnxruntime_runner, "openvino": openvino_runner,
           "keras": keras_runner}


def make_runner(row: dict, eval_npz: str | None):
    if row["kind"] == "e2e":
        return e2e_runner(row["path"], row.get("threads", 1), row["images"])
    return RUNNERS[row["kind"]](row["path"], row.get("threads", 1), row.get("eval", eval_npz))


def interleave(runners: dict, *, repeats: int = 15, block: int = 10, warmup: int = 3, seed: int = 0) -> dict:
    """{label: {"us": [all call times], "block_median_us": [one per repeat]}}; rows alternate, shuffled per repeat."""
    rng = random.Random(seed)
    labels = list(runners)
    for lab in labels:
        for _ in range(int(warmup)):
            runners[lab]()
    out = {lab: {"us": [], "block_median_us": []} for lab in labels}
    for _ in range(int(repeats)):
        order = labels[:]
        rng.shuffle(order)
        for lab in order:
            fn, times = runners[lab], []
            for _ in range(int(block)):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e6)
            out[lab]["us"] += times
            out[lab]["block_median_us"].append(float(np.median(times)))
    return out


def summarise(raw: dict) -> dict:
    res = {}
    for lab, r in raw.items():
        us = np.asarray(r["us"], np.float64)
        res[lab] = {"p10_ms": float(np.percentile(us, 10)) / 1e3, "p50_ms": float(np.percentile(us, 50)) / 1e3,
                    "p90_ms": float(np.percentile(us, 90)) / 1e3, "mean_ms": float(us.mean()) / 1e3,
                    "calls": int(us.size), "block_median_ms": [x / 1e3 for x in r["block_median_us"]]}
    return res


def ratio(summary: dict, a: str, b: str) -> dict:
    """a / b latency: median of the per-repeat block-median ratios, with p10-p90 over repeats."""
    ra = np.asarray(summary[a]["block_median_ms"]) / np.asarray(summary[b]["block_median_ms"])
    return {"a": a, "b": b, "ratio_p50": float(np.median(ra)), "ratio_p10": float(np.percentile(ra, 10)),
            "ratio_p90": float(np.percentile(ra, 90)), "repeats": int(ra.size)}


def run_job(job: dict) -> dict:
    """Build every row's runner (a row that fails to build is reported with its error), then time them interleaved."""
    runners, errors = {}, {}
    for row in job["rows"]:
        try:
            runners[row["label"]] = make_runner(row, job.get("eval"))
        except Exception as exc:  # noqa: BLE001 - a row with its reason, not a dead job
            errors[row["label"]] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    raw = interleave(runners, repeats=job.get("repeats", 15), block=job.get("block", 10),
                     warmup=job.get("warmup", 3), seed=job.get("seed", 0)) if runners else {}
    summary = summarise(raw)
    ratios = [ratio(summary, a, b) for a, b in job.get("pairs", []) if a in summary and b in summary]
    res = {"ok": True, "rows": summary, "errors": errors, "ratios": ratios,
           "settings": {k: job.get(k) for k in ("repeats", "block", "warmup", "seed")}}
    if job.get("rss"):  # a one-row job in a fresh process: its peak resident memory (VmHWM: ru_maxrss would carry
        from edge_boneage.device_runner import peak_rss_kb  # the parent's across exec)

        kb = peak_rss_kb()
        res["peak_rss_mb"] = kb / 1024.0 if kb else None
    return res


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m edge_boneage.bench.interleave JOB.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        job = json.load(f)
    res = run_job(job)
    tmp = f"{argv[1]}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
