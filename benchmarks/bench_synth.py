"""Synthetic radiographs per second on ONE core (single process, OpenCV limited to one thread).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_synth --n 300 --size 512

Reports in-memory generation (``generate``: stages + geometry + rasterisation) and, separately, generation
plus PNG encoding (what ``edge-boneage synth`` does per image, without the disk write). Goal: >= 100 img/s at
512x512 in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge_boneage.synth import generate, generate_one  # noqa: E402


def run(n: int, size: int, seed: int, repeats: int) -> dict:
    cv2.setNumThreads(1)
    generate(5, size, seed + 999)  # warm caches (noise banks, stage tables)
    gen = []
    for r in range(repeats):
        t = time.perf_counter()
        generate(n, size, seed + r)
        gen.append(n / (time.perf_counter() - t))
    t = time.perf_counter()
    nbytes = 0
    for i in range(n):
        _, img, _ = generate_one(seed, i, size)
        ok, png = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        nbytes += png.nbytes
    png_rate = n / (time.perf_counter() - t)
    return {
        "size": size,
        "n": n,
        "repeats": repeats,
        "generate_img_per_s_median": float(np.median(gen)),
        "generate_img_per_s_all": [round(g, 1) for g in gen],
        "generate_plus_png_img_per_s": round(png_rate, 1),
        "mean_png_kib": round(nbytes / n / 1024, 1),
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.n, args.size, args.seed, args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
