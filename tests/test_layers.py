"""Custom layers vs independent references (scikit-image, exact integer LBP, NumPy), in Keras and in float LiteRT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
skfeature = pytest.importorskip("skimage.feature")

from edge_boneage.convert.export import export_litert  # noqa: E402
from edge_boneage.convert.litert import non_builtin_ops  # noqa: E402
from edge_boneage.runtime import LiteRTModel  # noqa: E402
from keras_models.layers import (  # noqa: E402
    BONE_AGE_CLASS_CENTRES_MONTHS,
    AffineGridSampler,
    LocalBinaryPattern,
    SoftmaxExpectation,
    SqueezeExcite,
)

REPO = Path(__file__).resolve().parents[1]
METHODS = ("default", "ror")


# ---------------------------------------------------------------------------------------------------------------
# references


def skimage_lbp(img: np.ndarray, method: str) -> np.ndarray:
    return skfeature.local_binary_pattern(img.astype(np.uint8), 8, 1, method)


def exact_lbp(img: np.ndarray, method: str) -> np.ndarray:
    """LBP in exact integer arithmetic with skimage's rounded coordinates (w = 0.70711, u = 0.29289 as 70711, 29289
    per 100000), zero outside the image. Equals skimage except where skimage's float64 rounding breaks exact ties."""
    w, u = 70711, 29289
    p = np.pad(img.astype(np.int64), 1)
    H, W = img.shape

    def px(dy, dx):
        return p[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W]

    centre = px(0, 0) * 10**10
    neigh = [  # (row, col) offsets of neighbour k = 0..7: skimage's (-sin, cos) order
        px(0, 1) * 10**10,
        w * u * px(-1, 0) + w * w * px(-1, 1) + u * u * px(0, 0) + u * w * px(0, 1),
        px(-1, 0) * 10**10,
        w * w * px(-1, -1) + w * u * px(-1, 0) + u * w * px(0, -1) + u * u * px(0, 0),
        px(0, -1) * 10**10,
        w * u * px(0, -1) + u * u * px(0, 0) + w * w * px(1, -1) + u * w * px(1, 0),
        px(1, 0) * 10**10,
        u * u * px(0, 0) + u * w * px(0, 1) + w * u * px(1, 0) + w * w * px(1, 1),
    ]
    code = sum((n >= centre).astype(np.int64) << k for k, n in enumerate(neigh))
    if method == "ror":
        rots = [((code >> j) | (code << (8 - j))) & 255 for j in range(8)]
        code = np.min(rots, axis=0)
    return code.astype(np.float64)


def skimage_float64_neighbour_diff(img: np.ndarray, r: int, c: int, k: int) -> float:
    """skimage's own float64 arithmetic (bilinear_interpolation, mode 'C') for neighbour k of pixel (r, c), minus
    the centre: shows that skimage's rounding, not the layer, decides an exact tie."""
    rp = np.round(-np.sin(2 * np.pi * np.arange(8) / 8), 5)
    cp = np.round(np.cos(2 * np.pi * np.arange(8) / 8), 5)
    y, x = r + rp[k], c + cp[k]
    y0, x0, y1, x1 = int(np.floor(y)), int(np.floor(x)), int(np.ceil(y)), int(np.ceil(x))
    dy, dx = y - y0, x - x0

    def get(a, b):
        return float(img[a, b]) if 0 <= a < img.shape[0] and 0 <= b < img.shape[1] else 0.0

    top = (1 - dx) * get(y0, x0) + dx * get(y0, x1)
    bottom = (1 - dx) * get(y1, x0) + dx * get(y1, x1)
    return (1 - dy) * top + dy * bottom - float(img[r, c])


