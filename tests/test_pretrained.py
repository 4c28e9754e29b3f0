"""The packaged pretrained age model (edge_boneage/pretrained/): it is there, small, float32 LiteRT with metadata that
agrees with MODEL_CARD.md, `edge-boneage predict` uses it without --model and without TensorFlow, and on real RSNA
validation images (never trained on) its ages are in range, ordered young < old and not all the same."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_boneage.pretrained import HERE, default_model_path

REPO = Path(__file__).resolve().parents[1]
CARD = HERE / "MODEL_CARD.md"
MAX_MONTHS = 19 * 12  # the 19 one-year classes end at 228 months


@pytest.fixture(scope="module")
def model_path() -> Path:
    return default_model_path()


@pytest.fixture(scope="module")
def meta(model_path):
    from edge_boneage.tflite_meta import read_metadata

    return read_metadata(model_path)


def test_packaged_model_is_small_float_litert(model_path):
    assert model_path.name == "boneage_age.tflite", "the LiteRT model (no TensorFlow needed) must be the default"
    size = model_path.stat().st_size
    # an EfficientNet-Lite0 (3.4 M parameters) in float32 is ~13 MiB; the int8 file beside it is ~4 MiB
    assert 50_000 < size < 16 * 2**20, f"{model_path}: {size} bytes (shipped model must stay small)"
    from edge_boneage.runtime import LiteRTModel

    m = LiteRTModel(model_path)
    ins, outs = m.input_details(), m.output_details()
    assert set(ins) == {"image", "sex"}
    assert set(outs) == {"age", "probs", "feature_residual"}  # the last: the quality gate's feature check
    img = ins["image"]
    assert np.dtype(img["dtype"]) == np.uint8 and int(img["shape"][1]) == int(img["shape"][2])
    assert np.dtype(outs["age"]["dtype"]) == np.float32  # float32 model, not quantised


def test_packaged_files_carry_the_feature_check_fitted_on_the_protocol(model_path):
    """The float32 file and the .keras carry edge_boneage.featuregate's check, fitted on the training split with a
    validation-quantile threshold. The int8 file carries it too (the residual a float island of the int8 body, with
    the same threshold; BENCHMARKS.md int8_feature_check compares the two files' flags)."""
    from edge_boneage.modelfile import open_model
    from edge_boneage.tflite_meta import read_metadata

    f32 = open_model(model_path)
    keras_gate = open_model(model_path.with_suffix(".keras")).feature_gate
    for gate in (f32.feature_gate, keras_gate):
        assert gate and gate["k"] == 64 and gate["val_quantile_pct"] == 99.8 and gate["val_n"] == 1130
        assert "training-split" in gate["fitted_on"] and 0 < gate["threshold"] < 100
    assert f32.feature_gate["threshold"] == pytest.approx(keras_gate["threshold"])
    int8 = model_path.with_name("boneage_age_int8.tflite")
    rec = read_metadata(int8)["outputs"]["feature_residual"]
    assert "disabled" not in rec and open_model(int8).feature_gate["threshold"] == pytest.approx(keras_gate["threshold"])


def test_metadata_describes_the_model(model_path, meta):
    assert meta is not None, f"{model_path}: no edge_boneage metadata"
    from edge_boneage.preprocess import PreprocessSpec
    from edge_boneage.runtime import LiteRTModel

    size = int(LiteRTModel(model_path).input_details()["image"]["shape"][1])
    spec_dict = (meta.get("input") or {}).get("preprocess") or meta.get("preprocess")
    spec = PreprocessSpec.from_dict(spec_dict)
    assert spec.input_size == size
    assert meta["quantization"]["mode"] == "float32"
    assert meta["input"]["sex_input"] is True
    centres = meta["outputs"]["probs"]["class_centres_months"]
    cal = meta["outputs"]["age"]["calibration"][-1]  # the bias correction folded into the centres
    assert centres == pytest.approx([cal["a"] * (12.0 * k + 6.0) + cal["b"] for k in range(19)], abs=1e-6)
    assert 0.8 < cal["a"] < 1.25 and cal["n"] > 1000 and "validation" in cal["fitted_on"]
    iv = meta["outputs"]["age"]["interval"]
    assert iv["coverage"] == 0.9 and all(0 < b["half_width_months"] < 60 for b in iv["bands"])
    # the contract of a hand-cropped model trained on the squeezed 100x100 set travels in the file
    assert (spec.frame, spec.crop) == ("squeeze", "hand") and spec.crop_rule
    mae = meta["source_validation_mae_months"]
    assert isinstance(mae, float) and 0 < mae < 60


def test_model_card_states_the_metadata_val_mae(meta):
    text = CARD.read_text()
    m = re.search(r"Validation MAE \(held-out split\): \*\*([0-9.]+) months\*\*", text)
    assert m, f"{CARD}: no 'Validation MAE (held-out split): **X months**' line"
    assert float(m.group(1)) == pytest.approx(round(meta["source_validation_mae_months"], 2), abs=0.006)
    assert "not for diagnosis" in text.lower() or "not diagnosis" in text.lower()


def _synthetic_png(path: Path) -> Path:
    from edge_boneage.synth import generate

    batch = generate(1, size=128, seed=3)
    cv2.imwrite(str(path), batch.images[0])
    return path


def test_predict_cli_uses_packaged_model_without_tensorflow(tmp_path, model_path):
    png = _synthetic_png(tmp_path / "hand.png")
    code = ("import json, sys; from edge_boneage.cli import main; rc = main(['predict', sys.argv[1], '--sex', 'F', "
            "'--json']); print(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules}))")
    r = subprocess.run([sys.executable, "-c", code, str(png)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    pred, status = lines[0], lines[-1]
    assert status == {"rc": 0, "tf": False, "keras": False}
    assert Path(pred["model"]).resolve() == model_path.resolve()
    assert 0.0 <= pred["age_months"] <= MAX_MONTHS and pred["sex"] == "F"
    assert len(pred["probs"]) == 19 and math.isclose(sum(pred["probs"]), 1.0, abs_tol=1e-4)


def test_predict_without_sex_reports_both(tmp_path, capsys):
    from edge_boneage.cli import main

    png = _synthetic_png(tmp_path / "hand.png")
    assert main(["predict", str(png)]) == 0  # the model has a sex input and none is known: both, labelled
    out = capsys.readouterr().out
    assert "sex unknown" in out and "if male" in out and "if female" in out


def test_real_validation_images_sane(rsna_dir, model_path):
    """3 held-out RSNA images (the training engine's split, seed 0, 10 %), young / middle / old."""
    from edge_boneage import datasets
    from edge_boneage.predict import AgePredictor, predict_image

    res = datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100")
    samples = list(getattr(res, "samples", res))
    _, val = datasets.stratified_split(samples, val_fraction=0.1, seed=0)
    picks = [min(val, key=lambda s: (abs(s.boneage_months - target), s.id)) for target in (30, 120, 200)]
    predictor = AgePredictor(model_path)
    pred = np.array([predict_image(predictor, s.path, "M" if s.male else "F").age_months for s in picks])
    true = np.array([s.boneage_months for s in picks])
    assert np.all(np.isfinite(pred)) and np.all((pred >= 0) & (pred <= MAX_MONTHS)), pred
    assert np.ptp(pred) > 12.0, f"predictions hardly differ: {pred}"
    assert pred[0] < pred[2], f"a {true[0]:.0f}-month hand got an older age than a {true[2]:.0f}-month one: {pred}"
    # a constant 114-month guess scores ~61 months here; the trained model must do clearly better
    assert np.abs(pred - true).mean() < 45.0, (true, pred)


def test_packaged_keras_is_the_source_of_the_litert_file(model_path, meta):
    """boneage_age.keras (for fine-tuning and other exports) is the exact file the .tflite was exported from (sha256 in
    the metadata), loads with safe_mode, and gives the same ages as the .tflite."""
    import hashlib

    keras_path = HERE / "boneage_age.keras"
    assert keras_path.is_file() and keras_path.stat().st_size < 16 * 2**20
    assert hashlib.sha256(keras_path.read_bytes()).hexdigest() == meta["model"]["source_sha256"]
    pytest.importorskip("keras", reason="the [train] extra (keras) is not installed")
    from edge_boneage.runtime import LiteRTModel
    from edge_boneage.synth import generate
    from edge_boneage.train import load_model

    model = load_model(keras_path)  # safe_mode=True
    size = int(LiteRTModel(model_path).input_details()["image"]["shape"][1])
    batch = generate(4, size=size, seed=11)
    x = {"image": batch.images[..., None].astype(np.uint8), "sex": batch.male[:, None].astype(np.float32)}
    want = np.asarray(model.predict(x, verbose=0)["age"]).reshape(-1)
    got = np.asarray(LiteRTModel(model_path)(**x)["age"]).reshape(-1)
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_int8_file_beside_it_carries_the_same_contract(meta):
    from edge_boneage.tflite_meta import read_metadata

    p = HERE / "boneage_age_int8.tflite"
    if not p.is_file():
        pytest.skip("no int8 file packaged (its parity gate refused it: see MODEL_CARD.md)")
    m8 = read_metadata(p)
    assert m8["quantization"]["mode"] == "int8" and m8["parity"]["passed"]
    assert m8["preprocess"] == meta["preprocess"] and m8["model"]["source_sha256"] == meta["model"]["source_sha256"]
    assert p.stat().st_size < 0.4 * default_model_path().stat().st_size
