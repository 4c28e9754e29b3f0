"""The phone demo (android_demo/): browser page in headless Chromium vs Python, Java core on the JVM, the APK.

Needs Chromium and chromedriver (scripts/install_chromium.sh) with selenium (the dev extra), the npm registry once
(android_demo/fetch_litertjs.sh) and the Android toolchain (scripts/install_android_toolchain.sh); each test skips
with the reason when its tool is missing.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "android_demo"
sys.path.insert(0, str(DEMO))

import browser  # noqa: E402  (android_demo/browser.py)

ANDROID_JAR = Path("/usr/lib/android-sdk/platforms/android-23/android.jar")
AGE_TOL = 0.01  # months, float model, LiteRT.js (WASM) vs ai-edge-litert


def _need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (bash scripts/install_android_toolchain.sh)")


def _need_browser():
    """Skip when headless Chromium cannot be driven here: chromium, chromedriver or selenium missing."""
    reason = browser.missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def litertjs():
    if not (DEMO / "web/vendor/litertjs/VERSION").is_file():
        _need("npm")
        proc = subprocess.run(["bash", str(DEMO / "fetch_litertjs.sh")], capture_output=True, text=True, timeout=300)
        if proc.returncode:
            pytest.skip(f"cannot fetch LiteRT.js from npm: {proc.stderr.strip()[-300:]}")
    return DEMO / "web/vendor/litertjs"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from demo_models import export_mobilenet, export_tiny

    from edge_boneage.preprocess import PreprocessSpec
    from edge_boneage.pretrained import default_model_path

    d = tmp_path_factory.mktemp("models")
    out = {"tiny64": export_tiny(d / "tiny64.tflite", 64),
           "tiny96_clahe": export_tiny(d / "tiny96_clahe.tflite", 96, enhance="clahe", seed=1),
           "mobilenet64": export_mobilenet(d / "mobilenet64.tflite", 64, alpha=0.35),
           "packaged_rsna": Path(shutil.copy(default_model_path(), d / "packaged_rsna.tflite"))}  # what the APK bundles
    # the contract the packaged model is moving to (frame "squeeze", crop "hand"), and one the apps must refuse
    hand = PreprocessSpec(64, frame="squeeze", crop="hand").to_dict()
    out["tiny64_hand"] = _retag(out["tiny64"], d / "tiny64_hand.tflite", hand)
    out["tiny64_badrule"] = _retag(out["tiny64"], d / "tiny64_badrule.tflite", {**hand, "crop_rule": "otsu-v9"})
    # contract version 3: the frame reduced to the RSNA img100 set's 100 x 100 before the hand crop
    v3 = PreprocessSpec(64, frame="squeeze", crop="hand", source_size=100).to_dict()
    out["tiny64_v3"] = _retag(out["tiny64"], d / "tiny64_v3.tflite", v3)
    out["tiny64_v3_v2"] = _retag(out["tiny64"], d / "tiny64_v3_v2.tflite", {**v3, "version": 2})
    return out


def _retag(src: Path, dst: Path, preprocess: dict) -> Path:
    """A copy of the model `src` whose edge_boneage metadata carries another `preprocess` record."""
    from edge_boneage.tflite_meta import add_metadata, read_metadata

    record = {k: v for k, v in read_metadata(src).items() if k != "schema_version"}
    dst.write_bytes(add_metadata(src.read_bytes(), {**record, "preprocess": preprocess}))
    return dst


def _smooth(rng, h, w, sigma=3.0):
    import cv2

    return cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), sigma)


@pytest.fixture(scope="module")
def images(tmp_path_factory, request):
    """Fixture PNGs: portrait/landscape/odd sizes, grey, RGB and palette, small (enlarged) and large (shrunk)."""
    import cv2
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    out = {}
    for name, (h, w) in {"portrait": (517, 300), "landscape": (123, 250), "small": (40, 37), "square": (128, 128),
                         "noise": (301, 211)}.items():
        img = rng.integers(0, 256, (h, w), dtype=np.uint8) if name == "noise" else _smooth(rng, h, w)
        cv2.imwrite(str(d / f"{name}.png"), img)
        out[name] = d / f"{name}.png"
    rgb = np.stack([_smooth(rng, 200, 150, 5) for _ in range(3)], axis=-1)
    Image.fromarray(rgb, "RGB").save(d / "colour.png")
    out["colour"] = d / "colour.png"
    Image.fromarray(_smooth(rng, 90, 160)).convert("P").save(d / "palette.png")
    out["palette"] = d / "palette.png"
    rsna = REPO.parent / "shared/data/rsna/fullres"
    real = sorted(rsna.glob("*.png"))[:1] if rsna.is_dir() else []
    if real:  # a real radiograph (read from ../shared, never copied into the repo)
        out["rsna"] = real[0]
    return out


@pytest.fixture(scope="module")
def page(litertjs, models, images):
    _need_browser()
    mounts = {"/": browser.WEB_DIR, "/models/": next(iter(models.values())).parent,
              "/img/": images["portrait"].parent}
    if "rsna" in images:
        mounts["/rsna/"] = images["rsna"].parent
    with browser.serve(mounts) as base, browser.Chromium() as ch:
        ch.navigate(base + "/index.html")
        ch.wait_title()
        yield ch


def _url(images, name):
    return f"/rsna/{images[name].name}" if name == "rsna" else f"/img/{images[name].name}"


def _load(page, model_name):
    return page.evaluate(f"edgeBoneage.loadModelUrl('/models/{model_name}.tflite')", timeout=60)


# ------------------------------------------------------------------------------------------------------------
# browser page vs Python


@pytest.mark.parametrize("size,enhance,frame,crop,source_size", [
    (64, None, "letterbox", None, None), (224, None, "letterbox", None, None), (96, "hist", "letterbox", None, None),
    (96, "clahe", "letterbox", None, None), (100, None, "squeeze", "hand", None),
    (224, "clahe", "letterbox", "hand", None), (64, None, "squeeze", None, None),
    (64, None, "squeeze", "hand", 100), (100, "clahe", "letterbox", "hand", 100), (64, None, "squeeze", None, 100)])
def test_page_preprocessing_matches_python_pixel_for_pixel(page, images, size, enhance, frame, crop, source_size):
    """The page's whole path (file -> canvas decode -> boneage.js) against PreprocessSpec.apply_with_box (with
    source_size: contract version 3, the frame reduced to 100 x 100 first; the real film, with ../shared, is a
    full-resolution one)."""
    from edge_boneage.io import read_image
    from edge_boneage.preprocess import PreprocessSpec

    spec = PreprocessSpec(size, enhance, frame=frame, crop=crop, source_size=source_size)
    for name in images:
        got = page.evaluate(f"edgeBoneage.fetchGrey('{_url(images, name)}').then((g) => {{"
                            f"const r = edgeBoneage.B.preprocessWithBox(g, edgeBoneage.B.preprocessSpec("
                            f"{{preprocess: {json.dumps(spec.to_dict())}}}, 0));"
                            f"let s = ''; for (const v of r.image.data) s += String.fromCharCode(v);"
                            f"return {{width: r.image.width, height: r.image.height, b64: btoa(s), box: r.box}}; }})",
                            timeout=60)
        js = np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(got["height"], got["width"])
        want, box = spec.apply_with_box(read_image(images[name])[0])
        assert js.shape == want.shape
        diff = int((js != want).sum())
        assert diff == 0, (f"{name} -> {size} ({enhance}, {frame}, crop {crop}, source_size {source_size}): {diff} "
                           f"of {want.size} pixels differ")
        _assert_box(got["box"], box, name)
    if crop is None:  # the page's own entry point (app.js) gives the same pixels
        got = page.evaluate(f"edgeBoneage.preprocessUrl('{_url(images, 'portrait')}', {json.dumps(spec.to_dict())})")
        want = spec.apply(read_image(images["portrait"])[0])
        assert np.array_equal(np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(want.shape), want)


def test_page_reads_metadata_like_python(page, models):
    from edge_boneage.tflite_meta import read_metadata

    info = _load(page, "mobilenet64")
    assert info["meta"] == read_metadata(models["mobilenet64"])
    assert info["spec"]["input_size"] == 64
    assert set(info["inputs"]) == {"image", "sex"} and {"age", "probs"} <= set(info["outputs"])
    # the page parses the flatbuffer itself: a model without our entry has none, junk is refused
    assert page.evaluate("edgeBoneage.B.readMetadata(new Uint8Array([0,0,0,0,84,70,76,51,0,0,0,0]))") is None
    with pytest.raises(browser.PageError, match="TFL3"):
        page.evaluate("edgeBoneage.B.readMetadata(new TextEncoder().encode('not a model'))")


def test_page_age_matches_ai_edge_litert(page, models, images, capsys):
    """LiteRT.js (WASM) in Chromium vs ai-edge-litert in Python on the same .tflite and image: within 0.01 months."""
    import cv2

    from edge_boneage.io import read_image
    from edge_boneage.preprocess import PreprocessSpec
    from edge_boneage.runtime import LiteRTModel
    from edge_boneage.tflite_meta import read_metadata

    rows, intervals = [], 0
    for model_name in ("tiny64", "tiny96_clahe", "mobilenet64", "packaged_rsna", "tiny64_hand", "tiny64_v3"):
        _load(page, model_name)
        spec = PreprocessSpec.from_dict(read_metadata(models[model_name])["preprocess"])
        py = LiteRTModel(models[model_name])
        spread = []
        for name in images:
            grey = read_image(images[name])[0]
            x = spec.apply(grey)[None, :, :, None]
            for sex in (0, 1):
                want = py(image=x, sex=np.array([[sex]], np.float32))
                got = page.evaluate(f"edgeBoneage.predictUrl('{_url(images, name)}', {sex})", timeout=60)
                d = abs(got["age"] - float(want["age"][0, 0]))
                rows.append((model_name, name, sex, float(want["age"][0, 0]), got["age"], d))
                assert d < AGE_TOL, f"{model_name} {name} sex={sex}: page {got['age']} vs Python {want['age']}"
                np.testing.assert_allclose(got["probs"], want["probs"][0], atol=1e-4)
                spread.append(float(want["age"][0, 0]))
                outs = read_metadata(models[model_name]).get("outputs")
                ival = ((outs.get("age") or {}).get("interval")) if isinstance(outs, dict) else None
                if ival:  # the page shows the same calibrated interval as predict (calibrate.interval_for)
                    from edge_boneage.calibrate import interval_for

                    np.testing.assert_allclose(got["interval"], interval_for(got["age"], ival), atol=1e-6)
                    intervals += 1
                else:
                    assert got["interval"] is None
            if model_name == "tiny64" and name == "portrait":
                # the 0.01-month tolerance has teeth: a plausible preprocessing slip moves the age far more
                from edge_boneage.preprocess import letterbox_square

                wrong = cv2.resize(letterbox_square(grey), (64, 64), interpolation=cv2.INTER_LINEAR)[None, :, :, None]
                slip = abs(float(py(image=wrong, sex=np.ones((1, 1), np.float32))["age"][0, 0]) - spread[-1])
                assert slip > 10 * AGE_TOL, f"INTER_LINEAR instead of INTER_AREA moved the age only {slip:.4f} months"
        if model_name.startswith("tiny") or model_name == "packaged_rsna":
            assert max(spread) - min(spread) > 1.0, f"{model_name}: outputs barely depend on the input: {spread}"
    assert intervals > 0, "the packaged model carries a calibrated interval: the page must show it"
    with capsys.disabled():
        print("\nmodel          image      sex  python_age  litertjs_age  |diff| (months)")
        for r in rows:
            print(f"{r[0]:<14} {r[1]:<10} {r[2]:>3}  {r[3]:10.4f}  {r[4]:12.4f}  {r[5]:.2e}")


def test_page_shows_result_and_refuses_missing_sex(page, images):
    _load(page, "tiny64")
    label = page.evaluate(f"edgeBoneage.showUrl('{_url(images, 'portrait')}', 1)", timeout=60)
    assert re.fullmatch(r"\d+ y \d+ m", label)
    assert page.evaluate("document.getElementById('resultcard').hidden") is False
    with pytest.raises(browser.PageError, match="sex"):
        page.evaluate(f"edgeBoneage.predictUrl('{_url(images, 'portrait')}', null)")


def test_page_flags_a_non_radiograph_beside_the_age(page, images):
    """The page runs the input quality gate (quality.js, edge_boneage.quality) on every picture it estimates: a picture
    Python's gate does not accept gets its age shown but marked, with the same warning line and reasons as `predict`;
    an accepted one (a real radiograph, with ../shared) shows no flag. Agreement on a whole suite of inputs:
    tests/test_quality_ports.py."""
    from edge_boneage.io import read_image
    from edge_boneage.quality import assess

    _load(page, "tiny64")
    for name in ("noise", "colour", "rsna"):
        if name not in images:
            continue
        want = assess(*read_image(images[name]))
        label = page.evaluate(f"edgeBoneage.showUrl('{_url(images, name)}', 1)", timeout=60)
        shown = page.evaluate("edgeBoneage.shownQuality()")
        got = page.evaluate(f"edgeBoneage.predictUrl('{_url(images, name)}', 1)", timeout=60)["quality"]
        assert re.fullmatch(r"\d+ y \d+ m", label) and shown["age"] == label, f"{name}: the age is still shown"
        assert (got["ok"], got["reasons"], got["details"]) == (want.ok, want.reasons, want.scores["details"]), name
        if want.ok:
            assert not shown["flagShown"] and not shown["ageMarked"]
            assert "accepted as a hand radiograph" in shown["text"]
        else:
            line = (f"WARNING: not accepted as a hand radiograph: {', '.join(want.reasons)} "
                    f"(age shown for reference only)")  # Prediction.quality_warning
            assert shown["flagShown"] and shown["ageMarked"] and "not accepted" in shown["flagText"], (name, shown)
            assert got["warning"] == line and line in shown["text"], (name, shown["text"])
            for reason in want.reasons:
                assert f"{reason}: {want.scores['details'][reason]}" in shown["text"], (name, reason)
    assert not assess(*read_image(images["noise"])).ok  # the flagged branch ran


def test_page_applies_the_packaged_models_feature_check_like_predict(page, images):
    """The page reads the packaged model's "feature_residual" output and its threshold (metadata), as predict does
    (edge_boneage.featuregate): a smooth chest-like caricature the image statistics accept is flagged "unlike the
    training radiographs" with predict's figures; a real film (with ../shared) is not."""
    from benchmarks.quality_gate import _chest_like

    from edge_boneage.featuregate import REASON
    from edge_boneage.predict import AgePredictor, predict_image
    from edge_boneage.pretrained import default_model_path

    chest = images["portrait"].parent / "chest_like.png"
    Image.fromarray(_chest_like(np.random.default_rng(1))).save(chest)
    images = {**images, "chest": chest}
    pred = AgePredictor(default_model_path())
    _load(page, "packaged_rsna")
    for name in ("chest", "rsna"):
        if name not in images:
            continue
        want = predict_image(pred, images[name], "M", orient=False)
        got = page.evaluate(f"edgeBoneage.predictUrl('{_url(images, name)}', 1)", timeout=60)["quality"]
        flagged = [r for r in want.quality_reasons if r.startswith(REASON)]
        assert [r.split(" (")[0] for r in want.quality_reasons] == got["reasons"], (name, want.quality_reasons, got)
        if flagged:
            v, t = (float(x) for x in re.findall(r"[0-9.]+", got["details"][REASON]))
            pv, pt = (float(x) for x in re.findall(r"[0-9.]+", flagged[0].split("(")[1]))
            assert abs(v - pv) < 0.02 and t == pt, (got["details"][REASON], flagged[0])
    assert any(r.startswith(REASON) for r in predict_image(pred, chest, "M", orient=False).quality_reasons)


