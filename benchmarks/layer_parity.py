"""Custom layers vs their references, in Keras and in exported float LiteRT models: the table in docs/LAYERS.md.

    KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.layer_parity [--rsna DIR] [--update docs/LAYERS.md]

The references are the ones the tests use (tests/test_layers.py): scikit-image, an exact integer LBP, NumPy loops.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- layer_parity:begin -->", "<!-- layer_parity:end -->"


def _tests_module():
    spec = importlib.util.spec_from_file_location("test_layers_refs", REPO / "tests" / "test_layers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pct(a, b) -> str:
    return f"{100.0 * np.mean(a == b):.2f} %"


def lbp_rows(t, images: dict[str, dict[str, np.ndarray]], tmp: Path) -> list[list[str]]:
    import keras

    from edge_boneage.convert.export import export_litert
    from edge_boneage.runtime import LiteRTModel
    from keras_models.layers import LocalBinaryPattern

    image = keras.Input((None, None, 1), name="image", dtype="uint8")
    model = keras.Model(image, {m: LocalBinaryPattern(m, name=f"lbp_{m}")(image) for m in t.METHODS})
    lite = LiteRTModel(export_litert(model, tmp / "lbp.tflite"))
    rows = []
    for group, imgs in images.items():
        for m in t.METHODS:
            acc = {"sk_k": [], "sk_l": [], "ex_k": [], "ex_l": [], "sk_ex": []}
            for img in imgs.values():
                sk, ex = t.skimage_lbp(img, m), t.exact_lbp(img, m)
                k = np.asarray(model(img[None, :, :, None])[m])[0, :, :, 0]
                li = lite(image=img[None, :, :, None])[m][0, :, :, 0]
                for key, (a, b) in {"sk_k": (k, sk), "sk_l": (li, sk), "ex_k": (k, ex), "ex_l": (li, ex),
                                    "sk_ex": (sk, ex)}.items():
                    acc[key].append((a == b).ravel())
            v = {key: np.concatenate(x) for key, x in acc.items()}
            npx = v["sk_k"].size
            rows.append([f"LBP `{m}`", f"{group} ({len(imgs)} img, {npx:,} px)",
                         _pct(v["sk_k"], True), _pct(v["sk_l"], True), _pct(v["ex_k"], True), _pct(v["ex_l"], True),
                         _pct(v["sk_ex"], True)])
    return rows


def other_rows(t, tmp: Path) -> list[list[str]]:
    import keras

    from edge_boneage.convert.export import export_litert
    from edge_boneage.runtime import LiteRTModel
    from keras_models.layers import AffineGridSampler, SoftmaxExpectation

    rows = []
    f, th = t.sampler_case(3)
    for align in (False, True):
        feats, theta = keras.Input((16, 20, 3), name="features"), keras.Input((3, 6), name="theta")
        model = keras.Model({"features": feats, "theta": theta},
                            AffineGridSampler((12, 10), align_corners=align)([feats, theta]))
        ref = t.numpy_affine_sample(f, th, (12, 10), align)
        k = np.asarray(model({"features": f, "theta": th}))
        (li,) = LiteRTModel(export_litert(model, tmp / f"s{align}.tflite"))(features=f, theta=th).values()
        rows.append(["AffineGridSampler", f"align_corners={align}, 2x3 thetas (identity, zoom, shift, rotate, "
                     "partly outside), 16x20x3 -> 12x10", f"max abs err {np.abs(k - ref).max():.1e}",
                     f"max abs err {np.abs(li - ref).max():.1e}", "", "", ""])
    x = np.random.default_rng(5).normal(0, 2, size=(3, 6, 7, 16)).astype("float32")
    for act in ("hard_sigmoid", "sigmoid"):
        model, se = t.se_model(act)
        ref = t.numpy_squeeze_excite(x, *se.get_weights(), act)
        (li,) = LiteRTModel(export_litert(model, tmp / f"se_{act}.tflite"))(x=x).values()
        rows.append(["SqueezeExcite", f"{act}, (3,6,7,16), random weights", f"max abs err "
                     f"{np.abs(np.asarray(model(x)) - ref).max():.1e}", f"max abs err {np.abs(li - ref).max():.1e}",
                     "", "", ""])
    logits = np.random.default_rng(6).normal(0, 3, size=(64, 19))
    p = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
    ref = p.astype(np.float64) @ (12.0 * np.arange(19) + 6.0)
    probs = keras.Input((19,), name="probs")
    model = keras.Model(probs, SoftmaxExpectation()(probs))
    (li,) = LiteRTModel(export_litert(model, tmp / "exp.tflite"))(probs=p).values()
    rows.append(["SoftmaxExpectation", "64x19 softmax, centres 12k+6 months", f"max abs err "
                 f"{np.abs(np.asarray(model(p))[:, 0] - ref).max():.1e} months",
                 f"max abs err {np.abs(li[:, 0] - ref).max():.1e} months", "", "", ""])
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna", type=Path, default=REPO.parent / "shared" / "data" / "rsna")
    ap.add_argument("--rsna-n", type=int, default=50, help="number of 100x100 RSNA images")
    ap.add_argument("--full-n", type=int, default=10, help="number of full-resolution RSNA images")
    ap.add_argument("--update", type=Path, help="replace the table between the markers in this Markdown file")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    t = _tests_module()
    rng = np.random.default_rng(2)
    images = {
        "natural: skimage camera, coins, moon": t.natural_images(),
        "random uint8, 1x1 .. 256x256": {f"{h}x{w}": rng.integers(0, 256, (h, w)).astype(np.uint8)
                                         for h, w in [(1, 1), (3, 3), (2, 5), (17, 23), (64, 64), (256, 256)]},
        "crafted near-ties (flat, 1-2 grey levels, ramps, minimal differences)": t.crafted_images(),
        "exact ties, values 0..2 (skimage's float64 rounding decides)": {
            "0..2": np.random.default_rng(8).integers(0, 3, (40, 40)).astype(np.uint8)},
    }
    if (args.rsna / "img100").is_dir():
        from PIL import Image

        files = sorted((args.rsna / "img100").glob("*.png"))[: args.rsna_n]
        images[f"RSNA img100 (first {len(files)})"] = {f.stem: np.asarray(Image.open(f).convert("L")) for f in files}
        full = {f.stem: np.asarray(Image.open(f).convert("L"))
                for f in sorted((args.rsna / "fullres").glob("*.png"))[: args.full_n]}
        for size in (224, 512, 1024):
            images[f"RSNA full-res (first {len(full)}) letterboxed + INTER_AREA to {size}"] = {
                k: t.letterbox(a, size) for k, a in full.items()}
        images["RSNA full resolution (first 2, whole image)"] = dict(list(full.items())[:2])
    with tempfile.TemporaryDirectory() as tmp:
        rows = lbp_rows(t, images, Path(tmp)) + other_rows(t, Path(tmp))
    head = ["layer", "input", "Keras vs skimage / NumPy", "LiteRT f32 vs skimage / NumPy", "Keras vs exact LBP",
            "LiteRT vs exact LBP", "skimage vs exact LBP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.update:
        text = args.update.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{args.update}: markers {BEGIN} / {END} not found")
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        from edge_boneage.fileutil import write_text_atomic

        write_text_atomic(args.update, f"{pre}{BEGIN}\n{table}\n{END}{post}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
