#!/usr/bin/env python3
"""Self-contained on-device benchmark runner for one .tflite model: latency, peak memory, accuracy, MACs.

This ONE file is copied to an edge box (``edge-boneage benchmark --device ssh:user@host``) and run there with the
box's python3; it needs only numpy and a LiteRT interpreter (``ai-edge-litert``, else ``tflite-runtime``). It
imports nothing from edge_boneage. The host harness runs the very same file locally as its child-process worker
for LiteRT rows, so local and remote numbers come from identical code.

    python3 device_runner.py MODEL.tflite --eval eval.npz --threads 1 --runs 50 --warmup 5 --out result.json

Peak memory: VmHWM of this process (see ``peak_rss_kb``; ru_maxrss is reported beside it).

Timings follow LiteRT's ``benchmark_model`` (microseconds, batch 1, the first evaluation image):
``init`` = interpreter construction + allocate_tensors, ``first`` = the first invoke(), ``warmup_avg`` = mean of the
warm-up invokes, then ``avg`` / ``std`` / ``p50`` / ``p90`` / ``min`` / ``max`` over the timed invokes. Inputs
are set before the clock starts; only ``invoke()`` is timed. Peak memory is this process's ``ru_maxrss`` after
the timed runs and the accuracy pass (the interpreter without TensorFlow: what a box pays), with the RSS before
the model was loaded beside it.

Evaluation set (.npz): model inputs by name (``image`` uint8 (N,S,S,C) already letterboxed and resized; ``sex``
float32 (N,1); ``bone`` int32 (N,1)) and labels ``label_age_months`` (N,) for age models or ``label_grade`` (N,)
(TW3 grade 0..8, 0 = stage A which the classifier has no class for) for stage models. Every sample is run at
batch 1 through the same interpreter: age models report MAE (months) and the fraction within +-12 months;
stage models report top-1 stage accuracy (class k = grade k+1).

Exit codes: 0 ok; 3 a Python-level error (the JSON has "ok": false and the one-line error); a crash (e.g. SIGABRT
inside invoke) leaves no JSON and the caller reports the signal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

import numpy as np

RUNNER_VERSION = 1
ONE_YEAR_MONTHS = 12.0
FAULT_ENV = "EDGE_BONEAGE_BENCH_FAULT"  # fault injection for tests only: "abort:<substring of the model path>"


# --------------------------------------------------------------------------------------------------------------
# Interpreter


def interpreter_class():
    """(Interpreter class, "ai-edge-litert X" / "tflite-runtime X"); tflite-runtime only when ai-edge-litert is
    missing, or when EDGE_BONEAGE_FORCE_TFLITE_RUNTIME=1."""
    if os.environ.get("EDGE_BONEAGE_FORCE_TFLITE_RUNTIME") != "1":
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter, f"ai-edge-litert {_version('ai-edge-litert', ai_edge_litert)}"
        except ImportError:
            pass
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite-runtime {_version('tflite-runtime', tflite_runtime)}"
    except ImportError as exc:
        raise RuntimeError("no LiteRT interpreter: pip install ai-edge-litert (or tflite-runtime)") from exc


def _version(dist: str, module) -> str:
    v = getattr(module, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:  # noqa: BLE001
        return "?"


def _tensor_key(name: str) -> str:
    return re.sub(r"^serving_default_", "", re.sub(r":\d+$", "", name))


def io_details(interp) -> tuple[dict, dict]:
    """({input name: detail}, {output name: detail}) by SignatureDef name (the Keras names), else tensor names."""
    sigs = interp.get_signature_list() if hasattr(interp, "get_signature_list") else {}
    if sigs:
        key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
        runner = interp.get_signature_runner(key)
        return dict(runner.get_input_details()), dict(runner.get_output_details())

    def by_key(ds):
        keys = [_tensor_key(d["name"]) for d in ds]
        return {(k if keys.count(k) == 1 else d["name"]): d for k, d in zip(keys, ds)}

    return by_key(interp.get_input_details()), by_key(interp.get_output_details())


def quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    x = np.asarray(x)
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x.astype(np.float64) / scale) + zero, info.min, info.max).astype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def dequantize(q, detail):
    scale, zero = detail.get("quantization", (0.0, 0))
    q = np.asarray(q)
    if np.issubdtype(q.dtype, np.integer) and scale:
        return (q.astype(np.float32) - np.float32(zero)) * np.float32(scale)
    return q.astype(np.float32) if np.issubdtype(q.dtype, np.floating) else q


def model_inputs(data: dict) -> dict:
    """The model-input arrays of an evaluation set (every key that is not a label or the task)."""
    return {k: v for k, v in data.items() if not k.startswith("label_") and k != "task"}


# --------------------------------------------------------------------------------------------------------------
# Statistics shared with the host worker (ONNX Runtime / Keras rows use the same definitions)


def timing_summary(init_us: float, first_us: float, warmup_us: list, runs_us: list) -> dict:
    r = np.asarray(runs_us, np.float64)
    return {
        "init": float(init_us), "first": float(first_us),
        "warmup_avg": float(np.mean(warmup_us)) if len(warmup_us) else None,
        "avg": float(r.mean()), "std": float(r.std()), "p50": float(np.percentile(r, 50)),
        "p90": float(np.percentile(r, 90)), "min": float(r.min()), "max": float(r.max()),
        "runs": int(r.size), "warmup_runs": len(warmup_us),
    }


def accuracy(data: dict, outputs: dict) -> dict:
    """Age: MAE (months) and +-1-year accuracy; stage: top-1 accuracy over grades B..I. outputs: {name: (N, ...)}."""
    if "label_age_months" in data:
        y = np.asarray(data["label_age_months"], np.float64).reshape(-1)
        if "age" in outputs:
            pred = np.asarray(outputs["age"], np.float64).reshape(-1)
        else:
            ones = [v for v in outputs.values() if np.asarray(v).ndim == 2 and np.asarray(v).shape[1] == 1]
            if len(ones) != 1:
                raise RuntimeError(f"cannot tell which output is the age (outputs {sorted(outputs)})")
            pred = np.asarray(ones[0], np.float64).reshape(-1)
        err = np.abs(pred - y)
        return {"task": "age", "n": int(y.size), "mae_months": float(err.mean()),
                "acc_1y": float((err <= ONE_YEAR_MONTHS).mean()),
                "bias_months": float((pred - y).mean())}
    if "label_grade" in data:
        g = np.asarray(data["label_grade"]).reshape(-1)
        probs = outputs.get("probs")
        if probs is None:
            raise RuntimeError(f"stage model has no 'probs' output (outputs {sorted(outputs)})")
        top = np.asarray(probs).argmax(-1).reshape(-1) + 1
        ok = g >= 1
        return {"task": "tw3_stage", "n": int(ok.sum()),
                "stage_acc": float(np.mean(top[ok] == g[ok])) if ok.any() else None}
    return {"task": None, "n": 0}


def maxrss_kb() -> int | None:
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r // 1024 if sys.platform == "darwin" else r)  # Linux/Android: KiB; macOS: bytes
    except (ImportError, OSError):
        return None


def peak_rss_kb() -> int | None:
    """This process's peak resident set (VmHWM, KiB) from /proc/self/status (Linux, Android), else ru_maxrss.

    VmHWM is preferred because Linux carries ru_maxrss across execve(): a child started by a large parent (fork or
    vfork, then exec) reports at least the parent's RSS as its own ru_maxrss. VmHWM belongs to the new image only.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return maxrss_kb()


