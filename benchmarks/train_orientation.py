"""Train the orientation classifier (keras_models.orientation) and write edge_boneage/pretrained/orientation.*.

    python -m benchmarks.train_orientation --rsna-dir ../shared/data/rsna [--epochs 6] [--out edge_boneage/pretrained]

Data: the protocol's TRAINING split of the RSNA 100x100 set, each image shown in a random one of the 8 orientations
(edge_boneage.orientation.apply_orientation) every epoch, with scale / shift / gamma jitter; the VALIDATION split in
all 8 orientations picks the epoch; the TEST split and the 55 full-resolution films (all 8 orientations each) report.
Writes orientation.keras and a float32 orientation.tflite (parity with Keras printed), atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def decoded(samples):
    from edge_boneage.io import read_image

    return [read_image(s.path)[0] for s in samples]


def all_orientations(imgs, size):
    from edge_boneage.orientation import apply_orientation, squeeze

    x, y = [], []
    for im in imgs:
        for c in range(8):
            x.append(squeeze(apply_orientation(im, c), size))
            y.append(c)
    return np.stack(x)[..., None], np.array(y)


def jitter(im: np.ndarray, rng, rot_deg: float = 12.0) -> np.ndarray:
    import cv2

    h, w = im.shape
    s = rng.uniform(0.8, 1.25)
    mat = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-rot_deg, rot_deg), s)
    mat[:, 2] += rng.uniform(-0.08, 0.08, 2) * (w, h)
    out = cv2.warpAffine(im, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=int(np.median(im[:, :3])))
    g = rng.uniform(0.7, 1.4)
    return (255.0 * (out / 255.0) ** g).astype(np.uint8)


def tile_shuffle(im: np.ndarray, rng) -> np.ndarray:
    """An outlier made from a radiograph: cut into an n x n grid (n in 2..6), tiles shuffled, each turned and mirrored
    at random. Its texture is a radiograph's, its layout is no hand's in any orientation: trained towards the uniform
    distribution (outlier exposure), so the classifier learns not to be sure of what is not a hand."""
    import cv2

    n = int(rng.integers(2, 7))
    t = max(4, min(im.shape) // n)
    sq = cv2.resize(im, (t * n, t * n), interpolation=cv2.INTER_AREA)
    tiles = [sq[r * t:(r + 1) * t, c * t:(c + 1) * t] for r in range(n) for c in range(n)]
    tiles = [np.rot90(x[:, ::-1] if rng.random() < 0.5 else x, int(rng.integers(4))) for x in
             (tiles[i] for i in rng.permutation(len(tiles)))]
    return np.ascontiguousarray(np.vstack([np.hstack(tiles[r * n:(r + 1) * n]) for r in range(n)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--outliers", type=float, default=0.0,
                    help="add this fraction of tile-shuffled radiographs (tile_shuffle) to each epoch, with uniform "
                         "targets (outlier exposure; default 0: none)")
    ap.add_argument("--rot-deg", type=float, default=12.0,
                    help="training rotation jitter +-DEG around each of the 8 orientations (real films lie tilted by "
                         "up to ~45 degrees; keep it below 45 so the classes stay apart)")
    ap.add_argument("--from-keras", type=Path, help="skip training: take this trained orientation .keras")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "edge_boneage" / "pretrained")
    a = ap.parse_args(argv)
    import keras

    from edge_boneage.convert.export import export_litert
    from edge_boneage import datasets
    from edge_boneage.orientation import CLASSES, apply_orientation, squeeze
    from edge_boneage.dataconfig import protocol_split
    from keras_models.registry import build_model

    keras.utils.set_random_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    base = a.rsna_dir
    samples = list(datasets.load_rsna_csv(base / "labels.csv", base / "img100").samples)
    tr, val, te = protocol_split(samples, base)
    full = list(datasets.load_rsna_csv(base / "fullres.csv", base / "fullres").samples)
    t0 = time.time()
    tr_img, va_img, te_img, fu_img = decoded(tr), decoded(val), decoded(te), decoded(full)
    xv, yv = all_orientations(va_img, a.size)
    print(f"decoded {len(tr_img)} train / {len(va_img)} val / {len(te_img)} test / {len(fu_img)} full-resolution "
          f"images in {time.time() - t0:.0f} s", flush=True)
    model = build_model("orientation_net", input_size=a.size, width=a.width,
                        preprocess={"input_size": a.size, "frame": "squeeze", "crop": None,
                                    "note": "whole image squeezed (INTER_AREA), uint8 grey; no hand crop"})
    steps = a.epochs * (len(tr_img) // 64)
    lr = keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss={"orient": "categorical_crossentropy"},
                  metrics={"orient": ["categorical_accuracy"]})
    best, best_w = -1.0, None
    if a.from_keras:
        from edge_boneage.modelfile import load_model

        model = load_model(a.from_keras)  # trained earlier with --epochs / --width as given (they are recorded)
        best = float((np.asarray(model.predict(xv, batch_size=256, verbose=0)["orient"]).argmax(1) == yv).mean())
        best_w = model.get_weights()
    for ep in range(0 if a.from_keras else a.epochs):
        cls = rng.integers(0, 8, len(tr_img))
        x = np.stack([squeeze(apply_orientation(jitter(im, rng, a.rot_deg), c), a.size) for im, c in zip(tr_img, cls)])[..., None]
        y = np.eye(8, dtype=np.float32)[cls]
        n_out = int(round(a.outliers * len(tr_img)))
        if n_out:
            pick = rng.integers(0, len(tr_img), n_out)
            xo = np.stack([squeeze(tile_shuffle(jitter(tr_img[i], rng, a.rot_deg), rng), a.size) for i in pick])[..., None]
            x, y = np.concatenate([x, xo]), np.concatenate([y, np.full((n_out, 8), 1 / 8, np.float32)])
        t1 = time.time()
        h = model.fit(x, {"orient": y}, batch_size=64, epochs=1, verbose=0, shuffle=True)
        pv = np.asarray(model.predict(xv, batch_size=256, verbose=0)["orient"])
        acc = float((pv.argmax(1) == yv).mean())
        print(f"epoch {ep + 1}/{a.epochs}: train loss {h.history['loss'][-1]:.4f} acc "
              f"{h.history.get('orient_categorical_accuracy', h.history.get('categorical_accuracy', [float('nan')]))[-1]:.4f}; val acc (all 8 orientations, n={len(yv)}) {acc:.4f}; "
              f"{time.time() - t1:.0f} s", flush=True)
        if acc > best:
            best, best_w = acc, model.get_weights()
    model.set_weights(best_w)
    a.out.mkdir(parents=True, exist_ok=True)
    tmp = a.out / f".orientation.{os.getpid()}.keras"  # Keras wants the .keras suffix: save, then rename
    try:
        model.save(tmp)
        os.replace(tmp, a.out / "orientation.keras")
    finally:
        tmp.unlink(missing_ok=True)
    tfl = a.out / "orientation.tflite"
    export_litert(model, tfl)
    from edge_boneage.orientation import Orienter

    o = Orienter(tfl)
    kp = np.asarray(model.predict(xv[:64], verbose=0)["orient"])
    lp = np.concatenate([np.asarray(o.model({"image": xv[i:i + 1]})["orient"]) for i in range(64)])
    print(f"best val acc {best:.4f}; LiteRT float32 vs Keras max |diff| {np.abs(kp - lp).max():.2e} (64 val inputs)")
    # the thresholds to turn an image: most inputs are upright left hands, so a turn needs a confident estimate.
    # Rotation (P(k) = p[k] + p[k+4]) and mirroring (P(m) = sum p[4:]) are decided separately: the lowest
    # threshold that rotates <= 0.25 % of the upright VALIDATION images, and the lowest that mirrors <= 1 % of them
    # (a mirrored hand reads about as old as the upright one on average - benchmarks/orientation_table.py - while a
    # wrong quarter turn wrecks the estimate, so the mirror budget is looser)
    pv = np.asarray(model.predict(xv, batch_size=256, verbose=0)["orient"])
    pk, pm = pv[:, :4] + pv[:, 4:], pv[:, 4:].sum(1)
    kv, mv = yv % 4, yv // 4
    grid = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
    print("\nthresholds (validation split, all 8 orientations):")
    print(f"  {'threshold':>9} {'upright rotated':>16} {'rotated put right':>18} {'upright mirrored':>17} "
          f"{'mirrored put right':>19}")
    t_rot = t_mir = None
    for t in grid:
        rot = (pk.argmax(1) != 0) & (pk.max(1) >= t)
        mir = pm >= t
        r_fa, m_fa = float(rot[kv == 0].mean()), float(mir[mv == 0].mean())
        r_ok = float((rot & (pk.argmax(1) == kv))[kv != 0].mean())
        m_ok = float(mir[mv == 1].mean())
        print(f"  {t:>9.3f} {r_fa:>16.2%} {r_ok:>18.2%} {m_fa:>17.2%} {m_ok:>19.2%}")
        t_rot = t if t_rot is None and r_fa <= 0.0025 else t_rot
        t_mir = t if t_mir is None and m_fa <= 0.01 else t_mir
    t_rot, t_mir = t_rot or grid[-1], t_mir or grid[-1]
    print(f"  chosen: rotate at P >= {t_rot}, mirror at P >= {t_mir} (stored in the .tflite metadata)")
    from edge_boneage.fileutil import write_bytes_atomic
    from edge_boneage.tflite_meta import add_metadata

    write_bytes_atomic(tfl, add_metadata(tfl.read_bytes(), {
        "model": {"name": "orientation_net", "task": "orientation"},
        "orientation": {"classes": list(CLASSES), "rotate_threshold": t_rot, "mirror_threshold": t_mir,
                        "input_size": a.size,
                        "input": "whole decoded image squeezed to input_size (cv2.INTER_AREA), uint8 grey",
                        "trained": f"protocol training split, {a.epochs} epochs, width {a.width}, seed {a.seed}, rotation jitter +-{a.rot_deg:g} deg"
                        + (f", outlier exposure {a.outliers:g} (tile-shuffled radiographs, uniform targets)" if a.outliers else "")
                        + (f" (thresholds re-chosen from {a.from_keras.name})" if a.from_keras else ""),
                        "val_accuracy": best}}))
    o = Orienter(tfl)
    for name, imgs in (("test split", te_img), ("full-resolution films", fu_img)):
        conf = np.zeros((8, 8), int)
        low, turned_right, upright_wrong = 0, 0, 0
        for im in imgs:
            for c in range(8):
                est = o.estimate(apply_orientation(im, c))
                conf[c, est.cls] += 1
                low += not est.confident
                turned_right += est.apply_cls == c
                upright_wrong += c == 0 and est.apply_cls != 0
        n = conf.sum()
        print(f"\n{name}: n={len(imgs)} images x 8 orientations = {n}; accuracy {np.trace(conf) / n:.4f}; "
              f"top probability < 0.5 (unclear) {low}/{n}; with the thresholds: left as / turned to the right "
              f"orientation {turned_right}/{n}, upright images turned {upright_wrong}/{len(imgs)}")
        print("  true \\ estimated " + " ".join(f"{k[:8]:>8}" for k in CLASSES))
        for c in range(8):
            print(f"  {CLASSES[c]:<17} " + " ".join(f"{v:>8d}" for v in conf[c]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
