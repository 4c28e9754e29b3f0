"""LiteRT float32 latency of RIL-MobileNetV3-Large vs plain MobileNetV3-Large at the same input size.

Builds both models (random weights; latency does not depend on weight values), exports each to a float32 .tflite
with builtin ops only, then times ``invoke()`` on 1 thread (XNNPACK default delegate) in ONE process, interleaving
the two models round by round so machine load affects both alike. Prints median latency, the RIL/plain ratio
(goal <= 1.5), MACs counted from the exported graphs (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) and parameters.

    .venv/bin/python -m benchmarks.bench_ril_latency                      # full size: 224, alpha 1.0, N=9, D=512
    .venv/bin/python -m benchmarks.bench_ril_latency --input-size 64 --alpha 0.35 --runs 20   # quick smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def export_float(model, path: Path) -> None:
    """Float32 LiteRT, builtin ops only (the project's exporter; see ../shared/STACK.md)."""
    from convert.litert import export_litert

    export_litert(model, str(path), quantization="float32")


def tflite_macs(interp) -> tuple[int, dict[str, int]]:
    """Multiply-accumulates of conv/depthwise/FC ops in an allocated interpreter (batch 1), plus op counts."""
    import numpy as np

    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interp.get_tensor_details()}
    macs, ops_count = 0, {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API has no per-op listing
        name = op["op_name"]
        ops_count[name] = ops_count.get(name, 0) + 1
        out = shapes.get(int(op["outputs"][0]), ()) if len(op["outputs"]) else ()
        ins = [shapes.get(int(i), ()) for i in op["inputs"] if int(i) >= 0]
        if name == "CONV_2D":  # filter (Cout, kh, kw, Cin)
            _, kh, kw, cin = ins[1]
            macs += int(np.prod(out)) * kh * kw * cin
        elif name == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, C*mult)
            _, kh, kw, _ = ins[1]
            macs += int(np.prod(out)) * kh * kw
        elif name == "FULLY_CONNECTED":  # filter (units, in)
            macs += int(np.prod(out)) * ins[1][1]
    return macs, ops_count


