"""Where a training step's time goes: decode + hand crop, augmentation + batching, the model step, fit's loop.

    python -m benchmarks.train_throughput --rsna-dir ../shared/data/rsna [--model efficientnet_lite0] [--size 100]

Measured in one process, one after another, on the same 256 RSNA images (protocol training split), with the CPU
recipe's contract and augmentation (edge_boneage.train_config.RECIPES["cpu"]):

1. decode + preprocess (PNG decode, squeeze frame, hand localisation, crop, INTER_AREA): what the first epoch pays
   once (SampleImages caches the uint8 crops in memory);
2. augmentation + batch assembly (sources.BatchMaker.batch on cached images): paid every epoch;
3. the model's train step alone (train_on_batch on one fixed batch, after warm-up);
4. ``model.fit`` over a PyDataset of the same batches (steps 2 + 3 + Keras' loop and data adapter).
Images/s for each, and the share of a fit step that is not the model step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n", type=int, default=256)
    a = ap.parse_args(argv)

    import keras

    from edge_boneage import datasets, sources
    from edge_boneage.dataconfig import protocol_split
    from edge_boneage.fitsetup import compile_model
    from edge_boneage.train_config import RECIPES, TrainConfig
    from keras_models.registry import build_model

    rec = dict(RECIPES["cpu"])
    # source_size: a no-op on the 100x100 images timed here (train resolves the recipe's "auto" to 100)
    cfg = TrainConfig(model=a.model, size=a.size, **{**rec, "batch": a.batch, "source_size": None})
    samples = list(datasets.load_rsna_csv(a.rsna_dir / "labels.csv", a.rsna_dir / "img100").samples)
    train, _, _ = protocol_split(samples, a.rsna_dir)
    src = sources.SampleImages(train[: a.n], a.size, spec=cfg.preprocess_spec())

    t = time.perf_counter()
    for i in range(len(src)):
        src.image(i)
    t_decode = (time.perf_counter() - t) / len(src)

    aug = sources.Augment(rot_deg=cfg.aug_rot_deg, scale_range=cfg.aug_scale, gamma=cfg.aug_gamma)
    maker = sources.BatchMaker(src, a.batch, shuffle=True, augment=aug, sigma_years=cfg.sigma_years,
                               drop_remainder=True)
    t = time.perf_counter()
    for b in range(len(maker)):
        maker.batch(b)
    t_batch = (time.perf_counter() - t) / (len(maker) * a.batch)

    model = build_model(a.model, input_size=a.size)
    steps = len(maker)
    compile_model(model, cfg, steps_per_epoch=steps)
    x, y = maker.batch(0)
    for _ in range(3):
        model.train_on_batch(x, y)
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    t_step = (time.perf_counter() - t) / (steps * a.batch)

    ds = sources.make_dataset(src, a.batch, shuffle=True, augment=aug, sigma_years=cfg.sigma_years,
                              drop_remainder=True)
    model.fit(ds, epochs=1, verbose=0, shuffle=False)  # warm-up epoch (tracing)
    t = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    t_fit = (time.perf_counter() - t) / (steps * a.batch)

    print(f"{a.model} at {a.size} px, batch {a.batch}, {len(src)} RSNA images, Keras {keras.__version__} "
          f"({keras.backend.backend()}), CPU recipe contract {cfg.preprocess_spec().frame}/{cfg.crop}")
    print(f"{'stage':<44} {'ms/image':>9} {'images/s':>9}")
    for name, v in (("1 decode + frame + hand crop (once, cached)", t_decode),
                    ("2 augmentation + batch assembly (every epoch)", t_batch),
                    ("3 model train step alone", t_step),
                    ("4 model.fit over the PyDataset (2 + 3 + loop)", t_fit)):
        print(f"{name:<44} {1e3 * v:>9.2f} {1.0 / v:>9.1f}")
    print(f"fit time not in the model step: {100 * (1 - t_step / t_fit):.0f} % "
          f"(augmentation alone {100 * t_batch / t_fit:.0f} %); an epoch of 9,039 images: "
          f"{9039 * t_fit / 60:.1f} min at this rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