def current_rss_kb() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------------------------------------------
# MACs from the graph


def _macs_of_op(name: str, ins: list, out: tuple) -> int:
    """Multiply-accumulates of one op from its tensor shapes (batch as in the allocated graph: 1)."""
    n_out = int(np.prod(out)) if out else 0
    if name == "CONV_2D" and len(ins) >= 2 and len(ins[1]) == 4:  # filter (Cout, kh, kw, Cin/groups)
        _, kh, kw, cin = ins[1]
        return n_out * kh * kw * cin
    if name == "DEPTHWISE_CONV_2D" and len(ins) >= 2 and len(ins[1]) == 4:  # filter (1, kh, kw, C*mult)
        _, kh, kw, _ = ins[1]
        return n_out * kh * kw
    if name == "CONV_3D" and len(ins) >= 2 and len(ins[1]) == 5:  # filter (kd, kh, kw, Cin, Cout)
        kd, kh, kw, cin, _ = ins[1]
        return n_out * kd * kh * kw * cin
    if name == "FULLY_CONNECTED" and len(ins) >= 2 and len(ins[1]) == 2:  # filter (units, in)
        return n_out * ins[1][1]
    if name == "TRANSPOSE_CONV" and len(ins) >= 3 and len(ins[1]) == 4:  # (out_shape, filter (Cout,kh,kw,Cin), x)
        cout, kh, kw, _ = ins[1]
        return int(np.prod(ins[2])) * kh * kw * cout
    if name == "BATCH_MATMUL" and len(ins) >= 2 and len(ins[0]) >= 2 and out:
        a = ins[0]
        k = a[-1] if a[-2] == out[-2] else a[-2]  # adj_x flips a's last two dims
        return n_out * k
    return 0