def feed_inputs(interp, rng):
    """Fill every input by name: "image" uint8 0..255, "sex" 0/1 float32."""
    import numpy as np

    for d in interp.get_input_details():
        shape = tuple(int(s) for s in d["shape"])
        if "image" in d["name"]:
            x = rng.integers(0, 256, size=shape).astype(d["dtype"])
        elif "sex" in d["name"]:
            x = np.ones(shape, d["dtype"])
        else:
            raise SystemExit(f"unexpected model input {d['name']!r}")
        interp.set_tensor(d["index"], x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--num-regions", type=int, default=9)
    ap.add_argument("--region-dim", type=int, default=512)
    ap.add_argument("--crop-size", type=int, default=8)
    ap.add_argument("--crop-from", default="stride8", choices=["stride8", "stride16"])
    ap.add_argument("--lbp", default="ror", choices=["none", "default", "ror"])
    ap.add_argument("--separate", action="store_true", help="separate (unshared) recognition nets")
    ap.add_argument("--runs", type=int, default=60, help="timed invokes per model (>= 50 for reported numbers)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5, help="interleaving rounds the runs are split into")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ablate-lbp", action="store_true", help="also time RIL with lbp='none' (cost of the LBP layer)")
    ap.add_argument("--keep", type=Path, default=None, help="directory to keep the .tflite files in")
    args = ap.parse_args(argv)

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from keras_models.registry import build_model

    common = dict(input_size=args.input_size, alpha=args.alpha)
    specs = {
        "plain": ("mobilenetv3_large", common),
        "ril": ("ril_mobilenetv3_large", dict(common, num_regions=args.num_regions, region_dim=args.region_dim,
                                              crop_size=args.crop_size, crop_from=args.crop_from, lbp=args.lbp,
                                              shared_recognition=not args.separate)),
    }
    if args.ablate_lbp:
        specs["ril_nolbp"] = ("ril_mobilenetv3_large", dict(specs["ril"][1], lbp="none"))
    rng = np.random.default_rng(0)
    outdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_ril_"))
    outdir.mkdir(parents=True, exist_ok=True)
    interps, info = {}, {}
    for key, (name, kw) in specs.items():
        model = build_model(name, **kw)
        path = outdir / f"{key}_{args.input_size}.tflite"
        t0 = time.perf_counter()
        export_float(model, path)
        # Count MACs on an interpreter without XNNPACK: tensors inside delegated partitions keep their allocation
        # shapes, so the dynamically reshaped (folded, batch N) crops would be counted as batch 1.
        counter = Interpreter(model_path=str(path), num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        counter.allocate_tensors()
        feed_inputs(counter, rng)
        counter.invoke()  # resolves the shapes of dynamically reshaped tensors before counting
        macs, ops_count = tflite_macs(counter)
        del counter
        interp = Interpreter(model_path=str(path), num_threads=args.threads)
        interp.allocate_tensors()
        feed_inputs(interp, rng)
        ops_count["(XNNPACK partitions)"] = sum(d["op_name"] == "DELEGATE" for d in interp._get_ops_details())
        info[key] = dict(name=name if key != "ril_nolbp" else name + " (lbp none)", params=model.count_params(), macs=macs, size_mb=path.stat().st_size / 2**20,
                         export_s=time.perf_counter() - t0, ops=ops_count)
        interps[key] = interp
        del model

    for interp in interps.values():
        for _ in range(args.warmup):
            interp.invoke()
    times = {k: [] for k in interps}
    cpu = {k: [] for k in interps}  # CPU time of this thread: robust to other processes on a shared machine
    per_round = max(1, -(-args.runs // args.rounds))
    for _ in range(args.rounds):
        for key, interp in interps.items():
            for _ in range(per_round):
                c0, t0 = time.thread_time(), time.perf_counter()
                interp.invoke()
                times[key].append((time.perf_counter() - t0) * 1e3)
                cpu[key].append((time.thread_time() - c0) * 1e3)

    print(f"LiteRT float32, {args.threads} thread(s), input {args.input_size}x{args.input_size}, alpha {args.alpha}; "
          f"{len(times['plain'])} timed runs per model after {args.warmup} warm-up, interleaved in {args.rounds} rounds")
    print(f"RIL options: N={args.num_regions} D={args.region_dim} crop {args.crop_size}x{args.crop_size} from "
          f"{args.crop_from}, lbp={args.lbp}, {'separate' if args.separate else 'shared'} recognition net")
    print(f"{'model':34s} {'median ms':>9s} {'p10 ms':>7s} {'p90 ms':>7s} {'cpu ms':>7s} {'MMACs':>8s} {'params':>10s} "
          f"{'MB':>6s}")
    for key, d in info.items():
        t = sorted(times[key])
        q = lambda f: t[min(len(t) - 1, int(f * len(t)))]  # noqa: E731
        d["median_ms"], d["cpu_ms"] = statistics.median(t), statistics.median(cpu[key])
        print(f"{d['name']:34s} {d['median_ms']:9.2f} {q(0.1):7.2f} {q(0.9):7.2f} {d['cpu_ms']:7.2f} {d['macs'] / 1e6:8.1f} "
              f"{d['params']:10,d} {d['size_mb']:6.2f}")
    ratio = info["ril"]["median_ms"] / info["plain"]["median_ms"]
    print(f"latency ratio RIL/plain = {ratio:.3f} (goal <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'}); "
          f"thread-CPU ratio = {info['ril']['cpu_ms'] / info['plain']['cpu_ms']:.3f}; "
          f"MACs ratio = {info['ril']['macs'] / info['plain']['macs']:.3f}")
    extra = {k: v for k, v in info["ril"]["ops"].items() if v != info["plain"]["ops"].get(k)}
    print("op types added/changed in RIL vs plain:",
          ", ".join(f"{k} {info['plain']['ops'].get(k, 0)}->{v}" for k, v in sorted(extra.items())))
    print(f".tflite files in {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