# ------------------------------------------------------------------------------------------------------------
# frame and hand-crop rules (spec versions 2 and 3): boneage.js and the Java core against PreprocessSpec.apply_with_box,
# and the OpenCV calls edge_boneage.handcrop makes, one by one, against cv2


def _assert_box(got, want, where):
    """The hand box of a port equals Python's HandBox.to_dict() (already rounded to 3 decimals) to 1e-6."""
    if want is None:
        assert got is None, f"{where}: a box without a hand crop: {got}"
        return
    assert got is not None and set(got) == set(want), f"{where}: box {got} vs {want}"
    for k, v in want.items():
        if isinstance(v, bool):
            assert got[k] is v, f"{where}: box {k} {got[k]} != {v}"
        else:
            assert abs(got[k] - v) <= 1e-6, f"{where}: box {k} {got[k]} != {v} (box {got}, Python {want})"


def _hand_scene(rng, h, w, bg=20, level=170, cassette=False):
    """A crude hand (palm, four fingers, thumb, forearm) on a dark film; with `cassette`, on a bright plate that fills
    the frame (more than 85 % of its bounding box: handcrop's second, inner threshold)."""
    import cv2

    img = np.full((h, w), bg, np.float32)
    if cassette:
        img[int(0.04 * h):int(0.96 * h), int(0.04 * w):int(0.96 * w)] = 100
    x0, y0, bw, bh = int(0.25 * w), int(0.15 * h), int(0.45 * w), int(0.7 * h)
    cv2.rectangle(img, (x0, y0 + int(0.45 * bh)), (x0 + int(0.8 * bw), y0 + int(0.8 * bh)), level, -1)
    for k in range(4):
        fx = x0 + int(k * 0.21 * bw)
        top = y0 + (0 if k == 1 else int(0.08 * bh))
        cv2.rectangle(img, (fx, top), (fx + max(1, int(0.11 * bw)), y0 + int(0.45 * bh)), level, -1)
    cv2.rectangle(img, (x0 + int(0.8 * bw), y0 + int(0.5 * bh)), (x0 + bw, y0 + int(0.6 * bh)), level, -1)
    cv2.rectangle(img, (x0 + int(0.25 * bw), y0 + int(0.8 * bh)), (x0 + int(0.6 * bw), y0 + bh), level, -1)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _tie_scene():
    """Two equal bright blocks on a 128 x 128 film; blurred and thresholded, A's mask starts on row 11, B's on row 10.
    B's first pixel comes first in raster order, but A's first 2x2 block (block row 5, block column 3) comes before
    B's (block row 5, column 35) in the order in which cv2.connectedComponentsWithStats labels components, so
    handcrop takes A: a raster-order port would take B."""
    img = np.full((128, 128), 10, np.uint8)
    img[12:42, 6:26] = 200  # A
    img[11:41, 70:90] = 200  # B
    return img


