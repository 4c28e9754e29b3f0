"""Both errors of the input quality gate (edge_boneage.quality): real radiographs flagged, non-hand pictures passed.

    python -m benchmarks.quality_gate --rsna-dir ../shared/data/rsna [--keep DIR] [--calibration]
    python -m benchmarks.quality_gate --rsna-dir ../shared/data/rsna --calibrate   # how the thresholds were set

(a) **real radiographs flagged** (goal <= 1 %): the RSNA protocol's *test* split of the 100x100 set (1,130 images;
    edge_boneage.dataconfig.protocol_split: none of them set a threshold), all 55 full-resolution films as PNG, and the same
    films wrapped into DICOM (benchmarks.bad_inputs.dicom_dataset, MONOCHROME2, 8-bit) in a temporary folder.
(b) **non-hand pictures passed** (goal: none): a suite generated here in a temporary folder (``make_nonhand_suite``):
    scikit-image's sample pictures as grey and colour PNG / JPEG, noise, constant images, tiny images, coloured
    shapes, rendered text, gradients, checkerboards, stripes, chest- and skull-like caricatures, a Gaussian blob,
    hopelessly under / over exposed real test-split radiographs. The project's synthetic (cartoon) hands
    (edge_boneage.synth) are reported apart: they are not required to fail.
    The suite chose which statistics the gate has (each was added for a kind of picture that passed); it set no
    threshold: those come from the train / validation radiographs only (``--calibrate``).

Every file goes through edge_boneage.io.read_image and edge_boneage.quality.assess(img, meta), as `predict` does.
Prints per-suite counts, every passed non-hand item and every flagged real radiograph with its reasons.
``--calibration`` also prints the flag rate on the train / validation images the thresholds were set on.
Exit status 0 always (a measurement, not a test; tests/test_quality.py holds the pass/fail checks).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REAL_GOAL_PCT = 1.0


# ----------------------------------------------------------------------------------------------- the non-hand suite


def _save(path: Path, arr: np.ndarray, quality: int = 90) -> Path:
    """Write a grey (H, W) or RGB (H, W, 3) uint8 array as PNG or JPEG (by suffix) with Pillow."""
    from PIL import Image

    a = np.ascontiguousarray(arr)
    im = Image.fromarray(a, "L" if a.ndim == 2 else ("RGBA" if a.shape[2] == 4 else "RGB"))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.convert("RGB" if a.ndim == 3 else "L").save(path, quality=quality)
    else:
        im.save(path)
    return path


def _to_uint8(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12) * 255.0
        return np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return a


def _grey(rgb: np.ndarray) -> np.ndarray:
    from edge_boneage.io import rgb_to_grey

    return rgb_to_grey(rgb[..., :3])


SKIMAGE_PICTURES = ("astronaut", "coffee", "chelsea", "rocket", "camera", "moon", "text", "page", "horse", "coins",
                    "brick", "grass", "gravel", "checkerboard", "clock", "hubble_deep_field", "immunohistochemistry",
                    "retina", "logo", "cell", "binary_blobs", "colorwheel", "microaneurysms", "shepp_logan_phantom",
                    "stereo_motorcycle")


def _skimage_items(folder: Path) -> list[tuple[str, str, Path]]:
    try:
        import skimage.data as sd
    except ImportError:  # pragma: no cover - scikit-image is a [dev] extra
        print("(scikit-image not installed: its sample pictures are left out)", file=sys.stderr)
        return []
    out = []
    for name in SKIMAGE_PICTURES:
        try:
            a = getattr(sd, name)()
        except Exception as exc:  # a picture needing a download (pooch) in this install
            print(f"(skimage.data.{name} unavailable: {type(exc).__name__})", file=sys.stderr)
            continue
        if isinstance(a, tuple):  # stereo_motorcycle: (left, right, disparity)
            a = a[0]
        a = _to_uint8(a)
        if a.ndim == 3:
            rgb = a[..., :3]
            out.append(("photo colour", f"{name} colour PNG", _save(folder / f"sk_{name}_rgb.png", a)))
            out.append(("photo colour", f"{name} colour JPEG", _save(folder / f"sk_{name}_rgb.jpg", rgb)))
            g = _grey(rgb)
        else:
            g = a
        out.append(("photo grey", f"{name} grey PNG", _save(folder / f"sk_{name}_grey.png", g)))
        out.append(("photo grey", f"{name} grey JPEG", _save(folder / f"sk_{name}_grey.jpg", g)))
    return out


def _noise_items(folder: Path, rng) -> list[tuple[str, str, Path]]:
    out = []
    for h, w in ((64, 64), (100, 100), (256, 256), (300, 200), (1024, 1024), (2000, 1500)):
        uni = rng.integers(0, 256, (h, w), dtype=np.uint8)
        gau = np.clip(rng.normal(128, 40, (h, w)), 0, 255).astype(np.uint8)
        sp = np.full((h, w), 128, np.uint8)
        r = rng.random((h, w))
        sp[r < 0.05] = 0
        sp[r > 0.95] = 255
        sp2 = (rng.random((h, w)) < 0.5).astype(np.uint8) * 255  # binary noise
        for kind, a in (("uniform", uni), ("gaussian", gau), ("salt-and-pepper 10 %", sp), ("binary", sp2)):
            out.append(("noise", f"{kind} {w}x{h}", _save(folder / f"noise_{kind.split()[0]}_{w}x{h}.png", a)))
    rgbn = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    out.append(("noise", "colour uniform 256x256", _save(folder / "noise_rgb.png", rgbn)))
    out.append(("noise", "gaussian 512x512 JPEG", _save(folder / "noise_gauss.jpg",
                                                         np.clip(rng.normal(128, 40, (512, 512)), 0, 255).astype(np.uint8))))
    return out


def _constant_and_tiny_items(folder: Path, rng) -> list[tuple[str, str, Path]]:
    out = []
    for v, name in ((0, "black"), (255, "white"), (128, "grey")):
        for s in (100, 512):
            out.append(("constant", f"{name} {s}x{s}", _save(folder / f"const_{name}_{s}.png", np.full((s, s), v, np.uint8))))
    almost = np.full((256, 256), 100, np.uint8)
    almost[rng.random((256, 256)) < 0.01] = 101
    out.append(("constant", "grey 100 with 1 % at 101", _save(folder / "const_almost.png", almost)))
    for s in (1, 10, 63):
        out.append(("tiny", f"grey {s}x{s}", _save(folder / f"tiny_{s}.png", np.full((s, s), 128, np.uint8))))
        out.append(("tiny", f"noise {s}x{s}", _save(folder / f"tiny_noise_{s}.png", rng.integers(0, 256, (s, s), dtype=np.uint8))))
    out.append(("tiny", "hand-like 63x200", _save(folder / "tiny_63x200.png", _hand_like_strip(63, 200))))
    return out


def _hand_like_strip(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(40 + 150 * np.exp(-(((x - w / 2) / (w / 4)) ** 2 + ((y - h / 2) / (h / 3)) ** 2)), 0, 255).astype(np.uint8)


def _drawn_items(folder: Path, rng) -> list[tuple[str, str, Path]]:
    out = []
    # coloured shapes on white and on black, RGB
    for bg, tag in ((255, "white"), (0, "black")):
        img = np.full((400, 500, 3), bg, np.uint8)
        for k in range(12):
            col = tuple(int(c) for c in rng.integers(0, 256, 3))
            cx, cy = int(rng.integers(40, 460)), int(rng.integers(40, 360))
            if k % 3 == 0:
                cv2.circle(img, (cx, cy), int(rng.integers(15, 70)), col, -1)
            elif k % 3 == 1:
                cv2.rectangle(img, (cx - 40, cy - 25), (cx + 40, cy + 25), col, -1)
            else:
                pts = rng.integers(0, 400, (3, 2)).astype(np.int32)
                cv2.fillPoly(img, [pts], col)
        out.append(("shapes", f"coloured shapes on {tag} PNG", _save(folder / f"shapes_{tag}.png", img)))
        out.append(("shapes", f"coloured shapes on {tag} JPEG", _save(folder / f"shapes_{tag}.jpg", img)))
        out.append(("shapes", f"coloured shapes on {tag}, as grey PNG", _save(folder / f"shapes_{tag}_grey.png", _grey(img))))
    # one big shape
    for name, draw in (("disc", lambda im: cv2.circle(im, (200, 200), 120, 200, -1)),
                       ("square", lambda im: cv2.rectangle(im, (80, 80), (320, 320), 200, -1)),
                       ("star", lambda im: cv2.fillPoly(im, [_star(200, 200, 150, 60)], 200))):
        im = np.full((400, 400), 30, np.uint8)
        draw(im)
        out.append(("shapes", f"grey {name} on dark", _save(folder / f"shape_{name}.png", cv2.GaussianBlur(im, (7, 7), 0))))
    # rendered text
    for inv in (False, True):
        im = np.full((600, 800), 0 if inv else 255, np.uint8)
        lines = ["Bone age assessment", "Greulich and Pyle", "Tanner-Whitehouse 3", "RSNA 2017 challenge",
                 "The quick brown fox", "jumps over the lazy dog", "0123456789 !?%&"]
        for i, t in enumerate(lines):
            cv2.putText(im, t, (20, 70 + 75 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 255 if inv else 0, 3, cv2.LINE_AA)
        tag = "white on black" if inv else "black on white"
        out.append(("text", f"rendered text, {tag}", _save(folder / f"text_{int(inv)}.png", im)))
        out.append(("text", f"rendered text, {tag}, JPEG", _save(folder / f"text_{int(inv)}.jpg", im)))
    big = np.full((300, 300), 255, np.uint8)
    cv2.putText(big, "L", (60, 260), cv2.FONT_HERSHEY_SIMPLEX, 9, 0, 40)
    out.append(("text", "one big letter L", _save(folder / "text_L.png", big)))
    # line drawing
    ld = np.full((500, 500), 255, np.uint8)
    for _ in range(40):
        p, q = rng.integers(0, 500, 2), rng.integers(0, 500, 2)
        cv2.line(ld, tuple(int(v) for v in p), tuple(int(v) for v in q), 0, 2, cv2.LINE_AA)
    out.append(("text", "line drawing", _save(folder / "lines.png", ld)))
    # gradients
    h, w = 400, 300
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    for name, a in (("horizontal", x / (w - 1)), ("vertical", y / (h - 1)),
                    ("radial", 1 - np.hypot(x - w / 2, y - h / 2) / np.hypot(w / 2, h / 2)),
                    ("diagonal", (x + y) / (w + h - 2))):
        out.append(("gradient", f"{name} gradient", _save(folder / f"grad_{name}.png", (a * 255 + 0.5).astype(np.uint8))))
    col = np.stack([x / (w - 1), y / (h - 1), 1 - x / (w - 1)], -1)
    out.append(("gradient", "colour gradient", _save(folder / "grad_colour.png", (col * 255 + 0.5).astype(np.uint8))))
    # checkerboards
    for cell in (8, 25, 64):
        cb = (((np.arange(512)[:, None] // cell) + (np.arange(512)[None, :] // cell)) % 2 * 255).astype(np.uint8)
        out.append(("pattern", f"checkerboard {cell} px", _save(folder / f"checker_{cell}.png", cb)))
    stripes = ((np.arange(512)[None, :] // 16) % 2 * 200 + 30).astype(np.uint8).repeat(512, 0)
    out.append(("pattern", "stripes 16 px", _save(folder / "stripes.png", stripes)))
    # medical-looking but not a hand
    out.append(("not a hand", "chest-like blob", _save(folder / "chest.png", _chest_like(rng))))
    out.append(("not a hand", "chest-like blob JPEG", _save(folder / "chest.jpg", _chest_like(rng))))
    out.append(("not a hand", "skull-like ring", _save(folder / "skull.png", _skull_like(rng))))
    out.append(("not a hand", "gaussian blob (test fixture style)", _save(folder / "blob.png", _blob(rng))))
    return out


def _star(cx, cy, r_out, r_in, n=5) -> np.ndarray:
    ang = np.arange(2 * n) * np.pi / n - np.pi / 2
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    return np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], -1).astype(np.int32)


def _chest_like(rng) -> np.ndarray:
    """A frontal chest film caricature: bright body, two dark lungs, a spine, ribs, a heart shadow, noise."""
    h, w = 1024, 1024
    im = np.full((h, w), 20, np.float64)
    cv2.ellipse(im, (512, 560), (420, 480), 0, 0, 360, 170, -1)
    for cx in (330, 694):
        cv2.ellipse(im, (cx, 480), (150, 280), 0, 0, 360, 70, -1)
    cv2.rectangle(im, (490, 80), (534, 1000), 210, -1)
    cv2.ellipse(im, (560, 640), (140, 120), 0, 0, 360, 150, -1)
    for k in range(9):
        yk = 260 + 55 * k
        for sgn in (-1, 1):
            cv2.ellipse(im, (512 + sgn * 180, yk), (200, 40), 0, 180 if sgn < 0 else 270, 360 if sgn < 0 else 450, 200, 6)
    im = cv2.GaussianBlur(im, (0, 0), 6) + rng.normal(0, 4, (h, w))
    return np.clip(im, 0, 255).astype(np.uint8)


def _skull_like(rng) -> np.ndarray:
    im = np.full((800, 700), 15, np.float64)
    cv2.ellipse(im, (350, 400), (300, 360), 0, 0, 360, 200, 30)
    cv2.ellipse(im, (350, 400), (270, 330), 0, 0, 360, 90, -1)
    cv2.ellipse(im, (350, 620), (120, 60), 0, 0, 360, 170, 12)
    im = cv2.GaussianBlur(im, (0, 0), 4) + rng.normal(0, 3, im.shape)
    return np.clip(im, 0, 255).astype(np.uint8)


def _blob(rng) -> np.ndarray:
    h, w = 256, 192
    y, x = np.mgrid[0:h, 0:w]
    img = 40 + 150 * np.exp(-(((x - w / 2) / (w / 4)) ** 2 + ((y - h / 2) / (h / 3)) ** 2))
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def _bad_exposure_items(folder: Path, test_samples, n: int = 5) -> list[tuple[str, str, Path]]:
    """Test-split radiographs made hopeless: all values divided by 20 (0..12), clipped to 250+, divided by 64, or
    crushed to 2 grey levels at the extremes."""
    out = []
    for s in list(test_samples)[:n]:
        img = cv2.imread(str(s.path), cv2.IMREAD_GRAYSCALE)
        for name, a in (("/20", img // 20), ("clipped to 250+", np.maximum(img, 250)), ("/64", img // 64),
                        ("255 - v/20 (all near white)", 255 - img // 20)):
            tag = name.split()[0].replace("/", "div")
            out.append(("bad exposure", f"{s.id} {name}", _save(folder / f"exp_{s.id}_{tag}.png", a.astype(np.uint8))))
    return out


def make_nonhand_suite(folder: Path, test_samples=(), seed: int = 0) -> list[tuple[str, str, Path]]:
    """Write the non-hand suite into `folder`: [(suite, item name, path)]. `test_samples` (RSNA test-split Samples)
    feed the bad-exposure items; without them those are left out."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = _skimage_items(folder) + _noise_items(folder, rng) + _constant_and_tiny_items(folder, rng)
    items += _drawn_items(folder, rng)
    if test_samples:
        items += _bad_exposure_items(folder, test_samples)
    return items


