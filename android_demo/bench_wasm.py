"""LiteRT.js (WebAssembly, headless Chromium) vs ai-edge-litert (Python) latency on the same .tflite and machine.

    .venv/bin/python android_demo/bench_wasm.py [--model M.tflite] [--size 224] [--alpha 1.0] [--runs 50]

Without --model it exports keras_models' mobilenetv3_large (random weights) at --size/--alpha. Both sides run one
thread (LiteRT.js's default non-threaded WASM build; ai-edge-litert num_threads=1, XNNPACK) on the same
preprocessed input; times are per invocation including reading the outputs. Prints the ratio WASM / Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def python_latency(model_path: Path, x, sex, runs: int, warmup: int = 5) -> float:
    from edge_boneage.runtime import LiteRTModel

    m = LiteRTModel(model_path, num_threads=1)
    feed = {"image": x} if "sex" not in m.input_names else {"image": x, "sex": sex}
    for _ in range(warmup):
        m(feed)
    t = time.perf_counter()
    for _ in range(runs):
        m(feed)
    return (time.perf_counter() - t) / runs * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args(argv)

    import subprocess

    import cv2
    import numpy as np

    import browser

    subprocess.run(["bash", str(HERE / "fetch_litertjs.sh")], check=True)
    with tempfile.TemporaryDirectory(prefix="bench_wasm_") as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from demo_models import export_mobilenet

            model = export_mobilenet(tmp / "model.tflite", args.size, alpha=args.alpha)
        from edge_boneage.preprocess import PreprocessSpec
        from edge_boneage.tflite_meta import read_metadata

        meta = read_metadata(model) or {}
        size = (meta.get("preprocess") or {}).get("input_size", args.size)
        rng = np.random.default_rng(0)
        img = cv2.GaussianBlur(rng.integers(0, 256, (400, 300)).astype(np.uint8), (0, 0), 3)
        cv2.imwrite(str(tmp / "image.png"), img)
        x = PreprocessSpec.from_dict(meta["preprocess"]).apply(img)[None, :, :, None] if meta else None
        sex = np.ones((1, 1), np.float32)
        py_ms = python_latency(model, x, sex, args.runs)
        mounts = {"/": browser.WEB_DIR, "/m/": model.parent, "/i/": tmp}
        with browser.serve(mounts) as base, browser.Chromium() as ch:
            ch.navigate(base + "/index.html")
            ch.wait_title()
            ch.evaluate(f"edgeBoneage.loadModelUrl('/m/{model.name}')", timeout=120)
            js = ch.evaluate(f"edgeBoneage.benchmark('/i/image.png', 1, {args.runs}, 5)", timeout=600)
        print(f"model: {model.name} ({meta.get('model', '?')}, {size}x{size}), {args.runs} runs, 1 thread each")
        print(f"ai-edge-litert (Python): {py_ms:.2f} ms/inference (mean)")
        print(f"LiteRT.js WASM (Chromium {ch.binary}): {js['meanMs']:.2f} ms mean, {js['medianMs']:.2f} ms median "
              "(timer resolution 0.1 ms)")
        print(f"ratio WASM / Python: {js['meanMs'] / py_ms:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
