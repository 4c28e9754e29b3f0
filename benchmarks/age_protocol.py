"""Accuracy of age models under the fixed RSNA protocol: test split, full-resolution films, zoom test.

    python -m benchmarks.age_protocol MODEL [MODEL ...] --rsna-dir ../shared/data/rsna [--zoom] [--json OUT]

For each model (.keras or .tflite; each is fed as its own input contract says: frame, hand crop, enhancement):

- **test**: the protocol's test split of the 100x100 set (edge_boneage.dataconfig.PROTOCOL_DOC; no image of it chose an
  epoch, a recipe or a calibration), MAE / bias with bootstrap 95 % intervals (2,000 resamples, seed 0), per sex and
  age band;
- **fullres**: the 55 full-resolution radiographs of <rsna-dir>/fullres (set aside from every split);
- **zoom** (``--zoom``): the test images zoomed about their centre by 0.8 / 1.25 / 1.5 (cv2.warpAffine, linear,
  replicated border), mean prediction shift in months with its interval; a model that reads the hand's size in
  the frame as age moves here.

Nothing is fitted here: a model's bias correction lives in the model itself (edge_boneage.calibrate).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

N_BOOT = 2000
BANDS = ((0, 5), (5, 10), (10, 15), (15, 19))
ZOOMS = (0.8, 1.25, 1.5)


def bootstrap_ci(values: np.ndarray, stat=np.mean, n: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of stat(values)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n, len(v)))
    s = stat(v[idx], axis=1)
    return float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))


def summary(true, pred, male, groups: dict | None = None) -> dict:
    true, pred, male = (np.asarray(a, np.float64) for a in (true, pred, male))
    err = pred - true
    out = {}

    def one(mask):
        e = err[mask]
        if len(e) == 0:
            return None
        return {"n": int(len(e)), "mae": float(np.abs(e).mean()), "mae_ci": bootstrap_ci(np.abs(e)),
                "bias": float(e.mean()), "bias_ci": bootstrap_ci(e)}

    out["overall"] = one(np.ones(len(err), bool))
    out["male"] = one(male > 0.5)
    out["female"] = one(male <= 0.5)
    for lo, hi in BANDS:
        out[f"{lo}-{hi}y"] = one((true >= 12 * lo) & (true < 12 * hi))
    for name, mask in (groups or {}).items():
        out[name] = one(np.asarray(mask, bool))
    return out


def registered_mask(samples) -> np.ndarray:
    """True for full-resolution files registered and background-cleaned at the source (1600x2080, background 0:
    ../shared/data/rsna/README.md), False for raw films."""
    from PIL import Image

    return np.array([Image.open(s.path).size == (1600, 2080) for s in samples])


def format_summary(title: str, s: dict) -> str:
    lines = [title, f"  {'group':<10} {'n':>5} {'MAE mo':>8} {'95% CI':>15} {'bias mo':>8} {'95% CI':>15}"]
    for k, r in s.items():
        if r is None:
            continue
        lines.append(f"  {k:<10} {r['n']:>5} {r['mae']:>8.2f} {'[%.2f, %.2f]' % tuple(r['mae_ci']):>15} "
                     f"{r['bias']:>+8.2f} {'[%+.2f, %+.2f]' % tuple(r['bias_ci']):>15}")
    return "\n".join(lines)


def protocol_sets(rsna_dir: Path, split: str = "test"):
    """(test samples, fullres samples) of the protocol (split="val": the validation split instead of the test split,
    for choosing inference options such as TTA without looking at the test split)."""
    from edge_boneage import datasets
    from edge_boneage.dataconfig import protocol_split

    samples = list(datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100").samples)
    _tr, val, test = protocol_split(samples, rsna_dir)
    test = val if split == "val" else test
    full = list(datasets.load_rsna_csv(rsna_dir / "fullres.csv", rsna_dir / "fullres").samples)
    return test, full


from edge_boneage.predict import TTA_MARGINS  # noqa: E402  (the one definition of predict --tta)


def predict_samples(model, samples, transform=None, batch: int = 32, tta: bool = False) -> np.ndarray:
    """Ages (months) of samples, each read and preprocessed by the model's own contract (optional image transform
    on the decoded image first). tta: the mean over the crop margins TTA_MARGINS (hand-crop models only)."""
    import dataclasses

    from edge_boneage.io import read_image

    specs = [model.spec]
    if tta and model.spec.crop == "hand":
        specs = [dataclasses.replace(model.spec, crop_margin=m) for m in TTA_MARGINS]
    preds = []
    for b in range(0, len(samples), batch):
        chunk = samples[b:b + batch]
        decoded = []
        for s in chunk:
            img, _ = read_image(s.path)
            decoded.append(transform(img) if transform is not None else img)
        sex = np.array([[1.0 if s.male else 0.0] for s in chunk], np.float32)
        outs = [model.predict({"image": np.stack([sp.apply(im) for im in decoded])[..., None].astype(np.uint8),
                               "sex": sex}) for sp in specs]
        preds.append(np.mean(outs, axis=0))
    return np.concatenate(preds).astype(np.float64)


def zoom(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    h, w = img.shape
    mat = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), 0.0, float(factor))
    return cv2.warpAffine(img, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def evaluate(model_path: Path, rsna_dir: Path, *, do_zoom: bool, split: str = "test", tta: bool = False) -> dict:
    from edge_boneage.modelfile import open_model as open_age_model

    model = open_age_model(model_path)
    test, full = protocol_sets(rsna_dir, split)
    res = {"model": str(model_path), "contract": model.spec.to_dict(), "split": split, "tta": tta}
    for name, ss in (("test", test), ("fullres", full)):
        true = np.array([s.boneage_months for s in ss], np.float64)
        male = np.array([1.0 if s.male else 0.0 for s in ss])
        pred = predict_samples(model, ss, tta=tta)
        groups = None
        if name == "fullres":
            reg = registered_mask(ss)
            groups = {"registered": reg, "raw film": ~reg}
        res[name] = {"summary": summary(true, pred, male, groups), "ids": [s.id for s in ss], "pred": pred.tolist(),
                     "true": true.tolist()}
        if model.interval:
            from edge_boneage.calibrate import interval_for

            iv = np.array([interval_for(p, model.interval) for p in pred])
            inside = (true >= iv[:, 0]) & (true <= iv[:, 1])
            res[name]["interval"] = {"nominal": model.interval["coverage"], "coverage": float(inside.mean()),
                                     "coverage_ci": bootstrap_ci(inside.astype(float)), "n": int(len(inside)),
                                     "mean_width_months": float((iv[:, 1] - iv[:, 0]).mean())}
    if do_zoom:
        base = np.asarray(res["test"]["pred"])
        res["zoom"] = {}
        for z in ZOOMS:
            shift = predict_samples(model, test, transform=lambda im, z=z: zoom(im, z), tta=tta) - base
            res["zoom"][str(z)] = {"mean_shift": float(shift.mean()), "ci": bootstrap_ci(shift),
                                   "mean_abs_shift": float(np.abs(shift).mean()), "n": int(len(shift))}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--zoom", action="store_true", help="also the zoom test (3 more passes over the test split)")
    ap.add_argument("--json", type=Path, help="write every result (with per-image predictions) here")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test (report) or val (to choose inference options without the test split)")
    ap.add_argument("--tta", action="store_true", help=f"mean over hand-crop margins {TTA_MARGINS}")
    a = ap.parse_args(argv)
    results = []
    try:
        for m in a.models:
            r = evaluate(m, a.rsna_dir, do_zoom=a.zoom, split=a.split, tta=a.tta)
            results.append(r)
            c = r["contract"]
            print(f"## {m}  (input {c['input_size']} px, frame {c.get('frame', 'letterbox')}, crop {c.get('crop')}, "
                  f"enhance {c.get('enhance')})")
            print(format_summary(f"RSNA 100x100 protocol {a.split} split (n={len(r['test']['ids'])})"
                                 f"{', TTA' if a.tta else ''}:", r["test"]["summary"]))
            print(format_summary(f"RSNA full-resolution films (n={len(r['fullres']['ids'])}):",
                                 r["fullres"]["summary"]))
            for name in ("test", "fullres"):
                iv = r[name].get("interval")
                if iv:
                    print(f"  {name}: {100 * iv['nominal']:.0f} % interval covers {100 * iv['coverage']:.1f} % "
                          f"[{100 * iv['coverage_ci'][0]:.1f}, {100 * iv['coverage_ci'][1]:.1f}] of n={iv['n']}, "
                          f"mean width {iv['mean_width_months']:.1f} months")
            for z, d in (r.get("zoom") or {}).items():
                print(f"  zoom {z}x: mean shift {d['mean_shift']:+.2f} months "
                      f"[{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}], mean |shift| {d['mean_abs_shift']:.2f} (n={d['n']})")
            print()
    except EdgeBoneageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        from edge_boneage.fileutil import write_json_atomic

        write_json_atomic(a.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
