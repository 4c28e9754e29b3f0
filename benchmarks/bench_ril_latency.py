"""LiteRT float32 latency of RIL-MobileNetV3-Large vs plain MobileNetV3-Large at the same input size.

Builds both models (random weights; latency does not depend on weight values), exports each to a float32 .tflite
with builtin ops only, then times ``invoke()`` (XNNPACK default delegate) in ONE process per thread count, interleaving the models in
shuffled blocks (edge_boneage.bench.interleave) so machine load affects all alike; the ratio's p10-p90 over repeats
is printed beside it. Prints median latency, the RIL/plain ratio
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
    from edge_boneage.convert.export import export_litert

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
    ap.add_argument("--rounds", type=int, default=15, help="interleaving repeats (shuffled) the runs are split into")
    ap.add_argument("--threads", default="1", help="thread counts, comma-separated (e.g. 1,2)")
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
        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
        feed_inputs(interp, rng)
        ops_count["(XNNPACK partitions)"] = sum(d["op_name"] == "DELEGATE" for d in interp._get_ops_details())
        info[key] = dict(name=name if key != "ril_nolbp" else name + " (lbp none)", params=model.count_params(), macs=macs, size_mb=path.stat().st_size / 2**20,
                         export_s=time.perf_counter() - t0, ops=ops_count, path=path)
        del model, interp

    from edge_boneage.bench.interleave import interleave, ratio, summarise

    per_round = max(1, -(-args.runs // args.rounds))
    for threads in [int(t) for t in str(args.threads).split(",")]:
        interps = {}
        for key, d in info.items():
            interps[key] = Interpreter(model_path=str(d["path"]), num_threads=threads)
            interps[key].allocate_tensors()
            feed_inputs(interps[key], rng)
        summary = summarise(interleave({k: it.invoke for k, it in interps.items()}, repeats=args.rounds,
                                       block=per_round, warmup=args.warmup))
        print(f"LiteRT float32, {threads} thread(s), input {args.input_size}x{args.input_size}, alpha {args.alpha}; "
              f"{summary['plain']['calls']} timed runs per model after {args.warmup} warm-up, interleaved in "
              f"{args.rounds} shuffled repeats of {per_round}")
        print(f"RIL options: N={args.num_regions} D={args.region_dim} crop {args.crop_size}x{args.crop_size} from "
              f"{args.crop_from}, lbp={args.lbp}, {'separate' if args.separate else 'shared'} recognition net")
        print(f"{'model':34s} {'median ms':>9s} {'p10 ms':>7s} {'p90 ms':>7s} {'MMACs':>8s} {'params':>10s} {'MB':>6s}")
        for key, d in info.items():
            t = summary[key]
            print(f"{d['name']:34s} {t['p50_ms']:9.2f} {t['p10_ms']:7.2f} {t['p90_ms']:7.2f} {d['macs'] / 1e6:8.1f} "
                  f"{d['params']:10,d} {d['size_mb']:6.2f}")
        r = ratio(summary, "ril", "plain")
        print(f"latency ratio RIL/plain = {r['ratio_p50']:.3f} [p10-p90 over {r['repeats']} repeats: "
              f"{r['ratio_p10']:.3f}-{r['ratio_p90']:.3f}] (goal <= 1.5: {'met' if r['ratio_p50'] <= 1.5 else 'NOT met'}); "
              f"MACs ratio = {info['ril']['macs'] / info['plain']['macs']:.3f}\n")
        del interps
    extra = {k: v for k, v in info["ril"]["ops"].items() if v != info["plain"]["ops"].get(k)}
    print("op types added/changed in RIL vs plain:",
          ", ".join(f"{k} {info['plain']['ops'].get(k, 0)}->{v}" for k, v in sorted(extra.items())))
    print(f".tflite files in {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