def count_macs(model_path: str) -> dict | None:
    """{"macs": total, "by_op": {op: macs}} counted from a .tflite graph (CONV_2D, DEPTHWISE_CONV_2D, CONV_3D,
    FULLY_CONNECTED, TRANSPOSE_CONV, BATCH_MATMUL; batch 1), or None when the interpreter cannot list ops."""
    Interpreter, _ = interpreter_class()
    resolver = getattr(sys.modules.get(Interpreter.__module__), "OpResolverType", None)
    if resolver is not None:  # without the default XNNPACK delegate, or its fused nodes would hide the op types
        it = Interpreter(model_path=model_path,
                         experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    else:
        it = Interpreter(model_path=model_path)
    it.allocate_tensors()
    if not hasattr(it, "_get_ops_details"):
        return None
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in it.get_tensor_details()}
    by_op: dict = {}
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no per-op listing
        name = op["op_name"]
        out = shapes.get(int(op["outputs"][0]), ()) if len(op["outputs"]) else ()
        ins = [shapes.get(int(i), ()) for i in op["inputs"] if int(i) >= 0]
        m = _macs_of_op(name, ins, out)
        if m:
            by_op[name] = by_op.get(name, 0) + int(m)
    return {"macs": int(sum(by_op.values())), "by_op": dict(sorted(by_op.items()))}


# --------------------------------------------------------------------------------------------------------------
# The benchmark


def _maybe_fault(model_path: str) -> None:
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        if spec.startswith("abort:") and spec[6:] and spec[6:] in os.path.basename(model_path):
            os.abort()  # simulates an interpreter abort (SIGABRT), to test that the harness survives it