PYDICOM_FILES = ("CT_small.dcm", "MR_small.dcm", "liver_1frame.dcm", "JPEG2000.dcm", "JPGExtended.dcm",
                 "examples_palette.dcm", "examples_rgb_color.dcm", "examples_ybr_color.dcm", "image_dfl.dcm",
                 "rtdose_1frame.dcm", "693_J2KI.dcm", "SC_rgb_small_odd.dcm", "MR_small_RLE.dcm", "emri_small.dcm")


def heldout_suite(folder: Path, seed: int = 1) -> list[tuple[str, Path]]:
    """[(name, path)]: the held-out non-hand suite, pictures the feature check's settings were not chosen on
    (benchmarks.feature_distance): matplotlib's and pydicom's bundled sample images (photos, an MRI head slice, CT / MR
    DICOM test files, elevation maps, a 2-D Gaussian) and this module's random pictures drawn with another seed."""
    import gzip
    import os

    import matplotlib

    out = []
    (folder / "drawn").mkdir(parents=True, exist_ok=True)
    sd = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        if (sd / name).is_file():
            out.append((f"matplotlib {name}", sd / name))
    if (sd / "s1045.ima.gz").is_file():  # 256x256 16-bit MRI head slice
        mri = np.frombuffer(gzip.open(sd / "s1045.ima.gz").read(), np.uint16).reshape(256, 256)
        out.append(("matplotlib MRI head slice s1045", _save(folder / "mri_s1045.png", _to_uint8(mri))))
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        if (sd / name).is_file():
            a = np.load(sd / name)
            arr = a[key] if key in a.files else a[a.files[0]]
            out.append((f"matplotlib elevation map {name}", _save(folder / f"{name}.png", _to_uint8(arr))))
    bn = sd / "axes_grid" / "bivariate_normal.npy"
    if bn.is_file():
        out.append(("matplotlib bivariate normal", _save(folder / "bivariate.png", _to_uint8(np.load(bn)))))
    try:
        import pydicom

        td = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files"
        out += [(f"pydicom {n}", td / n) for n in PYDICOM_FILES if (td / n).is_file()]
    except ImportError:  # pragma: no cover - pydicom is the [dicom] extra
        pass
    rng = np.random.default_rng(seed)
    for i in range(3):
        out.append((f"chest-like blob, seed {seed}.{i}", _save(folder / f"chest_{i}.png", _chest_like(rng))))
        out.append((f"skull-like ring, seed {seed}.{i}", _save(folder / f"skull_{i}.png", _skull_like(rng))))
        out.append((f"gaussian blob, seed {seed}.{i}", _save(folder / f"blob_{i}.png", _blob(rng))))
    # the generators' random items only (their gradients, text and patterns do not depend on the seed)
    out += [(f"{name} (seed {seed})", p) for _s, name, p in _drawn_items(folder / "drawn", rng)
            if name.startswith(("coloured shapes", "chest", "skull", "gaussian blob"))]
    return out