def _crop_images(images, rsna):
    """Inputs for the frame / crop contract: synthetic scenes (non-square, bright cassette, blank, tiny, a tie between
    two components), synthetic radiographs, the fixture PNGs and, with ../shared, real RSNA films."""
    from edge_boneage.io import read_image
    from edge_boneage.synth import generate_one

    rng = np.random.default_rng(11)
    imgs = {"hand_portrait": _hand_scene(rng, 400, 300), "hand_landscape": _hand_scene(rng, 300, 450, bg=40, level=120),
            "hand_cassette": _hand_scene(rng, 330, 420, bg=10, level=230, cassette=True),
            "hand_cassette_square": _hand_scene(rng, 256, 256, bg=5, level=250, cassette=True),
            "hand_small": _hand_scene(rng, 40, 37),  # enlarged onto the 128 grid
            "hand_strip": _hand_scene(rng, 64, 300),
            "synth_hand": generate_one(0, 3, size=256)[1][:, 18:236],
            "synth_hand_512": generate_one(1, 7, size=512)[1][40:, :],
            "tie": _tie_scene(), "blank_grey": np.full((120, 90), 137, np.uint8),
            "blank_black": np.zeros((64, 64), np.uint8), "tiny": rng.integers(0, 256, (7, 5), dtype=np.uint8),
            "one_pixel": np.full((1, 1), 200, np.uint8), "noise": rng.integers(0, 256, (301, 211), dtype=np.uint8)}
    for name, path in images.items():
        if not (name == "rsna" and rsna is not None):
            imgs[f"file_{name}"] = read_image(path)[0]
    if rsna is not None:  # real radiographs, read from ../shared (never copied into the repo)
        for f in sorted((rsna / "img100").glob("*.png"))[:3] + sorted((rsna / "fullres").glob("*.png"))[:2]:
            imgs[f"rsna_{f.parent.name}_{f.stem}"] = read_image(f)[0]
    return imgs


