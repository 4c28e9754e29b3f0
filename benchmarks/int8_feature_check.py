"""The quality gate's feature check in the int8 file against the float32 file: same threshold, same flags?

    python -m benchmarks.int8_feature_check FLOAT.tflite INT8.tflite --rsna-dir ../shared/data/rsna

Both files' ``feature_residual`` output on the RSNA protocol's validation split (the images the threshold came from)
and on the development non-hand suite (benchmarks.quality_gate.make_nonhand_suite, pictures of at least 64 px):
how many each flags at the float file's threshold, how far the int8 residuals are from the float ones. The int8
file keeps the residual a float island (convert.quantize.FLOAT_ISLAND_TYPES) but its body is int8: activations
beyond the calibration range clip, so far-off pictures get smaller residuals there than in the float file.
"""

from __future__ import annotations

import argparse
import tempfile
import types
from pathlib import Path

import numpy as np


def residuals(path: Path, spec, items) -> np.ndarray:
    from edge_boneage.io import read_image
    from edge_boneage.runtime import LiteRTModel

    m = LiteRTModel(path, num_threads=2)
    out = []
    for s in items:
        x = spec.apply(read_image(s.path)[0])[None, :, :, None]
        o = m({"image": x, "sex": np.array([[1.0 if s.male else 0.0]], np.float32)})
        out.append(float(np.asarray(o["feature_residual"]).reshape(-1)[0]))
    return np.array(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("float_model", type=Path)
    ap.add_argument("int8_model", type=Path)
    ap.add_argument("--rsna-dir", type=Path, required=True)
    a = ap.parse_args(argv)
    from benchmarks.quality_gate import make_nonhand_suite
    from edge_boneage import datasets
    from edge_boneage.dataconfig import protocol_split
    from edge_boneage.io import read_image
    from edge_boneage.modelfile import open_model

    f32, i8 = open_model(a.float_model), open_model(a.int8_model)
    if f32.feature_gate is None:
        raise SystemExit(f"{a.float_model}: no feature check")
    thr = f32.feature_gate["threshold"]
    samples = list(datasets.load_rsna_csv(a.rsna_dir / "labels.csv", a.rsna_dir / "img100").samples)
    _tr, va, te = protocol_split(samples, a.rsna_dir)
    with tempfile.TemporaryDirectory() as d:
        nh = []
        for _suite, _name, p in make_nonhand_suite(Path(d), test_samples=list(te)[:5]):
            try:
                if min(read_image(p)[0].shape[:2]) >= 64:
                    nh.append(types.SimpleNamespace(path=p, male=True))
            except Exception:  # unreadable pictures never reach the feature check
                pass
        sets = {"validation split (img100)": va, "non-hand suite (>= 64 px)": nh}
        res = {k: (residuals(a.float_model, f32.spec, v), residuals(a.int8_model, f32.spec, v)) for k, v in sets.items()}
    i8_thr = i8.feature_gate["threshold"] if i8.feature_gate else None
    print(f"float32 {a.float_model.name}: threshold {thr:.3f} ({f32.feature_gate['val_quantile_pct']:g} % of "
          f"{f32.feature_gate['val_n']} validation residuals); int8 {a.int8_model.name}: threshold "
          f"{'off' if i8_thr is None else f'{i8_thr:.3f}'}\n")
    print("| set | n | float32 flagged | int8 flagged | both | int8 - float32 residual: median, mean abs | max residual float32 / int8 |")
    print("|---|---|---|---|---|---|---|")
    for k, (r32, r8) in res.items():
        f, q = r32 > thr, r8 > thr
        print(f"| {k} | {len(r32)} | {f.sum()} | {q.sum()} | {(f & q).sum()} | {np.median(r8 - r32):+.3f}, "
              f"{np.mean(np.abs(r8 - r32)):.3f} | {r32.max():.2f} / {r8.max():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