def numpy_affine_sample(features, theta, out_hw, align_corners=False):
    """Plain loops: bilinear grid sampling with zero padding (PyTorch grid_sample semantics)."""
    B, H, W, C = features.shape
    N = theta.shape[1]
    h, w = out_hw
    out = np.zeros((B, N, h, w, C), np.float64)
    for b in range(B):
        for n in range(N):
            a11, a12, tx, a21, a22, ty = theta[b, n].astype(np.float64)
            for i in range(h):
                for j in range(w):
                    if align_corners:
                        xn = -1.0 + 2.0 * j / (w - 1) if w > 1 else 0.0
                        yn = -1.0 + 2.0 * i / (h - 1) if h > 1 else 0.0
                    else:
                        xn, yn = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
                    xi, yi = a11 * xn + a12 * yn + tx, a21 * xn + a22 * yn + ty
                    if align_corners:
                        x, y = (xi + 1) * (W - 1) / 2, (yi + 1) * (H - 1) / 2
                    else:
                        x, y = ((xi + 1) * W - 1) / 2, ((yi + 1) * H - 1) / 2
                    x0, y0 = int(np.floor(x)), int(np.floor(y))
                    for yy in (y0, y0 + 1):
                        for xx in (x0, x0 + 1):
                            if 0 <= yy < H and 0 <= xx < W:
                                wt = (1 - abs(x - xx)) * (1 - abs(y - yy))
                                out[b, n, i, j] += wt * features[b, yy, xx]
    return out


def numpy_squeeze_excite(x, k1, b1, k2, b2, activation):
    s = x.astype(np.float64).mean(axis=(1, 2))
    s = np.maximum(s @ k1 + b1, 0) @ k2 + b2
    g = np.clip(s + 3, 0, 6) / 6 if activation == "hard_sigmoid" else 1 / (1 + np.exp(-s))
    return x * g[:, None, None, :]


# ---------------------------------------------------------------------------------------------------------------
# test images


def near_tie_image(seed=0, size=48) -> np.ndarray:
    """3x3 patterns whose diagonal neighbour differs from the centre by the smallest non-zero amounts possible
    (|w*b + u*a| minimal: b = D - C, a = A + B - 2C), both signs, at every diagonal and random positions."""
    rng = np.random.default_rng(seed)
    w, u = 0.70711, 0.29289
    cands = []
    for a in range(-300, 301):
        a1 = a // 2
        for b in range(-255, 256):
            v = w * b + u * a
            lo, hi = max(0, -b, -a1, -(a - a1)), min(255, 255 - b, 255 - a1, 255 - (a - a1))
            if v != 0 and abs(v) < 0.05 and lo <= hi:
                cands.append((abs(v), a, b, lo, hi))
    cands.sort()
    img = rng.integers(0, 256, (size, size)).astype(np.int64)
    placed = 0
    for r in range(1, size - 1, 3):
        for c in range(1, size - 1, 3):
            _, a, b, lo, hi = cands[placed % 40]
            sy, sx = [(-1, 1), (-1, -1), (1, -1), (1, 1)][placed % 4]
            a1 = a // 2
            C = int(rng.integers(lo, hi + 1))
            img[r, c], img[r + sy, c + sx], img[r + sy, c], img[r, c + sx] = C, C + b, C + a1, C + a - a1
            placed += 1
    assert placed > 100
    return img.astype(np.uint8)


def crafted_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    r, c = np.mgrid[0:40, 0:40]
    imgs = {f"flat_{v}": np.full((9, 11), v, np.uint8) for v in (0, 1, 128, 254, 255)}
    imgs["two_levels_100_101"] = rng.integers(100, 102, (40, 40)).astype(np.uint8)
    imgs["three_levels_0_2"] = rng.integers(0, 3, (40, 40)).astype(np.uint8)  # near-ties with the zero border too
    imgs["three_levels_0_2"][:, :2] = 1  # (columns 0-1 hold exact ties that skimage's float64 rounding breaks)
    imgs["three_levels_254_255"] = rng.integers(253, 256, (40, 40)).astype(np.uint8)
    imgs["ramp_diagonal"] = (r + c + 10).astype(np.uint8)  # exact ties on the 45 degree isolines
    imgs["ramp_antidiagonal"] = (r - c + 100).astype(np.uint8)
    imgs["near_ties"] = near_tie_image(0)
    imgs["near_ties_2"] = near_tie_image(1, 40)
    return imgs


def random_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    shapes = [(1, 1), (1, 7), (3, 3), (2, 5), (17, 23), (64, 64)]
    return {f"random_{h}x{w}": rng.integers(0, 256, (h, w)).astype(np.uint8) for h, w in shapes}


def natural_images() -> dict[str, np.ndarray]:
    from skimage import data

    return {"camera": data.camera(), "coins": data.coins(), "moon": data.moon()}


