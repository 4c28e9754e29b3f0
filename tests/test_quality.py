"""The input quality gate (edge_boneage.quality): non-hand pictures are flagged with the expected reasons, real RSNA
radiographs pass, and `predict` reports it (`quality_ok` / `quality_reasons` in --json, a WARNING line, --strict exit 2).
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_boneage.io import read_image
from edge_boneage.quality import GATE_VERSION, QualityResult, assess, colourfulness

RNG = np.random.default_rng(0)


def _png(path, arr):
    Image.fromarray(np.ascontiguousarray(arr)).save(path)
    return path


def _coloured_shapes(h=300, w=400, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    for k in range(10):
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(30, w - 30)), int(rng.integers(30, h - 30))
        if k % 2:
            cv2.circle(img, (cx, cy), int(rng.integers(15, 60)), col, -1)
        else:
            cv2.rectangle(img, (cx - 40, cy - 25), (cx + 40, cy + 25), col, -1)
    return img


def _test_split(rsna_dir):
    from edge_boneage import datasets
    from edge_boneage.dataconfig import protocol_split

    samples = datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100").samples
    return protocol_split(samples, rsna_dir)[2]


# ------------------------------------------------------------------------------------------------ flagged pictures


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_image_is_constant_and_has_no_hand(value):
    r = assess(np.full((256, 256), value, np.uint8))
    assert isinstance(r, QualityResult) and not r.ok
    assert "constant image" in r.reasons and "no hand found" in r.reasons, r.reasons
    assert r.scores["gate"] == GATE_VERSION and r.scores["spread"] == 0


@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (63, 63), (63, 500)])
def test_tiny_images_are_too_small(shape):
    r = assess(RNG.integers(0, 256, shape, dtype=np.uint8))
    h, w = shape
    assert not r.ok and f"too small ({w}x{h} < 64 px)" in r.reasons, r.reasons


def test_64_px_is_not_too_small():
    r = assess(RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    assert not any(x.startswith("too small") for x in r.reasons)


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "salt-and-pepper"])
@pytest.mark.parametrize("size", [100, 512, 1500])
def test_noise_is_noise_like(kind, size):
    rng = np.random.default_rng(size)
    if kind == "uniform":
        a = rng.integers(0, 256, (size, size), dtype=np.uint8)
    elif kind == "gaussian":
        a = np.clip(rng.normal(128, 40, (size, size)), 0, 255).astype(np.uint8)
    else:
        a = np.full((size, size), 128, np.uint8)
        u = rng.random((size, size))
        a[u < 0.05], a[u > 0.95] = 0, 255
    r = assess(a)
    assert not r.ok and "noise-like" in r.reasons, (r.reasons, r.scores["ac64"])
    assert abs(r.scores["ac64"]) < 0.2


def test_coloured_shapes_file_is_a_colour_photo(tmp_path):
    img, meta = read_image(_png(tmp_path / "shapes.png", _coloured_shapes()))
    assert meta.photometric == "RGB" and img.ndim == 2  # the decoder made it grey; the gate reads the colour back
    r = assess(img, meta)
    assert not r.ok and "colour photo" in r.reasons, r.reasons
    assert r.scores["colourfulness"] > 15
    # the same check on the ImageMeta's dict (what Prediction.image_meta holds) and on the RGB array itself
    assert "colour photo" in assess(img, meta.to_dict()).reasons
    assert "colour photo" in assess(_coloured_shapes()).reasons


def test_coloured_shapes_jpeg_is_a_colour_photo(tmp_path):
    p = tmp_path / "shapes.jpg"
    Image.fromarray(_coloured_shapes()).save(p, quality=85)
    assert "colour photo" in assess(*read_image(p)).reasons


def test_grey_saved_as_rgb_is_not_colour(tmp_path):
    y, x = np.mgrid[0:200, 0:160]
    g = np.clip(40 + 150 * np.exp(-(((x - 80) / 40.0) ** 2 + ((y - 100) / 60.0) ** 2)) + RNG.normal(0, 8, y.shape),
                0, 255).astype(np.uint8)
    img, meta = read_image(_png(tmp_path / "grey_rgb.png", np.stack([g, g, g], -1)))
    r = assess(img, meta)
    assert r.scores["colourfulness"] == 0.0 and "colour photo" not in r.reasons
    assert colourfulness(np.stack([g, g, g], -1)) == 0.0


def test_rendered_text_has_few_grey_levels():
    im = np.full((400, 600), 255, np.uint8)
    for i, t in enumerate(["Bone age", "Greulich and Pyle", "0123456789"]):
        cv2.putText(im, t, (20, 90 + 110 * i), cv2.FONT_HERSHEY_SIMPLEX, 2.0, 0, 4, cv2.LINE_AA)
    r = assess(im)
    assert not r.ok and "few grey levels" in r.reasons, r.reasons


def test_gradient_is_too_smooth():
    g = np.tile(np.linspace(0, 255, 300).astype(np.uint8), (400, 1))
    r = assess(g)
    assert not r.ok and "too smooth" in r.reasons, r.reasons


def test_reasons_have_details():
    r = assess(RNG.integers(0, 256, (128, 128), dtype=np.uint8))
    assert set(r.reasons) == set(r.scores["details"]) and all(r.scores["details"].values())
    assert r.to_dict()["ok"] is False


def test_bad_input_arrays_raise():
    with pytest.raises(ValueError, match="2-D uint8"):
        assess(np.zeros((100, 100), np.float32))
    with pytest.raises(ValueError, match="2-D uint8"):
        assess(np.zeros((0, 100), np.uint8))


def test_quality_imports_no_tensorflow_or_keras():
    code = ("import sys, edge_boneage.quality\n"
            "print([k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'jax', 'torch', 'PIL')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------ real radiographs


def test_real_test_split_images_pass(rsna_dir):
    """The first 40 images of the protocol's test split (no test image set a threshold) all pass."""
    picks = sorted(_test_split(rsna_dir), key=lambda s: s.id)[:40]
    flagged = {s.id: assess(*read_image(s.path)).reasons for s in picks}
    flagged = {k: v for k, v in flagged.items() if v}
    assert not flagged, flagged