def make_synth_hands(folder: Path, n: int = 12, size: int = 512) -> list[tuple[str, str, Path]]:
    from edge_boneage.synth import generate

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    batch = generate(n, size=size, seed=0)
    return [("synthetic hand", f"synth {i} ({batch.boneage[i] / 12:.1f} y)", _save(folder / f"synth_{i}.png", batch.images[i]))
            for i in range(n)]


# ----------------------------------------------------------------------------------------------- real radiographs


def real_sets(rsna_dir: Path, folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """{'test split (img100)': [(id, path)], 'full-res PNG': ..., 'full-res DICOM': ...}; DICOMs written to `folder`."""
    from benchmarks.bad_inputs import dicom_dataset, write_dicom
    from edge_boneage import datasets
    from edge_boneage.io import read_image
    from edge_boneage.dataconfig import protocol_split

    samples = datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100").samples
    _tr, _va, test = protocol_split(samples, rsna_dir)
    out = {"test split (img100)": [(s.id, s.path) for s in test]}
    fr = []
    if (rsna_dir / "fullres.csv").is_file():
        with open(rsna_dir / "fullres.csv", newline="") as f:
            fr = [(r["id"], rsna_dir / "fullres" / f"{r['id']}.png") for r in csv.DictReader(f)]
    out["full-res PNG"] = fr
    dcm = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in fr:
        img, _meta = read_image(p)
        dcm.append((i, write_dicom(folder / f"{i}.dcm", dicom_dataset(img))))
    out["full-res DICOM"] = dcm
    return out


def calibration_samples(rsna_dir: Path):
    from edge_boneage import datasets
    from edge_boneage.dataconfig import protocol_split

    samples = datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100").samples
    tr, va, _te = protocol_split(samples, rsna_dir)
    return list(tr) + list(va), _te


# ----------------------------------------------------------------------------------------------- measuring


ORIENTER = None  # set by --with-orientation: predict's orientation step, whose "orientation unclear" also flags
PREDICTOR = None  # set by --as-predict MODEL: predict_image itself (statistics + orientation + the model's feature check)


def judge(path: Path):
    """QualityResult of one file as `predict` sees it, or a failed one when the file cannot be read. With
    --with-orientation, predict's orientation classifier runs too and an unclear estimate flags the image, as in
    predict's quality_ok / quality_reasons."""
    from edge_boneage import EdgeBoneageError
    from edge_boneage.io import read_image
    from edge_boneage.quality import QualityResult, assess

    if PREDICTOR is not None:
        from edge_boneage.predict import predict_image

        try:
            p = predict_image(PREDICTOR, path, "M")
        except (EdgeBoneageError, ValueError) as exc:  # unreadable, or too small for the model's contract
            return QualityResult(False, [f"unreadable ({str(exc)[:80]})"], {})
        return QualityResult(p.quality_ok, list(p.quality_reasons), {"feature_residual": p.feature_residual})
    try:
        img, meta = read_image(path)
    except EdgeBoneageError as exc:
        return QualityResult(False, [f"unreadable ({exc})"], {})
    r = assess(img, meta)
    if ORIENTER is not None:
        est = ORIENTER.estimate(img).to_dict()
        if not est["confident"]:
            r = QualityResult(False, list(r.reasons) + [f"orientation unclear (p={est['prob']:.2f})"], r.scores)
    return r


def _md_table(head: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, default=Path("../shared/data/rsna"),
                    help="RSNA folder (labels.csv, img100/, fullres.csv, fullres/); default ../shared/data/rsna")
    ap.add_argument("--keep", type=Path, help="write the generated files here (kept) instead of a temporary folder")
    ap.add_argument("--calibration", action="store_true",
                    help="also report the flag rate on the train/validation images the thresholds were set on")
    ap.add_argument("--calibrate", action="store_true",
                    help="only print each statistic's percentiles on the train + validation images (how the "
                         "thresholds in edge_boneage/quality.py were set) and exit")
    ap.add_argument("--as-predict", type=Path, metavar="MODEL",
                    help="judge each file with predict_image on MODEL (statistics, the orientation step and the "
                         "model's feature check, when it carries one): predict's quality_ok exactly")
    ap.add_argument("--with-orientation", action="store_true",
                    help="also run predict's orientation classifier: an unclear orientation flags the image too "
                         "(predict's quality_ok counts both)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if args.as_predict:
        global PREDICTOR
        from edge_boneage.predict import AgePredictor

        PREDICTOR = AgePredictor(args.as_predict)
    from edge_boneage import quality

    if args.with_orientation:
        global ORIENTER
        from edge_boneage.orientation import default_orienter

        ORIENTER = default_orienter()
        if ORIENTER is None:
            raise SystemExit("--with-orientation: no orientation model (edge_boneage/pretrained/orientation.tflite)")

    if args.calibrate:
        return calibrate(args.rsna_dir)

    have_rsna = (args.rsna_dir / "labels.csv").is_file()
    if not have_rsna:
        print(f"(no RSNA data at {args.rsna_dir}: only the non-hand suite is measured)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        print(f"Quality gate {quality.GATE_VERSION} (edge_boneage/quality.py)"
              + (" + predict's orientation step (an unclear orientation flags)" if ORIENTER else "")
              + (f" as predict_image applies it with {args.as_predict.name} (statistics, orientation step, "
                 f"feature check: {'yes' if PREDICTOR.feature_gate else 'none in this model'})" if PREDICTOR else "")
              + "\n")
        # (a) real radiographs
        real_rows, flagged_rows, n_real, n_flag = [], [], 0, 0
        test = ()
        if have_rsna:
            trval, test = calibration_samples(args.rsna_dir)
            sets = real_sets(args.rsna_dir, folder / "dicom")
            if args.calibration:
                sets = {"calibration: train + val (img100)": [(s.id, s.path) for s in trval], **sets}
            for name, items in sets.items():
                bad = 0
                reasons = Counter()
                for i, p in items:
                    r = judge(p)
                    if not r.ok:
                        bad += 1
                        reasons.update(x.split(" (")[0] for x in r.reasons)
                        flagged_rows.append([name, i, _reason_text(r)])
                if not name.startswith("calibration"):
                    n_real += len(items)
                    n_flag += bad
                real_rows.append([name, len(items), bad, f"{100 * bad / max(len(items), 1):.2f} %",
                                  ", ".join(f"{k} ({v})" for k, v in reasons.most_common()) or "-"])
            real_rows.append(["**all held-out real radiographs**", n_real, n_flag,
                              f"**{100 * n_flag / max(n_real, 1):.2f} %** (goal <= {REAL_GOAL_PCT:g} %)", ""])
            print("(a) Real radiographs flagged (false rejections)\n")
            _md_table(["set", "images", "flagged", "rate", "reasons"], real_rows)
            if flagged_rows:
                print("\nFlagged real radiographs:\n")
                _md_table(["set", "id", "reasons"], flagged_rows)
            print()
        # (b) non-hand pictures
        items = make_nonhand_suite(folder / "nonhand", test)
        synth = make_synth_hands(folder / "synth")
        by_suite: dict[str, list] = {}
        passed = []
        reason_count = Counter()
        for suite, name, p in items:
            r = judge(p)
            by_suite.setdefault(suite, []).append(r.ok)
            reason_count.update(x.split(" (")[0] for x in r.reasons)
            if r.ok:
                passed.append([suite, name, _score_text(r)])
        rows = [[s, len(v), sum(v)] for s, v in by_suite.items()]
        n_items, n_pass = sum(len(v) for v in by_suite.values()), sum(sum(v) for v in by_suite.values())
        rows.append(["**all non-hand pictures**", n_items, f"**{n_pass}** ({100 * n_pass / max(n_items, 1):.1f} %; goal 0)"])
        print("(b) Non-hand pictures passed (false acceptances)\n")
        _md_table(["suite", "pictures", "passed"], rows)
        print("\nReasons given (a picture can have several): "
              + ", ".join(f"{k} {v}" for k, v in reason_count.most_common()))
        if passed:
            print("\nPassed non-hand pictures:\n")
            _md_table(["suite", "picture", "scores"], passed)
        held = heldout_suite(folder / "heldout")
        hrows = []
        for name, p in held:
            r = judge(p)
            hrows.append([name, "passed" if r.ok else "flagged", _reason_text(r) or "-"])
        n_hpass = sum(r[1] == "passed" for r in hrows)
        print(f"\n(c) The held-out non-hand suite (heldout_suite; made after the feature check's "
              f"settings were chosen): **{n_hpass} of {len(held)} passed**\n")
        _md_table(["picture", "gate", "reasons"], hrows)
        print("\nThe project's synthetic (cartoon) hands, edge_boneage.synth.generate(12, size=512, seed=0) "
              "(not required to fail):\n")
        srows = []
        for _suite, name, p in synth:
            r = judge(p)
            srows.append([name, "passed" if r.ok else "flagged", _reason_text(r) or "-"])
        _md_table(["picture", "gate", "reasons"], srows)
    return 0


CALIBRATED = (("spread", "low"), ("p99", "low"), ("p1", "high"), ("range", "low"), ("ac64", "low"), ("hf", "both"),
              ("levels95", "low"), ("peak", "low"), ("plain", "low"),
              ("centre", "low"), ("coverage", "both"), ("fill", "both"), ("aspect", "both"))


def calibrate(rsna_dir: Path) -> int:
    """Percentiles of each gate statistic over the protocol's train + validation images (never the test split)."""
    from edge_boneage import quality
    from edge_boneage.io import read_image

    trval, _test = calibration_samples(rsna_dir)
    rows = []
    for s in trval:
        img, meta = read_image(s.path)
        rows.append(quality.assess(img, meta).scores)
    qs = (0, 0.1, 0.2, 0.5, 1, 50, 99, 99.5, 99.8, 99.9, 100)
    print(f"Gate statistics on {len(rows)} RSNA train + validation radiographs (img100; protocol split seed 0)\n")
    _md_table(["statistic", "tail used"] + [f"{q:g} %" for q in qs],
              [[k, side] + [f"{v:.4g}" for v in np.percentile([float(r[k]) for r in rows], qs)] for k, side in CALIBRATED])
    print(f"\nfound: {sum(bool(r['found']) for r in rows)} / {len(rows)}; colourfulness max "
          f"{max(float(r['colourfulness'] or 0) for r in rows):.2f}")
    return 0


def _reason_text(r) -> str:
    details = r.scores.get("details") or {}
    return "; ".join(f"{x} ({details[x]})" if x in details else x for x in r.reasons)


def _score_text(r) -> str:
    keys = ("ac64", "hf", "levels95", "peak", "plain", "centre", "coverage", "fill", "feature_residual")
    return ", ".join(f"{k} {r.scores[k]:.3g}" for k in keys if isinstance(r.scores.get(k), (int, float)))


if __name__ == "__main__":
    sys.exit(main())