def letterbox(a: np.ndarray, size: int) -> np.ndarray:
    """The model-input contract: centre on a zero square, resize with cv2.INTER_AREA."""
    import cv2

    h, w = a.shape
    m = max(h, w)
    sq = np.zeros((m, m), np.uint8)
    sq[(m - h) // 2 : (m - h) // 2 + h, (m - w) // 2 : (m - w) // 2 + w] = a
    return cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)


def rsna_images(rsna_dir: Path, n: int = 4, n_full: int = 2, size: int = 512) -> dict[str, np.ndarray]:
    """A few 100x100 images and full-resolution radiographs letterboxed to the model input size."""
    from PIL import Image

    files = sorted((rsna_dir / "img100").glob("*.png"))[:n]
    imgs = {f"rsna_{f.stem}": np.asarray(Image.open(f).convert("L")) for f in files}
    for f in sorted((rsna_dir / "fullres").glob("*.png"))[:n_full]:
        imgs[f"rsna_full_{f.stem}_{size}"] = letterbox(np.asarray(Image.open(f).convert("L")), size)
    return imgs


# ---------------------------------------------------------------------------------------------------------------
# LBP


def lbp_keras(img: np.ndarray, method: str) -> np.ndarray:
    return np.asarray(LocalBinaryPattern(method)(img[None, :, :, None].astype("float32")))[0, :, :, 0]


@pytest.fixture(scope="module")
def lbp_litert(tmp_path_factory):
    image = keras.Input((None, None, 1), name="image", dtype="uint8")
    outs = {m: LocalBinaryPattern(m, name=f"lbp_{m}")(image) for m in METHODS}
    path = export_litert(keras.Model(image, outs), tmp_path_factory.mktemp("lbp") / "lbp.tflite")
    assert non_builtin_ops(path) == []
    model = LiteRTModel(path)

    def run(img):
        return {m: v[0, :, :, 0] for m, v in model(image=img[None, :, :, None]).items()}

    return run


def test_exact_reference_agrees_with_skimage_on_natural_and_random():
    for name, img in {**natural_images(), **random_images()}.items():
        for m in METHODS:
            assert np.array_equal(exact_lbp(img, m), skimage_lbp(img, m)), (name, m)


@pytest.mark.parametrize("method", METHODS)
def test_lbp_matches_skimage_keras_and_litert(method, lbp_litert):
    imgs = {**natural_images(), **random_images(), **crafted_images()}
    for name, img in imgs.items():
        ref = skimage_lbp(img, method)
        assert np.array_equal(lbp_keras(img, method), ref), f"keras {method} {name}"
        assert np.array_equal(lbp_litert(img)[method], ref), f"litert {method} {name}"


def test_lbp_matches_skimage_on_rsna(rsna_dir, lbp_litert):
    for name, img in rsna_images(rsna_dir).items():
        for m in METHODS:
            ref = skimage_lbp(img, m)
            assert np.array_equal(lbp_keras(img, m), ref), f"keras {m} {name}"
            assert np.array_equal(lbp_litert(img)[m], ref), f"litert {m} {name}"


