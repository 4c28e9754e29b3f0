"""The phone demo (android_demo/): browser page in headless Chromium vs Python, Java core on the JVM, the APK.

Needs Chromium (scripts/install_chromium.sh), the npm registry once (android_demo/fetch_litertjs.sh) and the
Android toolchain (scripts/install_android_toolchain.sh); each test skips with the reason when its tool is missing.
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
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "android_demo"
sys.path.insert(0, str(DEMO))

import cdp  # noqa: E402  (android_demo/cdp.py)

ANDROID_JAR = Path("/usr/lib/android-sdk/platforms/android-23/android.jar")
AGE_TOL = 0.01  # months, float model, LiteRT.js (WASM) vs ai-edge-litert


def _need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (bash scripts/install_android_toolchain.sh / install_chromium.sh)")


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

    from edge_boneage.pretrained import default_model_path

    d = tmp_path_factory.mktemp("models")
    return {"tiny64": export_tiny(d / "tiny64.tflite", 64),
            "tiny96_clahe": export_tiny(d / "tiny96_clahe.tflite", 96, enhance="clahe", seed=1),
            "mobilenet64": export_mobilenet(d / "mobilenet64.tflite", 64, alpha=0.35),
            "packaged_rsna": Path(shutil.copy(default_model_path(), d / "packaged_rsna.tflite"))}  # what the APK bundles


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
    _need("chromium")
    mounts = {"/": cdp.WEB_DIR, "/models/": next(iter(models.values())).parent,
              "/img/": images["portrait"].parent}
    if "rsna" in images:
        mounts["/rsna/"] = images["rsna"].parent
    with cdp.serve(mounts) as base, cdp.Chromium() as ch:
        ch.navigate(base + "/index.html")
        ch.wait_title()
        yield ch


def _url(images, name):
    return f"/rsna/{images[name].name}" if name == "rsna" else f"/img/{images[name].name}"


def _load(page, model_name):
    return page.evaluate(f"edgeBoneage.loadModelUrl('/models/{model_name}.tflite')", timeout=60)


# ------------------------------------------------------------------------------------------------------------
# browser page vs Python


@pytest.mark.parametrize("size,enhance", [(64, None), (224, None), (96, "hist"), (96, "clahe")])
def test_page_preprocessing_matches_python_pixel_for_pixel(page, images, size, enhance):
    from edge_boneage.io import read_image
    from edge_boneage.preprocess import preprocess

    spec = json.dumps({"input_size": size, "enhance": enhance, "pad_value": 0})
    for name in images:
        got = page.evaluate(f"edgeBoneage.preprocessUrl('{_url(images, name)}', {spec})", timeout=60)
        js = np.frombuffer(base64.b64decode(got["b64"]), np.uint8).reshape(got["height"], got["width"])
        want = preprocess(read_image(images[name])[0], size, enhance)
        assert js.shape == want.shape
        diff = int((js != want).sum())
        assert diff == 0, f"{name} -> {size} ({enhance}): {diff} of {want.size} pixels differ from edge_boneage.preprocess"


def test_page_reads_metadata_like_python(page, models):
    from edge_boneage.tflite_meta import read_metadata

    info = _load(page, "mobilenet64")
    assert info["meta"] == read_metadata(models["mobilenet64"])
    assert info["spec"]["input_size"] == 64
    assert set(info["inputs"]) == {"image", "sex"} and {"age", "probs"} <= set(info["outputs"])
    # the page parses the flatbuffer itself: a model without our entry has none, junk is refused
    assert page.evaluate("edgeBoneage.B.readMetadata(new Uint8Array([0,0,0,0,84,70,76,51,0,0,0,0]))") is None
    with pytest.raises(cdp.PageError, match="TFL3"):
        page.evaluate("edgeBoneage.B.readMetadata(new TextEncoder().encode('not a model'))")


def test_page_age_matches_ai_edge_litert(page, models, images, capsys):
    """LiteRT.js (WASM) in Chromium vs ai-edge-litert in Python on the same .tflite and image: within 0.01 months."""
    import cv2

    from edge_boneage.io import read_image
    from edge_boneage.preprocess import PreprocessSpec
    from edge_boneage.runtime import LiteRTModel
    from edge_boneage.tflite_meta import read_metadata

    rows = []
    for model_name in ("tiny64", "tiny96_clahe", "mobilenet64", "packaged_rsna"):
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
            if model_name == "tiny64" and name == "portrait":
                # the 0.01-month tolerance has teeth: a plausible preprocessing slip moves the age far more
                from edge_boneage.preprocess import letterbox_square

                wrong = cv2.resize(letterbox_square(grey), (64, 64), interpolation=cv2.INTER_LINEAR)[None, :, :, None]
                slip = abs(float(py(image=wrong, sex=np.ones((1, 1), np.float32))["age"][0, 0]) - spread[-1])
                assert slip > 10 * AGE_TOL, f"INTER_LINEAR instead of INTER_AREA moved the age only {slip:.4f} months"
        if model_name.startswith("tiny") or model_name == "packaged_rsna":
            assert max(spread) - min(spread) > 1.0, f"{model_name}: outputs barely depend on the input: {spread}"
    with capsys.disabled():
        print("\nmodel          image      sex  python_age  litertjs_age  |diff| (months)")
        for r in rows:
            print(f"{r[0]:<14} {r[1]:<10} {r[2]:>3}  {r[3]:10.4f}  {r[4]:12.4f}  {r[5]:.2e}")


def test_page_shows_result_and_refuses_missing_sex(page, images):
    _load(page, "tiny64")
    label = page.evaluate(f"edgeBoneage.showUrl('{_url(images, 'portrait')}', 1)", timeout=60)
    assert re.fullmatch(r"\d+ y \d+ m", label)
    assert page.evaluate("document.getElementById('resultcard').hidden") is False
    with pytest.raises(cdp.PageError, match="sex"):
        page.evaluate(f"edgeBoneage.predictUrl('{_url(images, 'portrait')}', null)")


# ------------------------------------------------------------------------------------------------------------
# Java core on the JVM, fixtures from the Python side


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

    out = tmp_path / "classes"
    src = DEMO / "app/src"
    core = sorted((src / "main/java/org/edgeboneage/core").glob("*.java"))
    tests = sorted((src / "test/java/org/edgeboneage/core").glob("*.java"))
    for args in (["-d", str(out / "core"), *map(str, core)],
                 ["-cp", str(out / "core"), "-d", str(out / "test"), *map(str, tests)]):
        subprocess.run(["javac", "-nowarn", "-Xlint:-options", "-source", "8", "-target", "8", "-encoding", "UTF-8",
                        *args], check=True, capture_output=True, text=True, timeout=120)
    proc = subprocess.run(["java", "-Djava.awt.headless=true", "-cp", f"{out / 'core'}:{out / 'test'}",
                           "org.edgeboneage.core.CoreTest", str(fx)], capture_output=True, text=True, timeout=120)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    assert proc.returncode == 0 and m and m.group(2) == "0", proc.stdout[-2000:] + proc.stderr[-2000:]
    n_expected = len(cases) + 2 + 5 + 2 + 5 + 2  # preprocess, decode, metadata, junk, age result, json checks
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
                "assets/web/boneage.js", "assets/web/vendor/litertjs/wasm/litert_wasm_internal.wasm",
                "assets/web/models/default.tflite"} <= names
        assert z.read("assets/web/models/default.tflite") == models["tiny64"].read_bytes()
        assert z.read("assets/web/boneage.js") == (DEMO / "web/boneage.js").read_bytes()
        (tmp_path / "classes.dex").write_bytes(z.read("classes.dex"))
    dex = subprocess.run(["dexdump", str(tmp_path / "classes.dex")], capture_output=True, text=True, check=True).stdout
    for cls in ("Lorg/edgeboneage/demo/MainActivity;", "Lorg/edgeboneage/demo/MainActivity$AssetClient;",
                "Lorg/edgeboneage/core/Preprocess;", "Lorg/edgeboneage/core/TfliteMetadata;"):
        assert f"Class descriptor  : '{cls}'" in dex
    assert not list((DEMO / "build").glob("*.keystore")) or "build/" in (DEMO / ".gitignore").read_text()