@pytest.fixture(scope="module")
def crop_cases(images, rsna_dir_or_none):
    """[{name, img, spec, out, box}]: every input under each frame x crop rule, with Python's answer."""
    from edge_boneage.preprocess import PreprocessSpec

    rsna = rsna_dir_or_none
    cases, k = [], 0
    imgs = _crop_images(images, rsna)
    for name, img in imgs.items():
        for frame in ("squeeze", "letterbox"):
            for crop in ("hand", None):
                spec = PreprocessSpec((100, 224, 64, 128, 37)[k % 5], (None, None, None, "hist", None, "clahe")[k % 6],
                                      frame=frame, crop=crop, crop_margin=(0.04, 0.04, 0.1, 0.0)[k % 4])
                k += 1
                out, box = spec.apply_with_box(img)
                cases.append({"name": f"{name}_{frame}_{crop or 'nocrop'}", "img": img, "spec": spec, "out": out,
                              "box": box})
    # version 3 (source_size N): the frame is first reduced to N x N, the hand found and cut there, the box reported
    # in image pixels. Full-resolution-like scenes and, with ../shared, real full-resolution films at N = 100 (the
    # RSNA img100 set's size); a 100 x 100 film (unchanged), enlarged and mixed (one axis enlarged) frames, no hand
    v3 = {n: imgs[n] for n in ("hand_portrait", "hand_landscape", "hand_cassette", "synth_hand_512", "hand_strip",
                               "hand_small", "blank_grey", "file_noise")}
    v3["hand_fullres_like"] = _hand_scene(np.random.default_rng(5), 2044, 1514, bg=30, level=190)
    v3["hand_square100"] = _hand_scene(np.random.default_rng(6), 100, 100)
    v3.update({n: a for n, a in imgs.items() if n.startswith("rsna_")})
    for name, img in v3.items():
        for frame in ("squeeze", "letterbox"):
            for crop in ("hand", None):
                n = 100 if k % 7 else (128, 16, 37)[k // 7 % 3]
                spec = PreprocessSpec((64, 100, 224, 128, 37)[k % 5], (None, None, "hist", None, "clahe")[k % 5],
                                      frame=frame, crop=crop, crop_margin=(0.04, 0.1, 0.04, 0.0)[k % 4], source_size=n)
                assert spec.version == 3
                k += 1
                out, box = spec.apply_with_box(img)
                cases.append({"name": f"{name}_v3n{n}_{frame}_{crop or 'nocrop'}", "img": img, "spec": spec,
                              "out": out, "box": box})
    return cases


RESIZE_SHAPES = [  # (src h, src w, dst h, dst w) for cv2.INTER_AREA with per-axis scales
    (517, 300, 128, 128), (300, 517, 128, 128), (256, 384, 128, 128), (256, 128, 128, 128), (200, 200, 100, 100),
    (202, 62, 101, 31), (90, 120, 128, 128), (200, 50, 128, 128), (50, 200, 128, 128), (99, 101, 100, 100),
    (101, 99, 100, 100), (1, 1, 128, 128), (1, 300, 128, 128), (300, 1, 128, 128), (7, 5, 100, 100),
    (3, 200, 224, 224), (1600, 1200, 128, 128), (129, 127, 224, 224), (255, 129, 100, 100), (64, 300, 64, 64),
    (141, 139, 224, 224), (1003, 998, 100, 100), (130, 260, 65, 100), (40, 37, 128, 128)]


def _opencv_step_cases(seed=13):
    """Random inputs with cv2's answers for cv2.GaussianBlur((5, 5), 0), Otsu's threshold and INTER_AREA."""
    import cv2

    rng = np.random.default_rng(seed)
    blur = []
    for k in range(60):
        h, w = (128, 128) if k < 40 else (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        a = [lambda: rng.integers(0, 256, (h, w), dtype=np.uint8),
             lambda: (rng.integers(0, 2, (h, w)) * 255).astype(np.uint8),
             lambda: _smooth(rng, h, w),
             lambda: rng.integers(250, 256, (h, w), dtype=np.uint8)][k % 4]()
        blur.append((a, cv2.GaussianBlur(a, (5, 5), 0)))
    otsu = []
    for k in range(300):
        n = int(rng.integers(1, 16385))
        v = [lambda: rng.integers(0, 256, n),
             lambda: rng.choice(rng.integers(0, 256, int(rng.integers(1, 5))), n),
             lambda: np.clip(rng.normal(rng.uniform(0, 255), rng.uniform(1, 60), n), 0, 255),
             lambda: np.concatenate([rng.integers(0, 20, n),
                                     rng.integers(100, 256, int(rng.integers(1, n + 1)))])][k % 4]()
        v = v.astype(np.uint8)
        t, _ = cv2.threshold(v.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        otsu.append({"hist": np.bincount(v, minlength=256).tolist(), "n": int(v.size), "t": int(t)})
    resize = []
    for sh, sw, dh, dw in RESIZE_SHAPES:
        for a in (rng.integers(0, 256, (sh, sw), dtype=np.uint8), _smooth(rng, sh, sw)):
            resize.append((a, dh, dw, cv2.resize(a, (dw, dh), interpolation=cv2.INTER_AREA)))
    return blur, otsu, resize


def _contract_specs():
    """(good: [(spec dict, what the app must read)], bad: [(spec dict, words its refusal must name, why)]); Python's
    PreprocessSpec.from_dict reads every good one (the same way) and refuses every bad one too, except the last
    STRICTER ones, which the ports refuse although from_dict reads them (see below)."""
    from edge_boneage.preprocess import PreprocessSpec

    hand = PreprocessSpec(224, frame="squeeze", crop="hand").to_dict()
    v1 = {**{k: v for k, v in PreprocessSpec(100).to_dict().items() if k not in ("frame", "crop", "crop_margin",
                                                                                    "crop_rule")}, "version": 1}
    v3 = PreprocessSpec(64, frame="squeeze", crop="hand", source_size=100).to_dict()
    assert v3["version"] == 3 and "source_size" not in hand and hand["version"] == 2
    good = [(hand, {"input_size": 224, "frame": "squeeze", "crop": "hand", "crop_margin": 0.04, "source_size": None}),
            (v1, {"input_size": 100, "frame": "letterbox", "crop": None, "crop_margin": 0.04, "source_size": None}),
            ({**hand, "crop_rule": None, "crop_margin": 0.1, "frame": "letterbox"},
             {"input_size": 224, "frame": "letterbox", "crop": "hand", "crop_margin": 0.1, "source_size": None}),
            ({"input_size": 64, "crop": "none"},
             {"input_size": 64, "frame": "letterbox", "crop": None, "crop_margin": 0.04, "source_size": None}),
            (v3, {"input_size": 64, "frame": "squeeze", "crop": "hand", "crop_margin": 0.04, "source_size": 100}),
            ({**v3, "frame": "letterbox", "crop": None, "crop_rule": None, "source_size": 16},
             {"input_size": 64, "frame": "letterbox", "crop": None, "crop_margin": 0.04, "source_size": 16}),
            ({**v3, "source_size": 100.0},  # an integer written as a float: JSON has one number type
             {"input_size": 64, "frame": "squeeze", "crop": "hand", "crop_margin": 0.04, "source_size": 100}),
            ({**hand, "source_size": None},  # null = no source_size, also in a version-2 record
             {"input_size": 224, "frame": "squeeze", "crop": "hand", "crop_margin": 0.04, "source_size": None}),
            ({**v3, "source_size": None},  # a version-3 record without one
             {"input_size": 64, "frame": "squeeze", "crop": "hand", "crop_margin": 0.04, "source_size": None}),
            ({"input_size": 64, "source_size": 128},  # no version: PreprocessSpec's default, 3 with a source_size
             {"input_size": 64, "frame": "letterbox", "crop": None, "crop_margin": 0.04, "source_size": 128})]
    bad = [({**hand, "crop_rule": "otsu128-open5-refine80-largest-square-v2"}, "hand-crop rule",
            "an unknown hand-crop rule"),
           ({**hand, "version": 4}, "version 4", "a newer spec version"),
           ({**v3, "version": 4}, "version 4", "a newer spec version with a source_size"),
           ({**hand, "frame": "reflect"}, "frame rule", "an unknown frame rule"),
           ({**hand, "crop": "wrist"}, "crop", "an unknown crop"),
           ({**hand, "rotate": 90}, "unknown field", "an unknown field"),
           ({**hand, "dtype": "float32"}, "uint8", "a float input"),
           ({**hand, "resize": "cv2.INTER_LINEAR"}, "resize", "another resize rule"),
           ({**v3, "version": 2}, "source_size needs spec version 3", "a source_size in a version-2 record"),
           ({**v3, "version": 1}, "source_size needs spec version 3", "a source_size in a version-1 record"),
           ({**v3, "source_size": 15}, "source_size must be >= 16", "a source_size below 16"),
           ({**v3, "source_size": 0}, "source_size must be >= 16", "a zero source_size"),
           ({**v3, "source_size": -100}, "source_size must be >= 16", "a negative source_size"),
           ({**v3, "source_size": True}, "source_size", "a boolean source_size"),
           ({**v3, "source_size": "big"}, "source_size", "a word for a source_size"),
           ({**hand, "version": None}, "version", "a null version"),
           ({**v3, "source_size": 100.5}, "source_size 100.5 is not an integer", "a fractional source_size"),
           ({**v3, "source_size": "100"}, "source_size", "a source_size written as a string")]
    for spec, want in good:
        s = PreprocessSpec.from_dict(spec)
        assert [s.input_size, s.frame, s.crop, s.crop_margin, s.source_size] == [
            want[k] for k in ("input_size", "frame", "crop", "crop_margin", "source_size")], spec
    for spec, _, why in bad:
        with pytest.raises(ValueError):
            PreprocessSpec.from_dict(spec)
    return good, bad


CORE_HTML = """<!doctype html><meta charset="utf-8"><title>loading</title><script type="module">
import * as B from "/boneage.js";
window.B = B;
const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
const b64 = (a) => { let s = ""; for (const v of a) s += String.fromCharCode(v); return btoa(s); };
window.t = {
  async preprocess(url, w, h, spec) {
    const spec2 = B.preprocessSpec({preprocess: spec}, 0);
    const r = B.preprocessWithBox({data: await bytes(url), width: w, height: h}, spec2);
    return {width: r.image.width, height: r.image.height, b64: b64(r.image.data), box: r.box};
  },
  async blur(url, w, h) { return b64(B.gaussianBlur5({data: await bytes(url), width: w, height: h}).data); },
  async resize(url, w, h, dw, dh) {
    return b64(B.resizeArea({data: await bytes(url), width: w, height: h}, dw, dh).data);
  },
  async otsu(url) { return (await (await fetch(url)).json()).map((c) => B.otsuThreshold(c.hist, c.n)); },
  read(spec) {
    const s = B.preprocessSpec({preprocess: spec}, 0);
    return [s.input_size, s.frame, s.crop, s.crop_margin, s.source_size];
  },
  refusal(spec) { try { B.preprocessSpec({preprocess: spec}, 0); return null; } catch (e) { return e.message; } },
};
document.title = "READY";
</script>
"""


@pytest.fixture(scope="module")
def core_page(tmp_path_factory):
    """boneage.js alone in headless Chromium (no LiteRT.js, no model): a harness page that fetches raw fixtures."""
    _need_browser()
    d = tmp_path_factory.mktemp("core_page")
    (d / "core.html").write_text(CORE_HTML)
    with browser.serve({"/": browser.WEB_DIR, "/t/": d}) as base, browser.Chromium() as ch:
        ch.navigate(base + "/t/core.html")
        ch.wait_title()
        yield ch, d


def _b64_image(b64, shape):
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(shape)


def test_page_frame_and_hand_crop_match_python(core_page, crop_cases, capsys):
    """Every frame x crop rule on every input: boneage.js's model input equals PreprocessSpec.apply_with_box's pixel for
    pixel and its hand box equals Python's to 1e-6."""
    page, d = core_page
    found = 0
    for i, c in enumerate(crop_cases):
        h, w = c["img"].shape
        (d / f"hc{i}.raw").write_bytes(c["img"].tobytes())
        got = page.evaluate(f"t.preprocess('/t/hc{i}.raw', {w}, {h}, {json.dumps(c['spec'].to_dict())})", timeout=120)
        js = _b64_image(got["b64"], (got["height"], got["width"]))
        assert js.shape == c["out"].shape, c["name"]
        diff = int((js != c["out"]).sum())
        assert diff == 0, f"{c['name']}: {diff} of {js.size} pixels differ from PreprocessSpec.apply_with_box"
        _assert_box(got["box"], c["box"], c["name"])
        found += bool(c["box"] and c["box"]["found"])
    names = {c["name"].rsplit("_", 2)[0] for c in crop_cases}
    assert {"tie", "hand_cassette", "blank_grey", "one_pixel"} <= names
    v3 = _source_size_coverage(crop_cases)
    with capsys.disabled():
        print(f"\nboneage.js frame/crop: {len(crop_cases)} cases ({len(names)} images, {found} hands found; {v3} with "
              f"source_size) equal Python pixel for pixel, boxes to 1e-6")


def _source_size_coverage(crop_cases):
    """The version-3 cases do what they are for: frames really reduced to N x N before a hand crop that finds the
    hand (squeeze and letterbox), a frame already N x N, one enlarged, a box reported in image pixels; returns how many
    there are."""
    v3 = [c for c in crop_cases if c["spec"].source_size]
    assert all(c["spec"].to_dict()["version"] == 3 for c in v3)
    for frame in ("squeeze", "letterbox"):
        big = [c for c in v3 if c["spec"].frame == frame and c["spec"].crop == "hand" and c["box"]["found"]
               and min(c["img"].shape) > 2 * c["spec"].source_size]
        assert len(big) >= 3, f"too few reduced {frame} frames with a hand found"
    assert any(c["img"].shape == (c["spec"].source_size,) * 2 for c in v3)
    assert any(max(c["img"].shape) < c["spec"].source_size for c in v3)
    fl = next(c for c in v3 if c["name"] == "hand_fullres_like_v3n100_squeeze_hand")
    assert fl["box"]["found"] and fl["box"]["x1"] > 200 and fl["box"]["y1"] > 200  # image pixels, not the 100 grid
    return len(v3)


def test_source_size_cases_include_real_full_resolution_films(crop_cases, rsna_dir):
    """With ../shared the version-3 cases that both ports must match include real RSNA full-resolution films reduced to
    100 x 100 (squeeze and letterbox, hand crop on), with a hand found."""
    films = [c for c in crop_cases if c["name"].startswith("rsna_fullres_") and c["spec"].source_size == 100
             and c["spec"].crop == "hand"]
    assert {c["spec"].frame for c in films} == {"squeeze", "letterbox"}, [c["name"] for c in films]
    assert all(min(c["img"].shape) > 1000 for c in films)
    assert sum(c["box"]["found"] for c in films) >= 2


def test_tie_scene_is_a_tie():
    """_tie_scene really exercises the label-order rule: two equal largest components, cv2 takes the left one."""
    import cv2

    from edge_boneage import handcrop
    from edge_boneage.preprocess import PreprocessSpec

    g = cv2.GaussianBlur(_tie_scene(), (5, 5), 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(handcrop._otsu_mask(g).astype(np.uint8), connectivity=8)
    assert n == 3 and stats[1, cv2.CC_STAT_AREA] == stats[2, cv2.CC_STAT_AREA]
    first = [int(np.flatnonzero(labels.reshape(-1) == k)[0]) for k in (1, 2)]
    assert first[0] > first[1] and first[0] % 128 < 64  # label 1 = A, although B's first pixel comes first
    box = PreprocessSpec(64, frame="squeeze", crop="hand").apply_with_box(_tie_scene())[1]
    assert box["found"] and box["hand_x1"] < 64  # handcrop takes A


def test_page_opencv_steps_bit_exact(core_page, capsys):
    """boneage.js's GaussianBlur 5x5, Otsu threshold and INTER_AREA (per-axis scales: shrink, enlarge, mixed,
    integer factors) against cv2 on random inputs."""
    page, d = core_page
    blur, otsu, resize = _opencv_step_cases()
    for i, (a, want) in enumerate(blur):
        (d / f"blur{i}.raw").write_bytes(a.tobytes())
        got = _b64_image(page.evaluate(f"t.blur('/t/blur{i}.raw', {a.shape[1]}, {a.shape[0]})"), a.shape)
        assert np.array_equal(got, want), f"blur {a.shape}: {int((got != want).sum())} pixels differ from cv2"
    (d / "otsu.json").write_text(json.dumps(otsu))
    got = page.evaluate("t.otsu('/t/otsu.json')")
    bad = [(c["t"], g) for c, g in zip(otsu, got) if c["t"] != g]
    assert not bad, f"{len(bad)} of {len(otsu)} Otsu thresholds differ from cv2's: {bad[:5]}"
    for i, (a, dh, dw, want) in enumerate(resize):
        (d / f"rs{i}.raw").write_bytes(a.tobytes())
        got = _b64_image(page.evaluate(f"t.resize('/t/rs{i}.raw', {a.shape[1]}, {a.shape[0]}, {dw}, {dh})"), (dh, dw))
        assert np.array_equal(got, want), f"INTER_AREA {a.shape} -> {(dh, dw)}: {int((got != want).sum())} differ"
    with capsys.disabled():
        print(f"\nboneage.js vs cv2: {len(blur)} GaussianBlur, {len(otsu)} Otsu, {len(resize)} INTER_AREA cases exact")


def test_page_reads_and_refuses_contracts(core_page):
    """boneage.js reads frame / crop from the metadata and refuses, naming it, a contract it does not implement."""
    import dataclasses

    from edge_boneage.handcrop import HAND_RULE
    from edge_boneage.preprocess import PreprocessSpec

    page, _d = core_page
    assert set(page.evaluate("B.SPEC_KEYS")) == {f.name for f in dataclasses.fields(PreprocessSpec)}
    assert page.evaluate("B.HAND_RULE") == HAND_RULE
    good, bad = _contract_specs()
    for spec, want in good:
        assert page.evaluate(f"t.read({json.dumps(spec)})") == [want["input_size"], want["frame"], want["crop"],
                                                                 want["crop_margin"], want["source_size"]], spec
    for spec, words, why in bad:
        msg = page.evaluate(f"t.refusal({json.dumps(spec)})")
        assert msg and words in msg, f"{why}: {msg!r}"


def test_page_reads_frame_and_crop_from_model_metadata(page, models):
    """A model whose metadata says frame "squeeze", crop "hand" is preprocessed that way (its ages equal Python's in
    test_page_age_matches_ai_edge_litert), and so is a version-3 one with source_size; one with an unknown hand-crop
    rule, or a source_size in a version-2 record, is refused when loaded."""
    from edge_boneage.handcrop import HAND_RULE

    info = _load(page, "tiny64_hand")
    assert (info["spec"]["frame"], info["spec"]["crop"], info["spec"]["crop_rule"]) == ("squeeze", "hand", HAND_RULE)
    with pytest.raises(browser.PageError, match="hand-crop rule \"otsu-v9\""):
        _load(page, "tiny64_badrule")
    info = _load(page, "tiny64_v3")  # version 3
    assert (info["spec"]["version"], info["spec"]["source_size"], info["spec"]["crop"]) == (3, 100, "hand")
    with pytest.raises(browser.PageError, match="source_size needs spec version 3"):
        _load(page, "tiny64_v3_v2")
    _load(page, "tiny64")


# ------------------------------------------------------------------------------------------------------------
# Java core on the JVM, fixtures from the Python side


def _compile_java(tmp_path: Path) -> Path:
    """javac (Java 8 level, as on Android) of the core and its JVM tests; returns the classes folder."""
    out = tmp_path / "classes"
    src = DEMO / "app/src"
    core = sorted((src / "main/java/org/edgeboneage/core").glob("*.java"))
    tests = sorted((src / "test/java/org/edgeboneage/core").glob("*.java"))
    for args in (["-d", str(out / "core"), *map(str, core)],
                 ["-cp", str(out / "core"), "-d", str(out / "test"), *map(str, tests)]):
        proc = subprocess.run(["javac", "-nowarn", "-Xlint:-options", "-source", "8", "-target", "8", "-encoding",
                               "UTF-8", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_java_core_matches_python(tmp_path, models, images, capsys):
    _need("javac", "java")
    from PIL import Image

    from edge_boneage.io import read_image
    from edge_boneage.preprocess import preprocess
    from edge_boneage.tflite_meta import list_metadata, read_metadata

    fx = tmp_path / "fixtures"
    fx.mkdir()
    rng = np.random.default_rng(3)
    cases = []
    shapes = [(517, 300, 224), (300, 517, 64), (511, 378, 224), (123, 50, 50), (100, 100, 224), (100, 100, 128),
              (64, 64, 65), (3, 7, 7), (5, 3, 3), (128, 128, 64), (192, 100, 64), (448, 448, 224), (37, 37, 64)]
    for h, w, s in shapes:
        for kind in ("noise", "smooth"):
            img = rng.integers(0, 256, (h, w), dtype=np.uint8) if kind == "noise" else _smooth(rng, h, w)
            cases.append((f"{kind}{h}x{w}to{s}", img, s, None))
    for enhance in ("hist", "clahe"):
        for h, w, s in [(300, 200, 64), (100, 100, 50), (90, 120, 224)]:
            cases.append((f"{enhance}{h}x{w}to{s}", _smooth(rng, h, w), s, enhance))
    for name in ("portrait", "rsna"):
        if name in images:
            cases.append((f"file_{name}", read_image(images[name])[0], 224, None))
    for name, img, s, enhance in cases:
        (fx / f"{name}.in").write_bytes(img.tobytes())
        (fx / f"{name}.out").write_bytes(preprocess(img, s, enhance).tobytes())
    (fx / "cases.json").write_text(json.dumps([{"name": n, "h": i.shape[0], "w": i.shape[1], "S": s, "enhance": e}
                                               for n, i, s, e in cases]))
    for name in ("colour", "palette"):
        shutil.copy(images[name], fx / f"decode_{name}.png")
        (fx / f"decode_{name}.png.grey").write_bytes(read_image(images[name])[0].tobytes())
    shutil.copy(models["tiny96_clahe"], fx / "model.tflite")
    meta = read_metadata(models["tiny96_clahe"])
    plain = tmp_path / "plain.tflite"  # the converter's own metadata entries only
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    mt = schema.ModelT.InitFromPackedBuf(bytearray(models["tiny64"].read_bytes()), 0)
    mt.metadata = [m for m in (mt.metadata or []) if m.name not in (b"edge_boneage", "edge_boneage")]
    b = flatbuffers.Builder(0)
    b.Finish(mt.Pack(b), file_identifier=b"TFL3")
    plain.write_bytes(bytes(b.Output()))
    shutil.copy(plain, fx / "plain.tflite")
    assert read_metadata(plain) is None
    (fx / "model_meta.json").write_text(json.dumps({**meta, "_plain_entries": len(list_metadata(plain))}))
    # _plain_entries is ours, not in the model: the Java side compares everything else
    meta_only = json.loads((fx / "model_meta.json").read_text())
    meta_only.pop("_plain_entries")
    assert meta_only == meta

    # the feature check (edge_boneage.featuregate): the packaged model's threshold and predict's wording of a flag
    from edge_boneage.featuregate import judge
    from edge_boneage.modelfile import open_model

    shutil.copy(models["packaged_rsna"], fx / "packaged.tflite")
    thr = open_model(models["packaged_rsna"]).feature_gate["threshold"]
    residual = round(thr + 1.2345, 4)
    reason = judge({"feature_residual": np.array([[residual]])}, {"threshold": thr})[1]
    (fx / "gate.json").write_text(json.dumps({"threshold": thr, "residual": residual,
                                              "detail": reason[reason.index("(") + 1:-1]}))

    out = _compile_java(tmp_path)
    proc = subprocess.run(["java", "-Djava.awt.headless=true", "-cp", f"{out / 'core'}:{out / 'test'}",
                           "org.edgeboneage.core.CoreTest", str(fx)], capture_output=True, text=True, timeout=120)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert proc.returncode == 0 and m and m.group(2) == "0", proc.stdout[-2000:] + proc.stderr[-2000:]
    n_expected = len(cases) + 2 + 5 + 2 + 5 + 5 + 2  # preprocess, decode, metadata, junk, feature check, age, json
    assert int(m.group(1)) == n_expected, last
    with capsys.disabled():
        print(f"\nJava core on the JVM (org.edgeboneage.core.CoreTest, fixtures from Python): {last}")
    # the fixtures can fail: a changed expected pixel is caught
    bad = bytearray((fx / "noise5x3to3.out").read_bytes())
    bad[0] ^= 1
    (fx / "noise5x3to3.out").write_bytes(bytes(bad))
    proc = subprocess.run(["java", "-cp", f"{out / 'core'}:{out / 'test'}", "org.edgeboneage.core.CoreTest", str(fx)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "FAIL preprocess noise5x3to3" in proc.stdout


def test_java_hand_crop_matches_python(tmp_path, crop_cases, capsys):
    """The Java core's frame / hand-crop pipeline, its OpenCV steps and its contract checks, against Python and cv2
    (org.edgeboneage.core.HandCropTest on the JVM)."""
    _need("javac", "java")
    import dataclasses

    from edge_boneage.handcrop import HAND_RULE
    from edge_boneage.preprocess import PreprocessSpec

    fx = tmp_path / "fixtures"
    fx.mkdir()
    hand = []
    for c in crop_cases:
        (fx / f"{c['name']}.in").write_bytes(c["img"].tobytes())
        (fx / f"{c['name']}.out").write_bytes(c["out"].tobytes())
        hand.append({"name": c["name"], "h": c["img"].shape[0], "w": c["img"].shape[1], "spec": c["spec"].to_dict(),
                     "box": c["box"]})
    (fx / "hand_cases.json").write_text(json.dumps(hand))
    blur, otsu, resize = _opencv_step_cases()
    for i, (a, want) in enumerate(blur):
        (fx / f"blur{i}.in").write_bytes(a.tobytes())
        (fx / f"blur{i}.out").write_bytes(want.tobytes())
    (fx / "blur_cases.json").write_text(json.dumps([{"name": f"blur{i}", "h": a.shape[0], "w": a.shape[1]}
                                                    for i, (a, _) in enumerate(blur)]))
    (fx / "otsu_cases.json").write_text(json.dumps(otsu))
    for i, (a, _dh, _dw, want) in enumerate(resize):
        (fx / f"rs{i}.in").write_bytes(a.tobytes())
        (fx / f"rs{i}.out").write_bytes(want.tobytes())
    (fx / "resize_cases.json").write_text(json.dumps([{"name": f"rs{i}", "sh": a.shape[0], "sw": a.shape[1], "dh": dh,
                                                       "dw": dw} for i, (a, dh, dw, _) in enumerate(resize)]))
    good, bad = _contract_specs()
    (fx / "contract.json").write_text(json.dumps({
        "keys": [f.name for f in dataclasses.fields(PreprocessSpec)], "hand_rule": HAND_RULE,
        "good": [{"spec": s, "want": w} for s, w in good],
        "bad": [{"spec": s, "match": m, "why": why} for s, m, why in bad]}))

    out = _compile_java(tmp_path)
    cmd = ["java", "-Djava.awt.headless=true", "-cp", f"{out / 'core'}:{out / 'test'}",
           "org.edgeboneage.core.HandCropTest", str(fx)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert proc.returncode == 0 and m and m.group(2) == "0", proc.stdout[-3000:] + proc.stderr[-2000:]
    n_expected = 2 * len(hand) + len(blur) + 1 + len(resize) + 2 + len(good) + len(bad)
    assert int(m.group(1)) == n_expected, last
    v3 = _source_size_coverage(crop_cases)
    with capsys.disabled():
        print(f"\nJava core frame/crop (org.edgeboneage.core.HandCropTest, {len(hand)} pipeline cases ({v3} with "
              "source_size), "
              f"{len(blur)} blur, {len(otsu)} Otsu, {len(resize)} resize): {last}")
    # the fixtures can fail: a changed expected pixel and a moved box are caught
    # (a version-2 case and a version-3 one)
    names = [next(c["name"] for c in crop_cases if c["box"] and c["box"]["found"] and bool(c["spec"].source_size) is v3)
             for v3 in (False, True)]
    for name in names:
        bad_px = bytearray((fx / f"{name}.out").read_bytes())
        bad_px[0] ^= 1
        (fx / f"{name}.out").write_bytes(bytes(bad_px))
    moved = [{**c, "box": {**c["box"], "x0": c["box"]["x0"] + 0.001}} if c["name"] in names else c for c in hand]
    (fx / "hand_cases.json").write_text(json.dumps(moved))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    for name in names:
        assert f"FAIL hand {name} pixels" in proc.stdout and f"FAIL hand {name} box" in proc.stdout, name


# ------------------------------------------------------------------------------------------------------------
# the APK


def test_apk_builds_signed_and_verifies(tmp_path, litertjs, models):
    _need("aapt", "javac", "keytool", "dalvik-exchange", "zipalign", "apksigner", "dexdump")
    if not ANDROID_JAR.is_file():
        pytest.skip(f"{ANDROID_JAR} missing (bash scripts/install_android_toolchain.sh)")
    apk = tmp_path / "demo.apk"
    proc = subprocess.run(["bash", str(DEMO / "build_apk.sh"), "--model", str(models["tiny64"]), "--out", str(apk)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    verify = subprocess.run(["apksigner", "verify", "--verbose", str(apk)], capture_output=True, text=True)
    assert verify.returncode == 0 and "Verified using v2 scheme (APK Signature Scheme v2): true" in verify.stdout
    badging = subprocess.run(["aapt", "dump", "badging", str(apk)], capture_output=True, text=True, check=True).stdout
    assert "package: name='org.edgeboneage.demo'" in badging
    assert "launchable-activity: name='org.edgeboneage.demo.MainActivity'" in badging
    assert "sdkVersion:'23'" in badging and "android.permission.INTERNET" not in badging
    with zipfile.ZipFile(apk) as z:
        names = set(z.namelist())
        assert {"classes.dex", "AndroidManifest.xml", "assets/web/index.html", "assets/web/app.js",
                "assets/web/boneage.js", "assets/web/decode.js", "assets/web/quality.js",
                "assets/web/quality_constants.js", "assets/web/vendor/litertjs/wasm/litert_wasm_internal.wasm",
                "assets/web/models/default.tflite"} <= names
        assert z.read("assets/web/models/default.tflite") == models["tiny64"].read_bytes()
        for js in ("boneage.js", "quality.js", "quality_constants.js"):
            assert z.read(f"assets/web/{js}") == (DEMO / "web" / js).read_bytes()
        (tmp_path / "classes.dex").write_bytes(z.read("classes.dex"))
    dex = subprocess.run(["dexdump", str(tmp_path / "classes.dex")], capture_output=True, text=True, check=True).stdout
    for cls in ("Lorg/edgeboneage/demo/MainActivity;", "Lorg/edgeboneage/demo/MainActivity$AssetClient;",
                "Lorg/edgeboneage/core/Preprocess;", "Lorg/edgeboneage/core/TfliteMetadata;",
                "Lorg/edgeboneage/core/Quality;"):
        assert f"Class descriptor  : '{cls}'" in dex
    assert not list((DEMO / "build").glob("*.keystore")) or "build/" in (DEMO / ".gitignore").read_text()
