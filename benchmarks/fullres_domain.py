"""Where the full-resolution bias comes from: the same 55 films as img100 images and as full-resolution files.

    python -m benchmarks.fullres_domain --rsna-dir ../shared/data/rsna [--model edge_boneage/pretrained/boneage_age.tflite]

Every full-resolution id also exists in img100/ (the 100x100 set), and the protocol keeps all 55 out of training, so
one model can be run on both versions of each film. Part 1 (pixels only, no labels): which resize rule turns a raw
full-resolution film into its img100 file (mean |difference| in grey levels; a rule that made the set reproduces it).
Registered films (1600x2080, background-cleaned at the source) are left out of part 1: their img100 files were made
from the unregistered originals, which ../shared does not hold. Part 2: MAE and bias with 95 % bootstrap intervals,
raw and registered films apart, for (a) the img100 version, (b) the full-resolution file through the model's own
contract, (c) the full-resolution file first reduced to the source size with the rule part 1 finds (half-pixel
bilinear, no antialiasing) and then through the contract. This reports; it chooses nothing for the packaged model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize to size x size without antialiasing (borders clamped), rounded half up."""
    a = np.asarray(img, np.float64)

    def taps(n: int):
        f = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
        i0 = np.floor(f).astype(np.int64)
        return i0, np.minimum(i0 + 1, n - 1), f - i0

    y0, y1, wy = taps(a.shape[0])
    x0, x1, wx = taps(a.shape[1])
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bot = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return np.floor(top * (1 - wy)[:, None] + bot * wy[:, None] + 0.5).astype(np.uint8)


def resize_rules():
    import cv2
    from PIL import Image

    def cv(flag):
        return lambda im, s: cv2.resize(im, (s, s), interpolation=flag)

    def pil(flag):
        return lambda im, s: np.asarray(Image.fromarray(im).resize((s, s), flag))

    return {"cv2 INTER_AREA (the contract's)": cv(cv2.INTER_AREA), "cv2 INTER_LINEAR": cv(cv2.INTER_LINEAR),
            "cv2 INTER_NEAREST": cv(cv2.INTER_NEAREST), "PIL BILINEAR (antialiased)": pil(Image.BILINEAR),
            "PIL LANCZOS": pil(Image.LANCZOS), "half-pixel bilinear (numpy, no antialias)": bilinear}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "edge_boneage" / "pretrained"
                    / "boneage_age.tflite")
    a = ap.parse_args(argv)
    from benchmarks.age_protocol import bootstrap_ci, protocol_sets, registered_mask
    from edge_boneage.io import read_image
    from edge_boneage.predict import AgePredictor

    _test, full = protocol_sets(a.rsna_dir)
    reg = registered_mask(full)
    pred = AgePredictor(a.model)
    spec = pred.spec
    src = spec.source_size or 100
    print(f"model {a.model.name}: input {spec.input_size} px, frame {spec.frame}, crop {spec.crop}, "
          f"source_size {spec.source_size}; {len(full)} films ({int((~reg).sum())} raw, {int(reg.sum())} registered)")

    rules = resize_rules()
    diffs = {k: [] for k in rules}
    rows = []
    for s, is_reg in zip(full, reg):
        big, _ = read_image(s.path)
        small, _ = read_image(a.rsna_dir / "img100" / f"{s.id}.png")
        if not is_reg:
            for k, f in rules.items():
                diffs[k].append(np.abs(f(big, src).astype(np.int64) - small.astype(np.int64)).mean())
        male = 1.0 if s.male else 0.0

        def age(img):
            return float(np.asarray(pred.run(spec.apply(img), male)["age"]).reshape(-1)[0])

        rows.append((s.boneage_months, age(small), age(big), age(bilinear(big, src))))

    print(f"\nPart 1: raw films (n={len(diffs[next(iter(rules))])}) reduced to {src}x{src} vs their img100 file, "
          "mean |difference| (grey levels), mean [min, max] over films")
    for k, v in sorted(diffs.items(), key=lambda kv: np.mean(kv[1])):
        print(f"  {k:<44} {np.mean(v):6.2f} [{np.min(v):.2f}, {np.max(v):.2f}]")

    r = np.array(rows)
    true = r[:, 0]
    print("\nPart 2: the same films, three ways (months; 95 % bootstrap intervals)")
    print(f"  {'version':<56} {'films':<11} {'n':>3} {'MAE':>6} {'95% CI':>15} {'bias':>7} {'95% CI':>17}")
    names = ("img100 file of the same film", "full resolution, the model's contract",
             "full resolution, bilinear to source size, then contract")
    for j, name in enumerate(names, start=1):
        for gname, sel in (("all", np.ones(len(r), bool)), ("raw", ~reg), ("registered", reg)):
            e = r[sel, j] - true[sel]
            lo, hi = bootstrap_ci(np.abs(e))
            blo, bhi = bootstrap_ci(e)
            print(f"  {name:<56} {gname:<11} {sel.sum():>3} {np.abs(e).mean():>6.2f} {'[%.2f, %.2f]' % (lo, hi):>15} "
                  f"{e.mean():>+7.2f} {'[%+.2f, %+.2f]' % (blo, bhi):>17}")
    d = r[:, 2] - r[:, 1]
    print(f"\n  full resolution (contract) minus img100 version, per film: mean {d.mean():+.2f}, "
          f"mean |.| {np.abs(d).mean():.2f} months")
    return 0


if __name__ == "__main__":
    sys.exit(main())
