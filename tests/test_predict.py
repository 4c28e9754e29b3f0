"""`edge-boneage predict`: .tflite and .keras give the same age; errors are one line naming the file; no TF for .tflite."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_boneage import EdgeBoneageError
from edge_boneage.cli import main
from edge_boneage.predict import AgePredictor, parse_sex, predict_file, years_months

SIZE = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny age model with the project's I/O contract, saved as .keras and exported to .tflite."""
    import keras

    from edge_boneage.convert.export import export_litert
    from keras_models.layers import SoftmaxExpectation

    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 1), name="image")
    sex = keras.Input((1,), name="sex")
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, sex])
    probs = keras.layers.Dense(19, activation="softmax", name="probs")(x)
    age = SoftmaxExpectation(name="age")(probs)
    model = keras.Model({"image": image, "sex": sex}, {"age": age, "probs": probs})
    d = tmp_path_factory.mktemp("models")
    model.save(d / "tiny.keras")
    export_litert(model, d / "tiny.tflite")
    return d / "tiny.keras", d / "tiny.tflite"


@pytest.fixture()
def radiograph(tmp_path):
    rng = np.random.default_rng(1)
    img = (rng.random((90, 60)) * 255).astype(np.uint8)  # portrait: exercises the letterbox
    path = tmp_path / "hand.png"
    cv2.imwrite(str(path), img)
    return path


def test_keras_and_tflite_agree(models, radiograph):
    keras_path, tflite_path = models
    a = predict_file(tflite_path, radiograph, sex="F")
    b = predict_file(keras_path, radiograph, sex="F")
    assert abs(a.age_months - b.age_months) < 1e-3
    assert np.allclose(a.probs, b.probs, atol=1e-5)
    assert abs(sum(a.probs) - 1) < 1e-4
    expected = float(np.dot(a.probs, [12 * k + 6 for k in range(19)]))
    assert abs(a.age_months - expected) < 1e-2
    assert (a.years, a.months) == years_months(a.age_months)
    m = predict_file(tflite_path, radiograph, sex="M")
    assert m.sex == "M" and a.sex == "F"


def test_missing_sex_predicts_both_and_bad_inputs(models, radiograph, tmp_path):
    _, tflite_path = models
    both = predict_file(tflite_path, radiograph)  # no sex anywhere: both sexes, clearly labelled
    m, f = predict_file(tflite_path, radiograph, sex="M"), predict_file(tflite_path, radiograph, sex="F")
    assert both.sex is None and both.sex_source is None and both.probs is None
    assert both.ages_by_sex == pytest.approx({"M": m.age_months, "F": f.age_months}, abs=1e-4)
    assert "if male" in both.summary() and "if female" in both.summary()
    assert m.sex_source == "argument"
    with pytest.raises(EdgeBoneageError, match="not M or F"):
        parse_sex("X")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    with pytest.raises(EdgeBoneageError, match="bad.png"):
        predict_file(tflite_path, bad, sex="M")
    with pytest.raises(EdgeBoneageError, match="no such model file"):
        AgePredictor(tmp_path / "nope.tflite")


def test_cli_json_and_error_exit(models, radiograph, tmp_path, capsys):
    _, tflite_path = models
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    rc = main(["predict", str(radiograph), str(bad), "--model", str(tflite_path), "--sex", "F", "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert rc == 1
    assert lines[0]["age_months"] > 0 and len(lines[0]["probs"]) == 19
    assert "bad.png" in lines[1]["error"]


def test_tflite_predict_imports_no_tensorflow(models, radiograph):
    _, tflite_path = models
    code = (
        "import sys; from edge_boneage.cli import main;"
        f"rc = main(['predict', {str(radiograph)!r}, '--model', {str(tflite_path)!r}, '--sex', 'M']);"
        "bad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]; assert not bad, bad; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "bone age" in out.stdout


def _dicom(tmp_path, name, **tags):
    from benchmarks.bad_inputs import dicom_dataset, write_dicom

    rng = np.random.default_rng(0)
    ds = dicom_dataset(rng.integers(0, 4000, (40, 30)).astype(np.uint16))
    for k, v in tags.items():
        setattr(ds, k, v)
    return write_dicom(tmp_path / name, ds)


def test_dicom_tags_sex_laterality_and_age(models, tmp_path):
    """PatientSex is used without --sex (and checked against it), laterality R mirrors, the age tags are read."""
    from edge_boneage.io import read_image
    from edge_boneage.predict import AgePredictor, predict_image

    _, tflite_path = models
    left = _dicom(tmp_path, "l.dcm", PatientSex="F", PatientAge="010Y")
    right = _dicom(tmp_path, "r.dcm", PatientSex="F", ImageLaterality="R", PatientBirthDate="20100101",
                   StudyDate="20200701")
    a, ma = read_image(left)
    b, mb = read_image(right)
    np.testing.assert_array_equal(b, a[:, ::-1])
    assert (ma.mirrored, mb.mirrored, mb.laterality) == (False, True, "R")
    assert ma.chronological_age_months == 120.0 and ma.chronological_age_source == "PatientAge"
    assert mb.chronological_age_months == pytest.approx(126.0, abs=0.05)
    pred = AgePredictor(tflite_path)
    p = predict_image(pred, left)
    assert (p.sex, p.sex_source, p.chronological_age_months) == ("F", "dicom", 120.0)
    assert p.bone_minus_chronological_months == pytest.approx(p.age_months - 120.0, abs=0.01)
    assert predict_image(pred, left, sex="F").sex_source == "both"
    with pytest.raises(EdgeBoneageError, match="contradicts the file's DICOM PatientSex F"):
        predict_image(pred, left, sex="M")


def test_environment_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """A file where a folder should be, and a full disk, give one line naming the path and exit 1: no traceback."""
    import errno

    from edge_boneage.cli import main

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rc = main(["synth", "--out", str(blocker / "sub"), "--n", "2", "--size", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and str(blocker) in err[0] and "not a folder" in err[0], err

    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)  # the disk fills up while the images are written
    dest = tmp_path / "full"
    dest.mkdir()
    rc = main(["synth", "--out", str(dest / "out"), "--n", "2", "--size", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "No space left on device (disk full)" in err[0], err
    assert list(dest.iterdir()) == [], "a half-written data set was left behind"