def benchmark(model_path: str, data: dict, *, threads: int = 1, runs: int = 50, warmup: int = 5,
              min_secs: float = 0.0, macs: bool = True) -> dict:
    Interpreter, runtime = interpreter_class()
    rss0 = current_rss_kb()
    feed_all = model_inputs(data)

    t0 = time.perf_counter()
    interp = Interpreter(model_path=model_path, num_threads=int(threads))
    ins, outs = io_details(interp)
    interp.allocate_tensors()
    init_us = (time.perf_counter() - t0) * 1e6

    missing = [k for k in ins if k not in feed_all]
    if missing:
        raise RuntimeError(f"{model_path}: model inputs {sorted(ins)}; the evaluation set lacks {missing}")
    for name, d in ins.items():  # batch 1 (dynamic batch dims are allocated as 1)
        shape = [int(s) for s in d["shape"]]
        if shape[0] != 1:
            interp.resize_tensor_input(d["index"], [1] + shape[1:])
    interp.allocate_tensors()

    def set_sample(i: int) -> None:
        for name, d in ins.items():
            interp.set_tensor(d["index"], np.ascontiguousarray(quantize(feed_all[name][i:i + 1], d)))

    _maybe_fault(model_path)
    set_sample(0)
    t = time.perf_counter()
    interp.invoke()
    first_us = (time.perf_counter() - t) * 1e6
    warm = []
    for _ in range(int(warmup)):
        t = time.perf_counter()
        interp.invoke()
        warm.append((time.perf_counter() - t) * 1e6)
    timed = []
    start = time.perf_counter()
    while len(timed) < int(runs) or (time.perf_counter() - start) < min_secs:
        t = time.perf_counter()
        interp.invoke()
        timed.append((time.perf_counter() - t) * 1e6)

    n = int(next(iter(feed_all.values())).shape[0])
    collected: dict = {name: [] for name in outs}
    for i in range(n):
        set_sample(i)
        interp.invoke()
        for name, d in outs.items():
            collected[name].append(dequantize(interp.get_tensor(d["index"]), d))
    outputs = {k: np.concatenate(v) for k, v in collected.items()}
    finite = all(np.all(np.isfinite(v)) for v in outputs.values() if np.issubdtype(v.dtype, np.floating))
    peak, maxrss = peak_rss_kb(), maxrss_kb()  # before the MAC count, which loads a second interpreter
    try:
        partitions = delegate_partitions(interp)
    except Exception as exc:  # noqa: BLE001 - diagnosis only
        partitions = {"error": f"{type(exc).__name__}: {exc}"}
    res = {
        "ok": True, "runner_version": RUNNER_VERSION, "runtime": runtime, "threads": int(threads),
        "model": os.path.basename(model_path), "model_bytes": os.path.getsize(model_path),
        "timing_us": timing_summary(init_us, first_us, warm, timed),
        "memory": {"peak_rss_kb": peak, "maxrss_kb": maxrss, "rss_before_model_kb": rss0},
        "accuracy": accuracy(data, outputs), "outputs_finite": bool(finite), "delegate": partitions,
        "inputs": {k: {"shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                   for k, d in ins.items()},
        "host": {"machine": platform.machine(), "node": platform.node(), "python": platform.python_version(),
                 "numpy": np.__version__, "cpus": os.cpu_count()},
    }
    if macs:
        try:
            res["macs"] = count_macs(model_path)
        except Exception as exc:  # noqa: BLE001 - MACs are optional
            res["macs"] = None
            res["macs_error"] = f"{type(exc).__name__}: {exc}"
    return res


def delegate_partitions(interp) -> dict:
    """How an allocated interpreter's graph was split by its delegate (XNNPACK by default): {"partitions": number of
    DELEGATE nodes, "ops": original ops, "delegated": ops inside a partition, "outside": {op type: count} of the
    ops the builtin kernels run}. An op is inside a partition when it lies on a path from the partition's input
    tensors to its output tensors (walked back from the outputs through the ops that produce them)."""
    ops = interp._get_ops_details()  # noqa: SLF001 - the public API has no per-node listing
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o["index"] for o in original for t in o["outputs"]}
    by_index = {o["index"]: o for o in original}
    inside: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            if t in stop or t not in producer or producer[t] in inside:
                continue
            i = producer[t]
            inside.add(i)
            todo += [int(x) for x in by_index[i]["inputs"] if int(x) >= 0]
    outside: dict[str, int] = {}
    for o in original:
        if o["index"] not in inside:
            outside[o["op_name"]] = outside.get(o["op_name"], 0) + 1
    return {"partitions": len(delegates), "ops": len(original), "delegated": len(inside),
            "outside": dict(sorted(outside.items()))}


def load_eval(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark one .tflite: latency, peak memory, accuracy, MACs.")
    ap.add_argument("model", help=".tflite file")
    ap.add_argument("--eval", required=True, help="evaluation set .npz (inputs by name + label_* arrays)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-secs", type=float, default=0.0, help="keep timing until this many seconds have passed")
    ap.add_argument("--no-macs", action="store_true")
    ap.add_argument("--out", help="result JSON (default: stdout)")
    args = ap.parse_args(argv)
    try:
        res = benchmark(args.model, load_eval(args.eval), threads=args.threads, runs=args.runs, warmup=args.warmup,
                        min_secs=args.min_secs, macs=not args.no_macs)
        rc = 0
    except Exception as exc:  # noqa: BLE001 - reported as a row, one line
        res = {"ok": False, "runner_version": RUNNER_VERSION,
               "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
        rc = 3
    if args.out:
        _write_json(args.out, res)
    else:
        print(json.dumps(res))
    return rc


if __name__ == "__main__":
    sys.exit(main())
