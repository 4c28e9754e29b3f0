"""Orientation: the age of a hand shown rotated by 90 / 180 / 270 degrees or mirrored (a right hand), without and
with the orientation step of `edge-boneage predict` (edge_boneage.orientation + predict.orient_image).

    python -m benchmarks.orientation_table --rsna-dir ../shared/data/rsna [--model M.tflite]

For every image of the protocol TEST split (it chose nothing: the classifier was trained on the training split and
its epoch picked on the validation split) and of the 55 full-resolution films, in each of the 8 orientations:
the predicted age with orientation off and on, its mean shift from the upright prediction (with a bootstrap 95 %
interval), the MAE, how often the classifier found the true orientation and how often it was unclear (flagged).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=HERE / "edge_boneage" / "pretrained" / "boneage_age.tflite")
    a = ap.parse_args(argv)
    from benchmarks.age_protocol import bootstrap_ci, protocol_sets
    from edge_boneage.io import read_image
    from edge_boneage.orientation import CLASSES, apply_orientation, default_orienter
    from edge_boneage.predict import orient_image
    from edge_boneage.modelfile import open_model as open_age_model

    model = open_age_model(a.model)
    orienter = default_orienter()
    test, full = protocol_sets(a.rsna_dir, "test")
    print(f"model {a.model.name}; orientation classifier {orienter.path.name}\n")
    for name, ss in (("protocol test split", test), ("full-resolution films", full)):
        imgs = [read_image(s.path)[0] for s in ss]
        y = np.array([s.boneage_months for s in ss])
        sex = np.array([[1.0 if s.male else 0.0] for s in ss], np.float32)

        def ages(images):
            x = np.stack([model.spec.apply(im) for im in images])[..., None].astype(np.uint8)
            return np.concatenate([model.predict({"image": x[b:b + 64], "sex": sex[b:b + 64]})
                                   for b in range(0, len(x), 64)])

        base = ages(imgs)
        print(f"{name} (n={len(ss)} per orientation); shift = prediction - upright prediction (months)")
        print(f"{'shown as':<17} {'off: MAE':>9} {'mean shift':>11} {'95% CI':>16} {'|shift|':>8} | {'on: MAE':>8} "
              f"{'mean shift':>11} {'95% CI':>16} {'|shift|':>8} {'found':>6} {'unclear':>8}")
        for c in range(8):
            shown = [apply_orientation(im, c) for im in imgs]
            off = ages(shown)
            turned, recs = zip(*(orient_image(im, orienter) for im in shown))
            on = ages(list(turned))
            found = np.mean([CLASSES.index(r["estimate"]) == c for r in recs])
            unclear = np.mean([not r["confident"] for r in recs])
            row = f"{CLASSES[c]:<17}"
            for p in (off, on):
                sh = p - base
                row += (f" {np.abs(p - y).mean():>9.2f} {sh.mean():>+11.2f} {'[%+.2f, %+.2f]' % bootstrap_ci(sh):>16} "
                        f"{np.abs(sh).mean():>8.2f}" + (" |" if p is off else ""))
            print(row + f" {found:>6.1%} {unclear:>8.1%}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
