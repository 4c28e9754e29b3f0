"""Add the quality gate's feature check to an age model, fitted on the RSNA protocol split (edge_boneage.featuregate).

    python -m benchmarks.fit_feature_gate MODEL.keras --rsna-dir ../shared/data/rsna --out GATED.keras [--k 64]

The pooled features of --n-fit random images of the protocol's TRAINING split (seed 0) give the subspace, the
VALIDATION split the threshold (--quantile % of its residuals); the test split and the full-resolution films are
not read. The age outputs are unchanged (checked here on 64 validation images). Writes GATED.keras atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--quantile", type=float, default=99.8)
    ap.add_argument("--n-fit", type=int, default=3000)
    a = ap.parse_args(argv)
    from edge_boneage import datasets
    from edge_boneage.dataconfig import protocol_split
    from edge_boneage.featuregate import feature_gate_of, fit_feature_gate
    from edge_boneage.io import read_image
    from edge_boneage.modelfile import load_model
    from edge_boneage.preprocess import spec_of_keras_model
    from edge_boneage.runfolder import save_model_atomic

    if a.out.resolve() == a.model.resolve():
        raise SystemExit(f"{a.out}: would overwrite the source model; choose another --out")
    model = load_model(a.model)
    spec = spec_of_keras_model(model)
    samples = list(datasets.load_rsna_csv(a.rsna_dir / "labels.csv", a.rsna_dir / "img100").samples)
    tr, va, _te = protocol_split(samples, a.rsna_dir)
    rng = np.random.default_rng(0)
    fit = [tr[i] for i in rng.choice(len(tr), min(a.n_fit, len(tr)), replace=False)]

    def images(ss):
        return np.stack([spec.apply(read_image(s.path)[0]) for s in ss])

    gated = fit_feature_gate(model, images(fit), images(va), k=a.k, quantile=a.quantile,
                             record={"fitted_on": f"RSNA protocol: {len(fit)} random training-split images (seed 0); "
                                                  f"threshold: {a.quantile:g} % of the validation split's residuals"})
    x = images(va[:64])
    feed = {"image": x[..., None], "sex": np.array([[1.0 if s.male else 0.0] for s in va[:64]], np.float32)}
    before, after = model.predict(feed, verbose=0), gated.predict(feed, verbose=0)
    diff = float(np.abs(np.asarray(before["age"]) - np.asarray(after["age"])).max())
    if diff > 1e-4:
        raise SystemExit(f"the gated model's ages differ from the source's by {diff:.3g} months")
    save_model_atomic(gated, a.out)
    print(f"wrote {a.out}: {feature_gate_of(gated)}; ages unchanged on 64 validation images (max |diff| {diff:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
