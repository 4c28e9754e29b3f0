"""Rasterise synthetic hands into X-ray-like images; in-memory ``generate`` and on-disk ``write_dataset``.

Every image ``i`` of seed ``s`` is drawn from its own ``numpy.random.default_rng([s, i])``, so image i is the
same whatever ``n`` is, batches can be generated in any order, and the same seed gives byte-identical output.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_boneage import EdgeBoneageError, tw3
from edge_boneage.synth.hand import build_hand
from edge_boneage.synth.maturity import curve_end, sample_grades
from edge_boneage.synth.maturity import total_score as maturity_total_score

SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_ONE = float(1 << SHIFT)
TISSUE_DOWNSAMPLE = 2


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


def sample_child(seed: int, index: int, age_range=(0.0, 18.0), rng: np.random.Generator | None = None) -> dict:
    """Label + stages of image ``index``: bone age (integer months, uniform in age_range), sex, 13 grades."""
    rng = _rng(seed, index) if rng is None else rng
    a0, a1 = float(age_range[0]), float(age_range[1])
    if not 0.0 <= a0 <= a1:
        raise EdgeBoneageError(f"age range {a0}..{a1} is not an increasing range of years >= 0")
    months = int(rng.integers(int(round(a0 * 12)), int(round(a1 * 12)) + 1))
    male = bool(rng.random() < 0.5)
    sex = "male" if male else "female"
    grades, score, q, beyond = sample_grades(months / 12.0, sex, rng)
    return {"boneage": months, "male": male, "grades": grades, "score": score, "q": q, "beyond_curve": beyond}


@functools.lru_cache(maxsize=8)
def _banks(size: int):
    """Fixed noise and bone-texture fields (2S x 2S) that images take random windows from (fast, deterministic)."""
    r = np.random.default_rng(20240601 + size)
    noise = r.standard_normal((2 * size, 2 * size), dtype=np.float32)
    tex = cv2.GaussianBlur(r.standard_normal((2 * size, 2 * size), dtype=np.float32), (0, 0), max(0.8, size / 300))
    tex /= tex.std()
    return noise, tex


def _window(bank, size, rng):
    y, x = rng.integers(0, size, 2)
    return bank[y : y + size, x : x + size]


def _pose(scene, size, rng):
    """Random similarity transform mm -> px (rotation, scale, translation) keeping key points inside."""
    theta = np.deg2rad(rng.uniform(-25, 25) if rng.random() < 0.8 else rng.uniform(-60, 60))
    view_mm = rng.uniform(210.0, 320.0)  # image side in mm: hand size in pixels is independent of age
    s = size / view_mm
    c, si = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -si], [si, c]]) * s
    rot = rot @ np.diag([1.0, -1.0])  # y up (mm) -> y down (px)
    pts = np.array(scene.keep_inside)
    side = np.array([v[1] for v in scene.rus.values()])
    p = pts @ rot.T
    margin = 0.02 * size + 0.5 * s * side.max()
    lo, hi = p.min(0), p.max(0)
    span = hi - lo
    if np.any(span > size - 2 * margin):  # shrink until it fits
        k = (size - 2 * margin) / span.max()
        rot, p, s = rot * k, p * k, s * k
        lo, hi = p.min(0), p.max(0)
        margin = 0.02 * size + 0.5 * s * side.max()
    tmin = margin - lo
    tmax = size - margin - hi
    t = np.where(tmax > tmin, tmin + rng.random(2) * np.maximum(tmax - tmin, 0), 0.5 * (tmin + tmax))
    return np.hstack([rot, t[:, None]]), s


def _to_px(poly, m, scale=1.0):
    p = (poly @ m[:, :2].T + m[:, 2]) * (scale * _ONE)
    return np.round(p).astype(np.int32)


def render(child: dict, size: int, rng: np.random.Generator):
    """One radiograph: (uint8 (S,S), boxes float32 (13,4) x0,y0,x1,y1 px in BONES order)."""
    r_hand, r_pose, rng = rng.spawn(3)  # independent streams: a stage change never moves the pose
    scene = build_hand(child, r_hand)
    m, s = _pose(scene, size, r_pose)

    # bone layer
    bone = np.zeros((size, size), np.uint8)
    lin = m[:, :2]
    for pts, splits, greys, frame in scene.bone:
        a = lin @ frame[:, :2] * _ONE
        t = (lin @ frame[:, 2] + m[:, 2]) * _ONE
        px = np.rint(pts @ a.T + t).astype(np.int32)
        for poly, grey in zip(np.split(px, splits), greys):
            cv2.fillPoly(bone, [poly], grey, cv2.LINE_AA, SHIFT)

    # soft tissue at low resolution (soft edges, cheap), then upsampled
    ts = size // TISSUE_DOWNSAMPLE
    k = 1.0 / TISSUE_DOWNSAMPLE
    tissue = np.zeros((ts, ts), np.uint8)
    for poly, grey in scene.tissue_polys:
        cv2.fillPoly(tissue, [_to_px(poly, m, k)], int(grey), cv2.LINE_AA, SHIFT)
    hull = cv2.convexHull(_to_px(np.array(scene.hull_points), m, k))
    cv2.fillPoly(tissue, [hull], 255, cv2.LINE_AA, SHIFT)
    cv2.polylines(tissue, [hull], True, 255, max(1, int(round(2 * scene.hull_margin * s * k))), cv2.LINE_AA, SHIFT)
    for p0, p1, w, grey in scene.tissue_lines:
        a = _to_px(p0[None], m, k)[0]
        b = _to_px(p1[None], m, k)[0]
        cv2.line(tissue, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), int(grey),
                 max(1, int(round(w * s * k))), cv2.LINE_AA, SHIFT)
    # thickness: soft tissue is denser away from its edges (a very low-resolution blurred copy)
    vs = max(8, size // 32)
    thick = cv2.GaussianBlur(cv2.resize(tissue, (vs, vs), interpolation=cv2.INTER_AREA), (0, 0), 0.8)
    tissue = cv2.addWeighted(tissue, 0.6, cv2.resize(thick, (ts, ts), interpolation=cv2.INTER_LINEAR), 0.4, 0.0)
    tissue = cv2.resize(tissue, (size, size), interpolation=cv2.INTER_LINEAR)

    noise, tex = _banks(size)
    # attenuation-like composition, positive polarity (bone bright)
    k_t = rng.uniform(0.34, 0.5) / 255.0
    k_b = rng.uniform(0.30, 0.45) / 255.0
    bg = rng.uniform(0.0, 0.14)
    img = cv2.multiply(bone.astype(np.float32), 1.0 + rng.uniform(0.04, 0.1) * _window(tex, size, rng), scale=k_b)
    img = cv2.scaleAdd(tissue.astype(np.float32), k_t, img)
    img += bg
    if rng.random() < 0.5:  # heel effect / uneven exposure
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32) * rng.uniform(0.0, 0.08)
        img += ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
    _marker(img, scene, m, size, rng)
    sigma = rng.uniform(0.5, 1.2) * size / 512.0
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < 0.35:  # collimation: outside the exposed field a flat grey
        _collimate(img, size, rng)
    img = cv2.scaleAdd(_window(noise, size, rng), float(rng.uniform(0.006, 0.03)), img)
    out = cv2.convertScaleAbs(img, alpha=255.0)  # saturating cast to uint8
    gamma = rng.uniform(0.7, 1.4)
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    out = cv2.LUT(out, lut)
    if rng.random() < 0.12:  # inverted polarity (MONOCHROME1-style)
        out = 255 - out

    boxes = np.zeros((len(tw3.BONES), 4), np.float32)
    for i, b in enumerate(tw3.BONES):
        c, side = scene.rus[b]
        cp = m[:, :2] @ c + m[:, 2]
        h = 0.5 * side * s
        boxes[i] = np.clip([cp[0] - h, cp[1] - h, cp[0] + h, cp[1] + h], 0, size)
    return out, boxes


def _marker(img, scene, m, size, rng):
    """A lead side marker 'L' (bright), in a top corner, sometimes on a dark holder."""
    scale = size / 512.0 * rng.uniform(0.9, 1.8)
    thick = max(1, int(round(3 * scale)))
    (tw, th), _ = cv2.getTextSize("L", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = 3 * thick
    pw, ph = tw + 2 * pad, th + 2 * pad
    x0 = int(rng.choice([0.04, 0.78]) * size + rng.uniform(0, 0.12) * size)
    y0 = int(rng.uniform(0.03, 0.15) * size)
    x0, y0 = min(x0, size - pw), min(y0, size - ph)
    roi = img[y0 : y0 + ph, x0 : x0 + pw]
    if rng.random() < 0.4:  # holder
        roi[...] = float(rng.uniform(0.0, 0.1))
    patch = np.zeros((ph, pw), np.uint8)
    cv2.putText(patch, "L", (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    a = patch.astype(np.float32) / 255.0
    roi *= 1.0 - a
    roi += a * float(rng.uniform(0.85, 1.0))


def _collimate(img, size, rng):
    mask = np.zeros((size, size), np.uint8)
    m = rng.uniform(0.0, 0.06, 4) * size
    cv2.rectangle(mask, (int(m[0]), int(m[1])), (int(size - m[2]), int(size - m[3])), 1, -1)
    if mask.all():
        return
    img[mask == 0] = float(rng.uniform(0.2, 0.55))


@dataclass
class SynthBatch:
    """In-memory synthetic data: images uint8 (N,S,S); labels; grades int (N,13) in tw3.BONES order (0 = A);
    boxes float32 (N,13,4) pixel x0,y0,x1,y1."""

    ids: np.ndarray
    images: np.ndarray
    boneage: np.ndarray  # months, float32
    male: np.ndarray  # bool
    grades: np.ndarray
    scores: np.ndarray  # TW3-C RUS total score of the grades
    beyond_curve: np.ndarray  # bool: age at/above the TW3-C curve end (all bones final)
    boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)


def generate_one(seed: int, index: int, size: int = 512, age_range=(0.0, 18.0)):
    """(child dict, image uint8 (S,S), boxes (13,4)) of image ``index`` of ``seed``."""
    rng = _rng(seed, index)
    child = sample_child(seed, index, age_range, rng=rng)
    img, boxes = render(child, size, rng)
    return child, img, boxes


def generate(n: int, size: int = 512, seed: int = 0, age_range=(0.0, 18.0), start: int = 0) -> SynthBatch:
    """Generate images ``start .. start+n-1`` of ``seed`` in memory."""
    if size < 64:
        raise EdgeBoneageError(f"image size {size} too small: use at least 64 px")
    n = int(n)
    images = np.zeros((n, size, size), np.uint8)
    boneage = np.zeros(n, np.float32)
    male = np.zeros(n, bool)
    grades = np.zeros((n, len(tw3.BONES)), np.int64)
    scores = np.zeros(n, np.float32)
    beyond = np.zeros(n, bool)
    boxes = np.zeros((n, len(tw3.BONES), 4), np.float32)
    for j in range(n):
        child, images[j], boxes[j] = generate_one(seed, start + j, size, age_range)
        boneage[j], male[j], grades[j] = child["boneage"], child["male"], child["grades"]
        scores[j], beyond[j] = child["score"], child["beyond_curve"]
    return SynthBatch(np.arange(start, start + n), images, boneage, male, grades, scores, beyond, boxes)


def _csv_text(rows, header) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_dataset(out_dir, n: int, size: int = 512, seed: int = 0, age_range=(0.0, 18.0), overwrite: bool = False,
                  start: int = 0, progress=None) -> Path:
    """Write ``images/{id}.png``, ``labels.csv`` (id,boneage,male: RSNA training format), ``stages.csv``
    (id, male, boneage, tw3c_score, beyond_curve, 13 grades), ``boxes.csv`` (id, bone, x0, y0, x1, y1) into
    out_dir. Everything is written into a temporary folder beside out_dir that is renamed into place at the
    end, so out_dir is either absent, the previous content, or complete."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise EdgeBoneageError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "images").mkdir()
        labels, stages, boxes_rows = [], [], []
        for j in range(int(n)):
            i = start + j
            child, img, boxes = generate_one(seed, i, size, age_range)
            ok, png = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
            if not ok:
                raise EdgeBoneageError(f"{tmp / 'images' / f'{i}.png'}: PNG encoding failed")
            (tmp / "images" / f"{i}.png").write_bytes(png.tobytes())
            labels.append((i, child["boneage"], "True" if child["male"] else "False"))
            stages.append((i, int(child["male"]), child["boneage"], f"{child['score']:.0f}", int(child["beyond_curve"]),
                           *[int(g) for g in child["grades"]]))
            for b, box in zip(tw3.BONES, boxes):
                boxes_rows.append((i, b, *[f"{v:.1f}" for v in box]))
            if progress is not None:
                progress(j + 1, n)
        (tmp / "labels.csv").write_text(_csv_text(labels, ["id", "boneage", "male"]))
        (tmp / "stages.csv").write_text(
            _csv_text(stages, ["id", "male", "boneage", "tw3c_score", "beyond_curve", *tw3.BONES]))
        (tmp / "boxes.csv").write_text(_csv_text(boxes_rows, ["id", "bone", "x0", "y0", "x1", "y1"]))
        os.chmod(tmp, 0o755)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def bone_crop(image: np.ndarray, box, crop: int = 128) -> np.ndarray:
    """Square crop around a RUS region box, resized to crop x crop (cv2.INTER_AREA when shrinking);
    parts outside the image are zero."""
    x0, y0, x1, y1 = [float(v) for v in box]
    side = int(round(max(x1 - x0, y1 - y0, 2.0)))
    ox = int(round(0.5 * (x0 + x1) - side / 2))
    oy = int(round(0.5 * (y0 + y1) - side / 2))
    h, w = image.shape[:2]
    sq = np.zeros((side, side), image.dtype)
    ax0, ay0, ax1, ay1 = max(ox, 0), max(oy, 0), min(ox + side, w), min(oy + side, h)
    if ax1 > ax0 and ay1 > ay0:
        sq[ay0 - oy : ay1 - oy, ax0 - ox : ax1 - ox] = image[ay0:ay1, ax0:ax1]
    interp = cv2.INTER_AREA if side >= crop else cv2.INTER_LINEAR
    return cv2.resize(sq, (crop, crop), interpolation=interp)


