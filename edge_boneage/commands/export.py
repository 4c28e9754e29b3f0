"""`edge-boneage export MODEL.keras`: LiteRT (.tflite) float32 / fp16 / dynamic / full int8, or ONNX, behind a
parity gate: every format is a row of convert.export.FORMATS and goes through convert.export.export.

Every exported file is run in a child process on a fixed check set and compared with the Keras model before it
is written (see convert.export); a failing file is not written unless --force (then marked FAILED in metadata).
A TW3 stage model is exported with the crop record `tw3 export` writes (tw3_pipeline.export.stage_crop_metadata:
the margin of its training run, or --margin), so `tw3 predict` crops its regions as training did.
"""

from __future__ import annotations

import os
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a .keras model to LiteRT (.tflite) or ONNX, checked against Keras",
        description="Export a .keras model to a LiteRT .tflite (builtin ops only) with metadata inside, after a "
                    "parity check in a child process against the Keras model. Full int8 keeps LBP and grid "
                    "sampling in float automatically and says so.")
    p.add_argument("model", help="source model (.keras)")
    p.add_argument("--out", help="output file (default: MODEL[_QUANT].tflite, or MODEL.onnx with --onnx)")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--float32", dest="quant", action="store_const", const="float32", help="float32 (default)")
    q.add_argument("--fp16", dest="quant", action="store_const", const="fp16", help="float16 weights")
    q.add_argument("--dynamic", dest="quant", action="store_const", const="dynamic",
                   help="dynamic-range (int8 weights, float activations)")
    q.add_argument("--int8", dest="quant", action="store_const", const="int8",
                   help="full integer int8 (calibrated; LBP/sampler kept float)")
    p.set_defaults(quant="float32")
    p.add_argument("--io", choices=("int8", "uint8", "float32"), default="int8",
                   help="type of the float inputs/outputs for --int8 (default int8; the uint8 image input "
                        "stays uint8 in every mode)")
    p.add_argument("--calib", choices=("synth", "rsna"), default="synth",
                   help="calibration data for --int8 (default synth; rsna = real radiographs from --rsna-dir)")
    p.add_argument("--rsna-dir", help="folder with labels.csv and img100/ (--calib rsna)")
    p.add_argument("--calib-n", type=int, default=64, help="calibration samples (default 64)")
    p.add_argument("--check-n", type=int, default=32, help="parity check samples (default 32)")
    p.add_argument("--force", action="store_true",
                   help="write the file even if the parity check fails (metadata parity: 'FAILED (forced)')")
    p.add_argument("--no-float-islands", action="store_true",
                   help="(debugging) quantise LBP/sampler layers too; usually fails the parity check")
    p.add_argument("--recipe", default="tf_int8",
                   help="--int8 recipe: tf_int8 (TensorFlow converter, default) or an ai-edge-quantizer recipe "
                        "(aeq_int8, aeq_int8_head, aeq_int8_float_stem, aeq_int16x8)")
    p.add_argument("--max-mae-increase", type=float, metavar="MONTHS",
                   help="with --int8: search every recipe (and dynamic range), time each interleaved with float32, "
                        "and write the fastest whose held-out MAE is at most MONTHS above float32's (held-out: the "
                        "protocol validation split with --rsna-dir, else synthetic)")
    p.add_argument("--recipes", help="comma-separated candidates for --max-mae-increase (default: all)")
    p.add_argument("--heldout-n", type=int, help="held-out images for --max-mae-increase (default: all)")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (model.export(format='onnx')) instead")
    p.add_argument("--margin", type=float,
                   help="TW3 stage models only: the crop margin it was trained with, when no tw3 run.json next to "
                        "the .keras records it (one that does must agree)")
    p.set_defaults(func=handler)


def handler(args) -> int:
    os.environ["KERAS_BACKEND"] = "tensorflow"  # before keras is imported anywhere below
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edge_boneage import EdgeBoneageError

    if args.calib_n < 1 or args.check_n < 1:
        raise EdgeBoneageError("--calib-n and --check-n must be >= 1")
    src = Path(args.model)
    fmt = "onnx" if args.onnx else args.quant
    if args.onnx and args.quant != "float32":
        raise EdgeBoneageError(f"--onnx exports float32 ONNX; drop --{args.quant}")
    if args.max_mae_increase is not None:
        if args.quant != "int8":
            raise EdgeBoneageError("--max-mae-increase goes with --int8 (it searches the int8 recipes)")
        from edge_boneage.convert.budget import format_table, search

        rep = search(src, args.out, max_mae_increase=args.max_mae_increase, rsna_dir=args.rsna_dir,
                     calib=args.calib, calib_n=args.calib_n, check_n=args.check_n, heldout_n=args.heldout_n,
                     recipes=args.recipes.split(",") if args.recipes else None)
        print(format_table(rep))
        print(f"{rep['out']}: {rep['chosen']} written (search table: {rep['out']}.search.json)")
        return 0
    from edge_boneage.convert.checkdata import model_task
    from edge_boneage.convert.export import export, format_parity, load_keras_model
    from edge_boneage.convert.quantize import int8_recipes

    if args.recipe not in int8_recipes():
        raise EdgeBoneageError(f"--recipe {args.recipe}: unknown; choose from {', '.join(int8_recipes())}")
    model = load_keras_model(src)
    kw = dict(quantization=fmt, io=args.io, calib=args.calib, rsna_dir=args.rsna_dir, calib_n=args.calib_n,
              check_n=args.check_n, force=args.force, keep_float=[] if args.no_float_islands else "auto",
              recipe=args.recipe, model=model)
    if model_task(model) == "tw3_stage":
        from edge_boneage.tw3_pipeline.constants import TFLITE_META_NAME
        from edge_boneage.tw3_pipeline.export import export_stage_tflite

        res = export_stage_tflite(src, args.out, args.margin, **kw)
        crop = res.extra_metadata[TFLITE_META_NAME]["crop"]
        print(f"TW3 stage model: {crop['size']} px crops, margin {crop['margin']:g} (from {crop['margin_from']})")
    else:
        if args.margin is not None:
            raise EdgeBoneageError(f"{src}: --margin is for TW3 stage models; an age model's crop margin is part "
                                   "of its own contract")
        res = export(src, args.out, **kw)
    if fmt == "onnx":
        diffs = {k[len("max_abs_diff_"):]: v for k, v in res.parity.items() if k.startswith("max_abs_diff_")}
        print(f"{res.path}: ONNX written; max |ONNX Runtime - Keras| = "
              f"{', '.join(f'{k}={v:.3g}' for k, v in diffs.items())} ({res.parity['status']})")
        if res.forced:
            print(f"WARNING: {res.path} FAILED the parity check and was written only because of --force")
        return 0
    q = res.metadata["quantization"]
    ops = q.get("ops") or {}
    print(f"{res.path}: {q['mode']} (I/O {q['io']}), {res.path.stat().st_size / 2**20:.2f} MiB, "
          f"{ops.get('ops', '?')} ops ({ops.get('int8_ops', 0)} int8, {ops.get('float_ops', 0)} float, "
          f"{ops.get('quantize', 0)} QUANTIZE, {ops.get('dequantize', 0)} DEQUANTIZE), {res.seconds:.0f} s")
    if q["kept_float_layers"]:
        print("kept in float32: " + ", ".join(f"{n} ({t})" for n, t in q["kept_float_layers"].items()))
    print(format_parity(res.parity))
    if res.forced:
        print(f"WARNING: {res.path} FAILED the parity check and was written only because of --force")
    return 0
