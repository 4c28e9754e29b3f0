"""`edge-boneage benchmark`: accuracy against latency over models x variants x runtimes x threads, here or on a device.

    edge-boneage benchmark --config benchmarks/configs/bench_full.json --out runs/bench_full
    edge-boneage benchmark --model mobilenetv3_large --kwargs '{"input_size": 64}' --variants f32,int8 --threads 1,2
    edge-boneage benchmark --model m.tflite --device ssh:pi@192.168.1.20 --remote-python python3
    edge-boneage benchmark --model m.tflite --device adb:SERIAL --benchmark-model-bin ./benchmark_model

Writes benchmark.json, benchmark.csv, benchmark.txt and pareto.png into --out and prints the table and ratios. The
exported files and other intermediates go to a fresh --out/work/run_*/ folder; a new run removes only the run_*
folders earlier runs made (marked as such), never another file in --out or --out/work.
"""

from __future__ import annotations

import json

from edge_boneage import EdgeBoneageError


def _csv_list(text: str, cast=str) -> list:
    return [cast(x.strip()) for x in text.split(",") if x.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "benchmark", help="accuracy vs latency of models x variants (f32/fp16/dynamic/int8) x runtimes x threads",
        description="Export each Keras model (registry name or .keras) to f32/fp16/dynamic/int8 LiteRT files (and "
                    "ONNX), run every variant in its own child process (here, over ssh, or on a phone over adb) and "
                    "report size, MACs, MAE/+-1y (or TW3 stage accuracy), latency init/first/warm-up/mean/p50/p90, "
                    "peak memory and GMAC/s. Command-line options override the --config file.")
    p.add_argument("--config", help="benchmark config (.json, or .yaml with PyYAML): see benchmarks/configs/bench_*.json")
    p.add_argument("--model", action="append", help="registry name or .keras/.tflite/.onnx file (repeatable)")
    p.add_argument("--kwargs", help="builder kwargs (JSON) for the registry models given with --model")
    p.add_argument("--weights", help="trained weights (.keras / .weights.h5) for --model registry models (default: random weights)")
    p.add_argument("--variants", help="comma list of f32,fp16,dynamic,int8 (default: all)")
    p.add_argument("--threads", help="comma list of thread counts (default 1)")
    p.add_argument("--runtimes", help="comma list of litert,onnxruntime,keras,tflite_runtime "
                                      "(default litert,onnxruntime,keras)")
    p.add_argument("--data", choices=("synth", "rsna", "csv"), help="evaluation images (default synth)")
    p.add_argument("--n", type=int, help="number of evaluation images (default 32)")
    p.add_argument("--seed", type=int, help="seed of the synthetic evaluation images (default 12345)")
    p.add_argument("--rsna-dir", help="RSNA folder with labels.csv and img100/ (--data rsna)")
    p.add_argument("--csv", help="labels CSV (--data csv)")
    p.add_argument("--image-dir", help="image folder of the CSV")
    p.add_argument("--runs", type=int, help="timed invokes per row (default 50)")
    p.add_argument("--warmup", type=int, help="warm-up invokes per row (default 5)")
    p.add_argument("--calib-n", type=int, help="int8 calibration images (default 32)")
    p.add_argument("--check-n", type=int, help="parity-gate check images (default 16)")
    p.add_argument("--device", help="local (default), ssh:user@host[:port] or adb[:serial]")
    p.add_argument("--ssh-opt", action="append", default=None,
                   help="extra ssh/scp option, repeatable, e.g. --ssh-opt=-i --ssh-opt=~/.ssh/box_key")
    p.add_argument("--remote-python", help="python on the ssh box (default python3; needs numpy + ai-edge-litert)")
    p.add_argument("--benchmark-model-bin", help="LiteRT benchmark_model binary for --device adb")
    p.add_argument("--out", help="report folder (default runs/benchmark); intermediates in OUT/work/run_*/")
    p.set_defaults(func=handler)


def build_config(args):
    from edge_boneage.bench.config import config_from_dict, load_config

    if args.config:
        cfg = load_config(args.config)
        base = cfg.to_json()
    elif args.model:
        base = {"models": []}
    else:
        raise EdgeBoneageError("nothing to benchmark: give --config FILE or --model NAME_OR_FILE")
    if args.model:
        kwargs = {}
        if args.kwargs:
            try:
                kwargs = json.loads(args.kwargs)
            except json.JSONDecodeError as exc:
                raise EdgeBoneageError(f"--kwargs is not valid JSON ({exc})") from exc
        base["models"] = [{"model": m, "kwargs": kwargs, "weights": args.weights} for m in args.model]
    if args.variants:
        base["variants"] = _csv_list(args.variants)
    if args.threads:
        try:
            base["threads"] = _csv_list(args.threads, int)
        except ValueError as exc:
            raise EdgeBoneageError(f"--threads {args.threads}: expected a comma list of integers") from exc
    if args.runtimes:
        base["runtimes"] = _csv_list(args.runtimes)
    data = dict(base.get("data") or {"source": "synth", "n": 32, "seed": 12345})
    for key, val in (("source", args.data), ("n", args.n), ("seed", args.seed), ("rsna_dir", args.rsna_dir),
                     ("csv", args.csv), ("image_dir", args.image_dir)):
        if val is not None:
            data[key] = val
    base["data"] = data
    for key in ("runs", "warmup", "calib_n", "check_n", "device", "remote_python", "benchmark_model_bin", "out"):
        val = getattr(args, key)
        if val is not None:
            base[key] = val
    if args.ssh_opt:
        base["ssh_opts"] = list(args.ssh_opt)
    return config_from_dict(base, args.config or "command line")


def handler(args) -> int:
    from edge_boneage.bench.harness import run_benchmark

    cfg = build_config(args)
    report = run_benchmark(cfg, log=lambda msg: print(msg, flush=True))
    print()
    print(report["text"])
    print()
    for kind, path in report["files"].items():
        print(f"{kind}: {path}")
    return 0