def iter_bone_crops(n_images: int, size: int = 512, crop: int = 128, seed: int = 0, age_range=(0.0, 18.0),
                    start: int = 0):
    """Yield per image (crops uint8 (13, crop, crop), grades int (13,), bone index (13,), male bool):
    the 13 RUS regions of synthetic radiographs with their stage labels (0 = A .. 8 = I; ulna 0..7)."""
    if crop > 224:
        raise EdgeBoneageError(f"crop size {crop} too large: use 224 or less")
    idx = np.arange(len(tw3.BONES))
    for j in range(int(n_images)):
        child, img, boxes = generate_one(seed, start + j, size, age_range)
        crops = np.stack([bone_crop(img, b, crop) for b in boxes])
        yield crops, np.asarray(child["grades"]), idx, child["male"]




def child_at(age_years: float, male: bool, rng: np.random.Generator) -> dict:
    """A child of a given bone age and sex (for fixed-age figures), stages drawn like ``sample_child``."""
    sex = "male" if male else "female"
    grades, score, q, beyond = sample_grades(float(age_years), sex, rng)
    return {"boneage": int(round(age_years * 12)), "male": bool(male), "grades": grades, "score": score, "q": q,
            "beyond_curve": beyond}


def contact_sheet(size: int = 192, seed: int = 0, ages=range(1, 19), boxes: bool = False) -> np.ndarray:
    """Grey uint8 grid: one row per sex (male on top), one column per age, each tile labelled."""
    rows = []
    for r, male in enumerate((True, False)):
        tiles = []
        for age in ages:
            rng = _rng(seed, 1000 * (r + 1) + int(round(age * 10)))
            child = child_at(age, male, rng)
            img, bx = render(child, size, rng)
            tile = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            if boxes:
                for b in bx:
                    cv2.rectangle(tile, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255), 1)
            label = f"{'M' if male else 'F'} {age:g}y  S={child['score']:.0f}"
            fs = size / 400.0
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            cv2.rectangle(tile, (0, 0), (tw + 6, th + 8), (0, 0, 0), -1)
            cv2.putText(tile, label, (3, th + 4), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 255, 255), 1, cv2.LINE_AA)
            tiles.append(cv2.copyMakeBorder(tile, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(90, 90, 90)))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


__all__ = ["SynthBatch", "bone_crop", "child_at", "contact_sheet", "curve_end", "generate", "generate_one",
           "iter_bone_crops", "render", "sample_child", "write_dataset"]


def consistency(n: int = 2000, seed: int = 0, age_range=(0.0, 18.0)) -> dict:
    """Mean / max |score_to_age(sum of stage scores) - label| in months over n sampled children
    (the same sampler as the image generator), excluding ages at/above the curve end (reported apart)."""
    errs, beyond = [], 0
    for i in range(n):
        child = sample_child(seed, i, age_range)
        if child["beyond_curve"]:
            beyond += 1
            continue
        sex = "male" if child["male"] else "female"
        back = tw3.score_to_age(maturity_total_score(child["grades"], sex), sex) * 12.0
        errs.append(abs(back - child["boneage"]))
    errs = np.asarray(errs)
    return {
        "n": n,
        "n_in_curve": int(errs.size),
        "n_beyond_curve": beyond,
        "mean_abs_months": float(errs.mean()) if errs.size else float("nan"),
        "p95_abs_months": float(np.percentile(errs, 95)) if errs.size else float("nan"),
        "max_abs_months": float(errs.max()) if errs.size else float("nan"),
    }