def test_real_exposure_ruined_is_flagged(rsna_dir):
    s = sorted(_test_split(rsna_dir), key=lambda s: s.id)[0]
    img, meta = read_image(s.path)
    assert assess(img, meta).ok
    assert "hopeless exposure" in assess(img // 20).reasons
    assert not assess(np.maximum(img, 250)).ok  # clipped to 250+: hopeless exposure or constant
    assert "hopeless exposure" in assess(255 - img // 20).reasons


def test_real_fullres_films_pass_as_png_and_dicom(rsna_dir, tmp_path):
    from benchmarks.bad_inputs import dicom_dataset, write_dicom

    ids = sorted(p.stem for p in (rsna_dir / "fullres").glob("*.png"))[:4]
    assert ids, "no full-resolution films"
    for i in ids:
        img, meta = read_image(rsna_dir / "fullres" / f"{i}.png")
        r = assess(img, meta)
        assert r.ok, (i, r.reasons, r.scores["details"])
        d_img, d_meta = read_image(write_dicom(tmp_path / f"{i}.dcm", dicom_dataset(img)))
        rd = assess(d_img, d_meta)
        assert rd.ok and rd.scores["colour_source"] == "grey DICOM", (i, rd.reasons)


def test_real_grey_film_saved_as_rgb_passes(rsna_dir, tmp_path):
    s = sorted(_test_split(rsna_dir), key=lambda s: s.id)[1]
    g = read_image(s.path)[0]
    img, meta = read_image(_png(tmp_path / "rgb.png", np.stack([g, g, g], -1)))
    r = assess(img, meta)
    assert meta.photometric == "RGB" and r.ok and r.scores["colourfulness"] == 0.0, r.reasons


# ------------------------------------------------------------------------------------------------ predict / CLI


@pytest.fixture()
def noise_png(tmp_path):
    return _png(tmp_path / "noise.png", np.random.default_rng(3).integers(0, 256, (300, 300), dtype=np.uint8))


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_predict_strict_exit_codes_and_json(noise_png, tmp_path, capsys):
    from edge_boneage.cli import main

    assert main(["predict", str(noise_png), "--sex", "F", "--json"]) == 0  # flagged, not strict: still 0
    (rec,) = _json_lines(capsys.readouterr().out)
    assert rec["quality_ok"] is False and "noise-like" in rec["quality_reasons"]
    assert np.isfinite(rec["age_months"])  # the age is still given

    assert main(["predict", str(noise_png), "--sex", "F", "--json", "--strict"]) == 2
    (rec,) = _json_lines(capsys.readouterr().out)
    assert rec["quality_ok"] is False

    black = _png(tmp_path / "black.png", np.zeros((200, 200), np.uint8))
    tiny = _png(tmp_path / "tiny.png", np.full((1, 1), 7, np.uint8))
    assert main(["predict", str(black), str(tiny), "--sex", "F", "--strict"]) == 2
    out = capsys.readouterr().out
    assert out.count("WARNING: not accepted as a hand radiograph:") == 2
    assert "constant image" in out and "too small (1x1 < 64 px)" in out and "age shown for reference only" in out

    missing = tmp_path / "missing.png"
    assert main(["predict", str(missing), str(noise_png), "--sex", "F", "--strict"]) == 1  # read errors come first


def test_predict_human_warning_line(noise_png, capsys):
    from edge_boneage.cli import main

    assert main(["predict", str(noise_png), "--sex", "F"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(str(noise_png)) and "bone age" in lines[0]
    assert lines[1].strip().startswith("WARNING: not accepted as a hand radiograph: noise-like")


def test_predict_strict_passes_real_radiographs(rsna_dir, noise_png, capsys):
    from edge_boneage.cli import main

    picks = [str(s.path) for s in sorted(_test_split(rsna_dir), key=lambda s: s.id)[:3]]
    picks.append(str(rsna_dir / "fullres" / sorted(p.name for p in (rsna_dir / "fullres").glob("*.png"))[0]))
    assert main(["predict", *picks, "--sex", "F", "--json", "--strict"]) == 0
    recs = _json_lines(capsys.readouterr().out)
    assert len(recs) == 4 and all(r["quality_ok"] and r["quality_reasons"] == [] for r in recs), recs
    assert main(["predict", *picks, "--sex", "F", "--strict"]) == 0
    assert "WARNING" not in capsys.readouterr().out
    assert main(["predict", picks[0], str(noise_png), "--sex", "F", "--json", "--strict"]) == 2  # one flagged
    ok = [r["quality_ok"] for r in _json_lines(capsys.readouterr().out)]
    assert ok == [True, False]


def test_a_given_hand_box_is_used_like_the_gates_own(rsna_dir):
    from edge_boneage.handcrop import locate_hand

    img, meta = read_image(sorted(_test_split(rsna_dir), key=lambda s: s.id)[2].path)
    own = assess(img, meta)
    for box in (locate_hand(img), locate_hand(img).to_dict()):
        given = assess(img, meta, box=box)
        assert given.ok == own.ok and {k: given.scores[k] for k in ("found", "coverage", "fill", "aspect")} == \
            {k: own.scores[k] for k in ("found", "coverage", "fill", "aspect")}
    empty = locate_hand(np.zeros((100, 100), np.uint8))
    assert "no hand found" in assess(img, meta, box=empty).reasons
