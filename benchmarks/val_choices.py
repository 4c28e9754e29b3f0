"""Choices made on the validation split only: bias-correction method and crop-margin TTA, for one trained run.

    python -m benchmarks.val_choices RUN [--model RUN/best.keras]

Predicts the run's validation images (run.json's val_ids; never the test split or the full-resolution films) with
the uncorrected model, once with the contract's crop margin and, for hand-cropped models, averaged over the crop
margins of edge_boneage.predict.TTA_MARGINS (what `predict --tta` does), then fits each bias correction of
edge_boneage.calibrate.FIT_METHODS on those predictions and prints validation MAE, bias and the bias of each
true-age band. The 2-parameter fits are in-sample here (1,130 images); the test split reports the chosen one.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from benchmarks.age_protocol import BANDS  # the age bands the test-split report uses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--model", type=Path, help="default: RUN/best.keras")
    a = ap.parse_args(argv)
    from edge_boneage import calibrate, train as T
    from edge_boneage.predict import TTA_MARGINS

    val = T.run_val_source(a.run)
    m = T.open_age_model(a.model or a.run / "best.keras")
    true = np.asarray(val.months, np.float64)
    preds = {"contract margin": T.predict_source(m, val)}
    spec = getattr(val, "spec", None)  # synthetic sources (ArrayImages) are drawn at model size: no crop
    if spec is not None and spec.crop == "hand":
        per = []
        for mg in TTA_MARGINS:
            src = val.subset(range(len(val)))
            src.spec = dataclasses.replace(spec, crop_margin=mg)
            src._cache = {}  # the subset shares the images already made with the contract margin: make them again
            per.append(T.predict_source(m, src))
        preds[f"TTA margins {'/'.join(f'{x:g}' for x in TTA_MARGINS)}"] = np.mean(per, axis=0)
    print(f"validation images of {a.run}: n={len(true)}; model {a.model or a.run / 'best.keras'}\n")
    head = "| inputs | correction | a | b | MAE | bias | " + " | ".join(f"bias {lo}-{hi} y" for lo, hi in BANDS) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, p in preds.items():
        for method in ("none",) + calibrate.FIT_METHODS:
            ab = (1.0, 0.0) if method == "none" else calibrate.fit_linear(p, true, method)
            q = ab[0] * p + ab[1]
            e = q - true
            bands = []
            for lo, hi in BANDS:
                sel = (true >= 12 * lo) & (true < 12 * hi)
                bands.append(f"{e[sel].mean():+.2f}" if sel.any() else "-")
            print(f"| {name} | {method} | {ab[0]:.4f} | {ab[1]:+.2f} | {np.abs(e).mean():.3f} | {e.mean():+.2f} | "
                  + " | ".join(bands) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