def test_lbp_exact_structural_ties_are_position_independent(lbp_litert):
    """Patterns that tie exactly in real arithmetic (D = C, A + B = 2C, A != B) are a tie in the layer at every
    position; skimage's float64 rounding turns some of them into 'smaller' depending on the pixel's row/column."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (60, 60)).astype(np.int64)
    for r in range(1, 59, 3):
        for c in range(1, 59, 3):
            C = int(rng.integers(60, 196))
            d = int(rng.integers(1, 60))
            img[r, c], img[r - 1, c + 1], img[r - 1, c], img[r, c + 1] = C, C, C + d, C - d
    img = img.astype(np.uint8)
    for m in METHODS:
        ref = exact_lbp(img, m)
        assert np.array_equal(lbp_keras(img, m), ref)
        assert np.array_equal(lbp_litert(img)[m], ref)


def test_skimage_only_disagrees_on_exact_ties_it_rounds_below_zero(lbp_litert):
    """Values 0..2 everywhere: many exact ties (D = C, A + B = 2C). The layer equals the exact reference on every
    pixel; skimage differs on a few, each time because its float64 value for an exact tie came out at -1e-14."""
    img = np.random.default_rng(8).integers(0, 3, (40, 40)).astype(np.uint8)
    for m in METHODS:
        exact = exact_lbp(img, m)
        assert np.array_equal(lbp_keras(img, m), exact)
        assert np.array_equal(lbp_litert(img)[m], exact)
    sk, exact = skimage_lbp(img, "default").astype(int), exact_lbp(img, "default").astype(int)
    bad = np.argwhere(sk != exact)
    assert 0 < len(bad) < 0.01 * img.size
    for r, c in bad:
        for k in np.flatnonzero([((sk[r, c] ^ exact[r, c]) >> k) & 1 for k in range(8)]):
            assert -1e-12 < skimage_float64_neighbour_diff(img, r, c, k) < 0


def test_lbp_full_resolution_differences_are_skimage_tie_rounding(rsna_dir):
    """Beyond ~511 px, skimage's float64 sample offsets (r - 0.70711 etc.) differ in their last bits between rows
    and columns, so it breaks about half of the exact ties (D = C, A + B = 2C, A != B) of smooth radiographs. The
    layer equals the exact reference everywhere; every skimage difference is such a tie rounded to about -1e-13."""
    from PIL import Image

    f = sorted((rsna_dir / "fullres").glob("*.png"))[0]
    img = np.asarray(Image.open(f).convert("L"))[:1100, :700]  # rows >= 1025 sit in another float64 class
    exact = exact_lbp(img, "default").astype(int)
    assert np.array_equal(lbp_keras(img, "default"), exact)
    sk = skimage_lbp(img, "default").astype(int)
    bad = np.argwhere(sk != exact)
    assert len(bad) > 0
    for r, c in bad[:: max(1, len(bad) // 200)]:
        for k in np.flatnonzero([((sk[r, c] ^ exact[r, c]) >> k) & 1 for k in range(8)]):
            assert k % 2 == 1 and -1e-12 < skimage_float64_neighbour_diff(img, r, c, k) < 0


def test_lbp_tolerance_matters():
    """A strict >= 0 (tolerance 0) breaks exact ties in float32; 1e-3 is above the smallest real difference."""
    for tol, img in ((0.0, natural_images()["camera"]), (1e-3, crafted_images()["near_ties"])):
        out = np.asarray(LocalBinaryPattern("default", tolerance=tol)(img[None, :, :, None].astype("float32")))
        assert (out[0, :, :, 0] == skimage_lbp(img, "default")).mean() < 0.999, tol


def test_lbp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        LocalBinaryPattern("uniform")
    with pytest.raises(ValueError, match="1 channel"):
        LocalBinaryPattern()(np.zeros((1, 4, 4, 3), "float32"))


# ---------------------------------------------------------------------------------------------------------------
# AffineGridSampler

THETAS = np.array(
    [
        [[1, 0, 0, 0, 1, 0], [0.5, 0, 0, 0, 0.5, 0], [1, 0, 0.25, 0, 1, -0.125]],  # identity, 2x zoom, shift
        [[0.6, -0.3, 0.2, 0.25, 0.7, -0.1], [1.3, 0.2, 0.4, -0.2, 1.1, 0.5], [0.3, 0, -0.9, 0, 0.3, 0.9]],
    ],
    np.float32,
)


def sampler_case(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, 16, 20, 3)).astype("float32"), THETAS


@pytest.mark.parametrize("align_corners", [False, True])
def test_sampler_matches_numpy_keras(align_corners):
    f, th = sampler_case()
    out = np.asarray(AffineGridSampler((12, 10), align_corners=align_corners)([f, th]))
    ref = numpy_affine_sample(f, th, (12, 10), align_corners)
    assert out.shape == (2, 3, 12, 10, 3)
    np.testing.assert_allclose(out, ref, atol=2e-5)
    assert np.abs(ref[1, 1]).max() > 0 and (ref[1, 2] == 0).mean() > 0.2  # partly outside -> zeros


@pytest.mark.parametrize("align_corners", [False, True])
def test_sampler_identity_reproduces_input(align_corners):
    f, _ = sampler_case(1)
    th = np.tile(np.array([1, 0, 0, 0, 1, 0], np.float32), (2, 1, 1))
    out = np.asarray(AffineGridSampler((16, 20), align_corners=align_corners)([f, th]))
    np.testing.assert_allclose(out[:, 0], f, atol=1e-5)


def test_sampler_translation_by_whole_pixels_shifts_and_zero_fills():
    f, _ = sampler_case(2)
    th = np.array([[[1, 0, 2 * 3 / 20, 0, 1, -2 * 2 / 16]]] * 2, np.float32)  # 3 px right, 2 px up
    out = np.asarray(AffineGridSampler((16, 20))([f, th]))[:, 0]
    expect = np.zeros_like(f)
    expect[:, 2:, :17] = f[:, :14, 3:]
    np.testing.assert_allclose(out, expect, atol=1e-5)


def test_sampler_litert_matches_numpy(tmp_path):
    f, th = sampler_case(3)
    feats = keras.Input((16, 20, 3), name="features")
    theta = keras.Input((3, 6), name="theta")
    model = keras.Model({"features": feats, "theta": theta}, AffineGridSampler((12, 10))([feats, theta]))
    path = export_litert(model, tmp_path / "sampler.tflite")
    assert non_builtin_ops(path) == []
    (out,) = LiteRTModel(path)(features=f, theta=th).values()
    np.testing.assert_allclose(out, numpy_affine_sample(f, th, (12, 10)), atol=2e-5)


# ---------------------------------------------------------------------------------------------------------------
# SqueezeExcite / SoftmaxExpectation


def se_model(activation):
    x = keras.Input((6, 7, 16), name="x")
    se = SqueezeExcite(0.25, activation, name="se")
    model = keras.Model(x, se(x))
    rng = np.random.default_rng(4)
    se.set_weights([rng.normal(0, 0.8, size=w.shape).astype("float32") for w in se.get_weights()])
    return model, se


@pytest.mark.parametrize("activation", ["hard_sigmoid", "sigmoid"])
def test_squeeze_excite_keras_and_litert(activation, tmp_path):
    model, se = se_model(activation)
    assert se.units == 4
    x = np.random.default_rng(5).normal(0, 2, size=(3, 6, 7, 16)).astype("float32")
    ref = numpy_squeeze_excite(x, *se.get_weights(), activation)
    gate = ref / x
    assert gate.min() < 0.05 and gate.max() > 0.95  # gate exercised near both ends
    np.testing.assert_allclose(np.asarray(model(x)), ref, atol=1e-5)
    path = export_litert(model, tmp_path / "se.tflite")
    (out,) = LiteRTModel(path)(x=x).values()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_squeeze_excite_divisor_rounds_like_mobilenetv3():
    se = SqueezeExcite(0.25, divisor=8)
    se.build((None, 4, 4, 72))
    assert se.units == 24  # keras MobileNetV3: _depth(72 * 0.25) = 24
    se = SqueezeExcite(0.25, divisor=8)
    se.build((None, 4, 4, 16))
    assert se.units == 8


def test_softmax_expectation_keras_and_litert(tmp_path):
    assert BONE_AGE_CLASS_CENTRES_MONTHS[:2] == [6.0, 18.0] and BONE_AGE_CLASS_CENTRES_MONTHS[-1] == 222.0
    logits = np.random.default_rng(6).normal(0, 3, size=(5, 19))
    p = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
    ref = p.astype(np.float64) @ (12.0 * np.arange(19) + 6.0)
    probs = keras.Input((19,), name="probs")
    model = keras.Model(probs, SoftmaxExpectation(name="age")(probs))
    np.testing.assert_allclose(np.asarray(model(p))[:, 0], ref, rtol=1e-6, atol=1e-4)
    path = export_litert(model, tmp_path / "exp.tflite")
    (out,) = LiteRTModel(path)(probs=p).values()
    np.testing.assert_allclose(out[:, 0], ref, rtol=1e-6, atol=1e-4)
    one_hot = np.eye(19, dtype="float32")[[0, 18]]
    assert np.asarray(SoftmaxExpectation()(one_hot))[:, 0].tolist() == [6.0, 222.0]
    years = SoftmaxExpectation(centres=list(range(1, 20)))  # the paper's [1..19]
    assert np.asarray(years(one_hot))[:, 0].tolist() == [1.0, 19.0]
    with pytest.raises(ValueError, match="19 centres"):
        SoftmaxExpectation()(np.zeros((1, 5), "float32"))


# ---------------------------------------------------------------------------------------------------------------
# serialisation and the JAX backend


def all_layers_model():
    image = keras.Input((12, 12, 1), name="image")
    theta = keras.Input((2, 6), name="theta")
    lbp = LocalBinaryPattern("ror")(image)
    crops = AffineGridSampler((6, 6))([lbp, theta])
    feat = keras.layers.Reshape((6, 12, 1))(crops)
    feat = SqueezeExcite(0.5, "sigmoid")(keras.layers.Conv2D(4, 1)(feat))
    probs = keras.layers.Dense(19, activation="softmax")(keras.layers.Flatten()(feat))
    return keras.Model({"image": image, "theta": theta}, SoftmaxExpectation()(probs))


def all_layers_inputs():
    rng = np.random.default_rng(7)
    return {"image": rng.integers(0, 256, (2, 12, 12, 1)).astype("float32"),
            "theta": np.tile(THETAS[0, :2], (2, 1, 1))}


def test_save_load_roundtrip(tmp_path):
    keras.utils.set_random_seed(0)
    model = all_layers_model()
    x = all_layers_inputs()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


_JAX_CHILD = r"""
import json, sys, numpy as np, keras
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
from test_layers import *
assert keras.backend.backend() == "jax"
from skimage import data
img = data.camera()[:128, :128]
ok = {m: bool(np.array_equal(lbp_keras(img, m), skimage_lbp(img, m))) for m in METHODS}
f, th = sampler_case()
err = float(np.abs(np.asarray(AffineGridSampler((12, 10))([f, th])) - numpy_affine_sample(f, th, (12, 10))).max())
model = keras.models.load_model(sys.argv[2])
out = np.asarray(model(all_layers_inputs())).tolist()
print(json.dumps({"lbp": ok, "sampler_err": err, "model_out": out}))
"""


def test_layers_run_under_jax(tmp_path):
    pytest.importorskip("jax")
    keras.utils.set_random_seed(0)
    model = all_layers_model()
    model.save(tmp_path / "m.keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _JAX_CHILD, str(REPO), str(tmp_path / "m.keras")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["lbp"] == {"default": True, "ror": True}
    assert res["sampler_err"] < 2e-5
    np.testing.assert_allclose(res["model_out"], np.asarray(model(all_layers_inputs())), rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# SplitGroupConv2D (grouped convolution written per group for ONNX export)


def _numpy_grouped_conv(x, k, b, groups, stride, padding):
    """Direct loop: NHWC input, HWIO kernel (I = C_in / groups), 'valid' or 'same' (TF's asymmetric padding)."""
    n, h, w, c = x.shape
    kh, kw, ci, co = k.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((n, oh, ow, co))
    per = co // groups
    for g in range(groups):
        xs = x[..., g * ci:(g + 1) * ci]
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
                y[:, i, j, g * per:(g + 1) * per] = np.einsum("nhwc,hwco->no", patch, k[..., g * per:(g + 1) * per])
    return y + b


@pytest.mark.parametrize("padding,stride", [("valid", 1), ("same", 2)])
def test_split_group_conv_matches_numpy_keras_grouped_conv_and_litert(padding, stride, tmp_path):
    import keras

    from keras_models.layers import SplitGroupConv2D

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 9, 9, 6)).astype(np.float32)
    inp = keras.Input((9, 9, 6), name="x")
    ref_layer = keras.layers.Conv2D(9, 3, strides=stride, padding=padding, groups=3)
    ref = keras.Model(inp, ref_layer(inp))
    ref_layer.set_weights([rng.normal(size=(3, 3, 2, 9)).astype(np.float32), rng.normal(size=9).astype(np.float32)])
    layer = SplitGroupConv2D(9, 3, strides=stride, padding=padding, groups=3)
    model = keras.Model(inp, layer(inp))
    layer.set_weights(ref_layer.get_weights())
    k, b = ref_layer.get_weights()
    want = _numpy_grouped_conv(x.astype(np.float64), k.astype(np.float64), b, 3, stride, padding)
    got = np.asarray(model(x))
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got, np.asarray(ref(x)), atol=1e-4)
    again = SplitGroupConv2D.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    path = export_litert(model, tmp_path / "gconv.tflite")
    assert not non_builtin_ops(path)
    (out,) = LiteRTModel(path)(x=x[:1]).values()
    np.testing.assert_allclose(out, want[:1], atol=1e-4)
