"""`edge-boneage convert MODEL.onnx`: ONNX -> LiteRT (.tflite) via onnx2tf, checked against ONNX Runtime.

Needs the optional ONNX extra (see convert/onnx.py for the exact pip commands).
"""

from __future__ import annotations

import os
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert an ONNX model to LiteRT (.tflite) with onnx2tf, checked against ONNX Runtime",
        description="Convert an ONNX model to LiteRT via onnx2tf (optional extra). Input data for onnx2tf is always "
                    "passed explicitly (-cind), so nothing is downloaded; the batch stays dynamic; NHWC inputs "
                    "(Keras exports) keep their layout (-kat). The result is run in a child process against ONNX "
                    "Runtime before it is written.")
    p.add_argument("model", help="source model (.onnx)")
    p.add_argument("--out", help="output .tflite (default: MODEL[_QUANT].tflite)")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--float32", dest="quant", action="store_const", const="float32", help="float32 (default)")
    q.add_argument("--fp16", dest="quant", action="store_const", const="fp16", help="float16 weights")
    q.add_argument("--int8", dest="quant", action="store_const", const="int8",
                   help="full integer (onnx2tf -oiqt, int8 I/O), calibrated on --calib-npy data")
    p.set_defaults(quant="float32")
    p.add_argument("--calib-npy", action="append", default=[], metavar="INPUT=FILE.npy",
                   help="calibration/check data for an input, batch first, ONNX layout (repeatable; default: "
                        "deterministic 0..1 samples)")
    p.add_argument("--keep-shape", nargs="*", metavar="INPUT",
                   help="inputs whose layout onnx2tf must keep (-kat); default: 4-D inputs that look NHWC")
    p.add_argument("--force", action="store_true", help="write even if the parity check fails (marked FAILED)")
    p.set_defaults(func=handler)


def handler(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from edge_boneage.convert.onnx import onnx_to_litert
    from edge_boneage import EdgeBoneageError

    calib = {}
    for item in args.calib_npy:
        if "=" not in item:
            raise EdgeBoneageError(f"--calib-npy {item!r}: expected INPUT=FILE.npy")
        name, path = item.split("=", 1)
        try:
            calib[name] = np.load(path)
        except (OSError, ValueError) as exc:
            raise EdgeBoneageError(f"{path}: cannot read numpy array ({exc})") from None
    res = onnx_to_litert(Path(args.model), args.out, quantization=args.quant, calib=calib or None,
                         check=calib or None, keep_shape=args.keep_shape, force=args.force)
    par = res["parity"]
    diffs = ", ".join(f"{k}={v:.3g}" for k, v in par.get("max_abs_diff", {}).items())
    print(f"{res['path']}: {args.quant} LiteRT via onnx2tf; kept layout: {res['kept_shape'] or 'none'}")
    print(f"parity vs ONNX Runtime: {par['status']} - {par.get('rule', '')}; max abs diff {diffs or 'n/a'} "
          f"({par['reason']})")
    return 0
