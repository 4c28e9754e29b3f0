"""edge_boneage.preprocess against independent NumPy references (area averaging, OpenCV's enlarging rule,
CLAHE with one tile, histogram equalisation) and scikit-image; letterbox geometry; PreprocessSpec round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edge_boneage.preprocess import (
    PreprocessSpec,
    clahe,
    equalize_hist,
    letterbox_offsets,
    letterbox_square,
    preprocess,
    resize_area,
    to_model_input,
)

RNG = np.random.default_rng(1234)


def _smooth(h, w, seed=0):
    """A natural-looking image (smooth blobs + noise), so averages are not all ties."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 60 + 120 * np.exp(-(((x - w * 0.45) / (w * 0.25)) ** 2 + ((y - h * 0.55) / (h * 0.3)) ** 2))
    img += 30 * np.sin(x / 7.0) * np.cos(y / 11.0) + rng.normal(0, 6, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ independent references (docs/PREPROCESSING.md)


def ref_area_integer(a: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Integer-factor shrink: exact block mean. OpenCV rounds 2x2 blocks as (sum + 2) >> 2 and every other
    block size as round-half-even(float32(sum) * float32(1 / area))."""
    h, w = a.shape[0] // fy, a.shape[1] // fx
    s = a[: h * fy, : w * fx].reshape(h, fy, w, fx).astype(np.int64).sum(axis=(1, 3))
    if fy == 2 and fx == 2:
        return ((s + 2) >> 2).astype(np.uint8)
    return np.rint(s.astype(np.float32) * np.float32(1.0 / (fy * fx))).astype(np.uint8)


def area_weights(ssize: int, dsize: int) -> np.ndarray:
    """Shrinking weights W[d, s] (OpenCV computeResizeAreaTab): output pixel d covers [d*k, (d+1)*k), k = ssize/dsize;
    each source pixel weighs (its overlap with that interval) / k."""
    k = ssize / dsize
    W = np.zeros((dsize, ssize))
    for d in range(dsize):
        lo, hi = d * k, d * k + k
        cell = min(k, ssize - lo)
        s1, s2 = math.ceil(lo), min(math.floor(hi), ssize - 1)
        s1 = min(s1, s2)
        if s1 - lo > 1e-3:
            W[d, s1 - 1] += (s1 - lo) / cell
        W[d, s1:s2] += 1.0 / cell
        if hi - s2 > 1e-3:
            W[d, s2] += min(min(hi - s2, 1.0), cell) / cell
    return W


def enlarge_weights(ssize: int, dsize: int) -> np.ndarray:
    """Enlarging weights W[d, s] of OpenCV INTER_AREA: s = floor(d * scale), f = (d + 1) - (s + 1) / scale,
    f = 0 if f <= 0 else frac(f); weights (1 - f, f) on (s, s + 1), clamped at the last pixel."""
    inv = dsize / ssize
    scale = 1.0 / inv
    W = np.zeros((dsize, ssize))
    for d in range(dsize):
        s = math.floor(d * scale)
        f = (d + 1) - (s + 1) * inv
        f = 0.0 if f <= 0 else f - math.floor(f)
        if s >= ssize - 1:
            s, f = ssize - 1, 0.0
        W[d, s] += 1.0 - f
        W[d, min(s + 1, ssize - 1)] += f
    return W


def ref_separable(a: np.ndarray, Wy: np.ndarray, Wx: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(Wy @ a.astype(np.float64) @ Wx.T + 0.5), 0, 255).astype(np.uint8)


def ref_enlarge_fixed_point(a: np.ndarray, dsize: int) -> np.ndarray:
    """OpenCV's uint8 enlarging arithmetic: 11-bit coefficients round(w * 2048), integer horizontal pass,
    vertical pass ((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2."""
    ssize = a.shape[0]
    inv = dsize / ssize
    scale = 1.0 / inv
    i0, i1, c0, c1 = (np.zeros(dsize, np.int64) for _ in range(4))
    for d in range(dsize):
        s = math.floor(d * scale)
        f = np.float32((d + 1) - (s + 1) * inv)
        f = np.float32(0) if f <= 0 else f - np.float32(math.floor(f))
        if s >= ssize - 1:
            s, f = ssize - 1, np.float32(0)
        i0[d], i1[d] = s, min(s + 1, ssize - 1)
        c0[d], c1[d] = int(np.rint((np.float32(1) - f) * 2048)), int(np.rint(f * 2048))
    A = a.astype(np.int64)
    H = A[:, i0] * c0 + A[:, i1] * c1
    v = ((c0[:, None] * (H[i0] >> 4)) >> 16) + ((c1[:, None] * (H[i1] >> 4)) >> 16) + 2 >> 2
    return np.clip(v, 0, 255).astype(np.uint8)


def ref_equalize_hist(a: np.ndarray) -> np.ndarray:
    """OpenCV equalizeHist: lut[v] = round(255 * (cdf(v) - cdf_min) / (N - cdf_min)); constant image unchanged."""
    hist = np.bincount(a.ravel(), minlength=256).astype(np.int64)
    first = int(np.argmax(hist > 0))
    total = a.size
    if hist[first] == total:
        return a.copy()
    scale = np.float32(255.0 / (total - hist[first]))
    cdf = np.cumsum(hist) - hist[first]
    lut = np.rint(cdf.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)
    lut[:first] = 0
    return lut[a]


def ref_tile_lut(a: np.ndarray, clip: float) -> np.ndarray:
    """One CLAHE tile's LUT as OpenCV computes it: clip the histogram at int(clip * N / 256), spread the excess
    evenly (remainder one by one every 256 // residual bins from bin 0), lut = round(cumsum * float32(255 / N))."""
    n = a.size
    limit = max(int(clip * n / 256), 1)
    hist = np.bincount(a.ravel(), minlength=256).astype(np.int64)
    clipped = int(np.maximum(hist - limit, 0).sum())
    hist = np.minimum(hist, limit)
    batch, residual = divmod(clipped, 256)
    hist += batch
    if residual:
        step = max(256 // residual, 1)
        for i in range(0, 256, step):
            if residual == 0:
                break
            hist[i] += 1
            residual -= 1
    return np.rint(np.cumsum(hist).astype(np.float32) * np.float32(255.0 / n)).clip(0, 255).astype(np.float32)


def ref_clahe(a: np.ndarray, clip: float, tiles_x: int, tiles_y: int) -> np.ndarray:
    """OpenCV CLAHE: pad bottom/right by reflection (BORDER_REFLECT_101) to a multiple of the grid, one LUT per
    tile, then per pixel bilinear blend (float32) of the 4 nearest tile centres' LUT values, rounded half-even."""
    h, w = a.shape
    p = np.pad(a, ((0, (-h) % tiles_y), (0, (-w) % tiles_x)), mode="reflect")
    th, tw = p.shape[0] // tiles_y, p.shape[1] // tiles_x
    luts = np.stack(
        [np.stack([ref_tile_lut(p[j * th : (j + 1) * th, i * tw : (i + 1) * tw], clip) for i in range(tiles_x)])
         for j in range(tiles_y)]
    )  # (tiles_y, tiles_x, 256)

    def axis(n, tile, count):
        f = np.arange(n, dtype=np.float32) * np.float32(1.0 / tile) - np.float32(0.5)
        lo = np.floor(f).astype(np.int64)
        frac = (f - lo.astype(np.float32)).astype(np.float32)
        return np.maximum(lo, 0), np.minimum(lo + 1, count - 1), frac, (np.float32(1) - frac).astype(np.float32)

    y1, y2, ya, ya1 = axis(h, th, tiles_y)
    x1, x2, xa, xa1 = axis(w, tw, tiles_x)
    Y1, Y2, X1, X2 = y1[:, None], y2[:, None], x1[None, :], x2[None, :]
    top = luts[Y1, X1, a] * xa1[None, :] + luts[Y1, X2, a] * xa[None, :]
    bottom = luts[Y2, X1, a] * xa1[None, :] + luts[Y2, X2, a] * xa[None, :]
    res = top * ya1[:, None] + bottom * ya[:, None]
    return np.clip(np.rint(res), 0, 255).astype(np.uint8)


def ref_clahe_one_tile(a: np.ndarray, clip: float) -> np.ndarray:
    return ref_tile_lut(a, clip).astype(np.uint8)[a]


# ------------------------------------------------------------------ letterbox


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((10, 4), (10, 0, 0, 3, 3)),  # portrait, even padding
        ((10, 5), (10, 0, 0, 2, 3)),  # portrait, odd padding: extra column on the right
        ((4, 9), (9, 2, 3, 0, 0)),  # landscape, odd padding: extra row at the bottom
        ((6, 6), (6, 0, 0, 0, 0)),  # already square
        ((1, 2), (2, 0, 1, 0, 0)),
    ],
)
def test_letterbox_geometry(shape, expected):
    assert letterbox_offsets(*shape) == expected
    a = RNG.integers(1, 256, shape, dtype=np.uint8)  # no zeros inside, so padding is identifiable
    out = letterbox_square(a)
    side, top, bottom, left, right = expected
    assert out.shape == (side, side) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[top : side - bottom, left : side - right], a)
    assert (out == 0).sum() == side * side - a.size


def test_letterbox_pad_value_and_channels():
    a = np.full((3, 8, 2), 9, np.uint16)
    out = letterbox_square(a, pad_value=7)
    assert out.shape == (8, 8, 2) and out.dtype == np.uint16
    assert (out[:2] == 7).all() and (out[2:5] == 9).all() and (out[5:] == 7).all()


# ------------------------------------------------------------------ resize


@pytest.mark.parametrize("factor", [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (8, 8), (2, 3), (4, 1)])
def test_resize_area_integer_factor_exact(factor):
    fy, fx = factor
    h, w = 9, 7
    for seed in range(3):
        a = np.random.default_rng(seed).integers(0, 256, (h * fy, w * fx), dtype=np.uint8)
        np.testing.assert_array_equal(resize_area(a, (h, w)), ref_area_integer(a, fy, fx))
    s = _smooth(h * fy, w * fx)
    np.testing.assert_array_equal(resize_area(s, (h, w)), ref_area_integer(s, fy, fx))


@pytest.mark.parametrize("src, dst", [(10, 7), (100, 64), (123, 50), (517, 224), (5, 3), (2044, 224)])
def test_resize_area_non_integer_shrink_within_one(src, dst):
    a = _smooth(src, src, seed=src) if src > 20 else RNG.integers(0, 256, (src, src), dtype=np.uint8)
    out = resize_area(a, dst)
    W = area_weights(src, dst)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-9)
    ref = ref_separable(a, W, W)
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert out.shape == (dst, dst) and diff.max() <= 1
    assert (diff == 0).mean() > 0.9


@pytest.mark.parametrize("src, dst", [(100, 224), (100, 128), (3, 7), (64, 65), (50, 224)])
def test_resize_area_enlarging_rule(src, dst):
    a = RNG.integers(0, 256, (src, src), dtype=np.uint8)
    out = resize_area(a, dst)
    W = enlarge_weights(src, dst)
    diff = np.abs(out.astype(int) - ref_separable(a, W, W).astype(int))
    assert diff.max() <= 1
    # OpenCV's fixed-point arithmetic reproduced exactly (what a Java/JS port should implement)
    np.testing.assert_array_equal(out, ref_enlarge_fixed_point(a, dst))
    # enlarging is replication with one-pixel linear transitions: most output pixels equal a source pixel
    if dst >= 2 * src:
        assert (W.max(axis=1) == 1.0).mean() > 0.2


def test_resize_worked_example_from_docs():
    # docs/PREPROCESSING.md: 5 -> 3 pixels, weights (0.6, 0.4), (0.2, 0.6, 0.2), (0.4, 0.6)
    W = area_weights(5, 3)
    np.testing.assert_allclose(W, [[0.6, 0.4, 0, 0, 0], [0, 0.2, 0.6, 0.2, 0], [0, 0, 0, 0.4, 0.6]], atol=1e-12)
    row = np.array([[0, 100, 200, 50, 250]], np.uint8).repeat(5, axis=0)
    out = resize_area(row, 3)
    # 0.6*0+0.4*100 = 40; 0.2*100+0.6*200+0.2*50 = 150; 0.4*50+0.6*250 = 170
    np.testing.assert_array_equal(out, np.array([[40, 150, 170]] * 3, np.uint8))
    # enlarging 3 -> 7 (docs): weights rows 2 and 4 blend, the rest copy
    np.testing.assert_allclose(enlarge_weights(3, 7)[2], [1 / 3, 2 / 3, 0], atol=1e-12)
    up = resize_area(np.array([[0, 90, 180]] * 3, np.uint8), 7)
    np.testing.assert_array_equal(up[0], [0, 0, 60, 90, 120, 180, 180])


# ------------------------------------------------------------------ enhancement


def test_equalize_hist_matches_numpy_reference_and_skimage():
    a = (_smooth(64, 48).astype(np.float32) * 0.4 + 60).astype(np.uint8)  # low contrast
    out = equalize_hist(a)
    np.testing.assert_array_equal(out, ref_equalize_hist(a))
    assert out.min() == 0 and out.max() == 255 and out.std() > 2 * a.std()
    exposure = pytest.importorskip("skimage.exposure")
    sk = exposure.equalize_hist(a, nbins=256) * 255
    assert np.corrcoef(sk.ravel(), out.ravel())[0, 1] > 0.99
    assert np.abs(sk - out).mean() < 3


def test_clahe_one_tile_matches_numpy_reference():
    a = _smooth(40, 52, seed=3)
    for clip in (1.0, 2.0, 4.0, 40.0):
        np.testing.assert_array_equal(clahe(a, clip, (1, 1)), ref_clahe_one_tile(a, clip))


@pytest.mark.parametrize("shape, tiles, clip", [((64, 64), 8, 2.0), ((48, 40), 4, 2.0), ((50, 45), 4, 3.0), ((224, 224), 8, 2.0)])
def test_clahe_multi_tile_matches_numpy_reference(shape, tiles, clip):
    a = (_smooth(*shape, seed=shape[0]).astype(np.float32) * 0.5 + 50).astype(np.uint8)
    np.testing.assert_array_equal(clahe(a, clip, (tiles, tiles)), ref_clahe(a, clip, tiles, tiles))


def test_clahe_properties_vs_skimage():
    a = (_smooth(128, 96, seed=5).astype(np.float32) * 0.3 + 80).astype(np.uint8)
    out = clahe(a, 2.0, (8, 8))
    assert out.shape == a.shape and out.dtype == np.uint8
    assert out.std() > 1.5 * a.std()  # contrast is raised
    stronger = clahe(a, 8.0, (8, 8))
    assert stronger.std() > out.std()  # a higher clip limit allows more contrast
    const = np.full((32, 32), 77, np.uint8)
    assert len(np.unique(clahe(const))) == 1
    exposure = pytest.importorskip("skimage.exposure")
    sk = exposure.equalize_adapthist(a, kernel_size=(16, 12), clip_limit=0.02, nbins=256) * 255
    assert np.corrcoef(sk.ravel(), out.ravel())[0, 1] > 0.8  # same idea, different clipping semantics


# ------------------------------------------------------------------ pipeline and spec


def test_preprocess_pipeline_is_letterbox_then_resize_then_enhance():
    a = _smooth(90, 60, seed=7)
    out = preprocess(a, 32)
    assert out.shape == (32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, resize_area(letterbox_square(a), 32))
    np.testing.assert_array_equal(preprocess(a, 32, "hist"), equalize_hist(out))
    np.testing.assert_array_equal(preprocess(a, 32, "clahe"), clahe(out, 2.0, (8, 8)))
    # padding columns (15 left, 15 right of 90) are 0 after shrinking 90 -> 32 except the blended edge columns
    assert (out[:, :4] == 0).all() and (out[:, -4:] == 0).all()
    batch = to_model_input(out)
    assert batch.shape == (1, 32, 32, 1) and batch.dtype == np.uint8
    with pytest.raises(ValueError, match="uint8"):
        preprocess(a.astype(np.float32), 32)
    with pytest.raises(ValueError, match="enhance"):
        preprocess(a, 32, "sharpen")


def test_preprocess_real_rsna_images(rsna_dir):
    from edge_boneage.io import read_image

    img, _ = read_image(rsna_dir / "img100" / "1378.png")
    out = preprocess(img, 224)  # enlarging path
    assert out.shape == (224, 224)
    np.testing.assert_array_equal(out, ref_enlarge_fixed_point(img, 224))
    full = next(iter(sorted((rsna_dir / "fullres").glob("*.png"))))
    big, _ = read_image(full)
    out = preprocess(big, 128, "clahe")
    assert out.shape == (128, 128) and out.std() > 10


def test_spec_round_trip_and_validation():
    spec = PreprocessSpec(input_size=224, enhance="clahe", clahe_clip=3.0, clahe_tiles=(4, 4), extra={"note": "x"})
    d = spec.to_dict()
    assert d["input_size"] == 224 and d["dtype"] == "uint8" and d["channels"] == 1 and d["value_range"] == [0, 255]
    assert d["letterbox"] == "centre-pad-extra-bottom-right" and d["resize"] == "cv2.INTER_AREA"
    again = PreprocessSpec.from_dict(json.loads(json.dumps(d)))
    assert again == spec
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    a = _smooth(50, 40)
    np.testing.assert_array_equal(spec.apply(a), preprocess(a, 224, "clahe", clip=3.0, tiles=(4, 4)))
    assert PreprocessSpec.from_dict({"input_size": 96}).enhance is None
    with pytest.raises(ValueError, match="unknown keys"):
        PreprocessSpec.from_dict({**d, "mean": 0.5})
    with pytest.raises(ValueError, match="version"):
        PreprocessSpec.from_dict({**d, "version": 99})
    with pytest.raises(ValueError, match="enhance"):
        PreprocessSpec(input_size=10, enhance="gamma")
    with pytest.raises(ValueError, match="uint8"):
        PreprocessSpec(input_size=10, dtype="float32")


def test_source_size_resizes_the_frame_first_and_reports_the_box_in_image_pixels():
    """source_size (contract v3): the frame is resized to the training images' square (cv2.INTER_AREA) before the
    hand crop, so a full-resolution film reaches the crop as the 100x100 set's films did; an image already of that
    size is unchanged; without it the record is the version-2 one, byte for byte."""
    import cv2

    from edge_boneage.preprocess import PreprocessSpec

    rng = np.random.default_rng(0)
    big = np.zeros((400, 300), np.uint8)
    big[80:330, 60:240] = 180
    big = cv2.GaussianBlur(big, (9, 9), 0) + rng.integers(0, 20, big.shape, dtype=np.uint8)
    s3 = PreprocessSpec(input_size=64, frame="squeeze", crop="hand", source_size=100)
    s2 = PreprocessSpec(input_size=64, frame="squeeze", crop="hand")
    assert s3.version == 3 and s2.version == 2 and "source_size" not in s2.to_dict()
    assert PreprocessSpec.from_json(s3.to_json()) == s3 and PreprocessSpec.from_json(s2.to_json()) == s2
    small = cv2.resize(big, (100, 100), interpolation=cv2.INTER_AREA)
    x_big, box_big = s3.apply_with_box(big)
    x_small, box_small = s2.apply_with_box(small)
    np.testing.assert_array_equal(x_big, x_small)  # the same pixels as the 100x100 image itself
    np.testing.assert_array_equal(s3.apply(small), x_small)
    assert box_big["x0"] == pytest.approx(box_small["x0"] * 3, abs=0.01)
    assert box_big["h"] == pytest.approx(box_small["h"] * 4, abs=0.01)
    with pytest.raises(ValueError, match="needs spec version 3"):
        PreprocessSpec(input_size=64, source_size=100, version=2)
    with pytest.raises(ValueError, match=">= 16"):
        PreprocessSpec(input_size=64, source_size=8)
