"""End to end through the CLI (edge_boneage.cli.main): a model file that travels ALONE keeps its whole contract.

Age: trained with a non-default enhancement (--enhance clahe) and the hand crop, the .keras copied alone into an
empty folder, exported, then the .keras and the .tflite predict the same radiograph alike, and the .tflite's
metadata carries enhance=clahe and the crop margin the .keras was trained with. (The age crop margin is not a
`train` option today: the contract's margin, whatever it is, must reach the .tflite unchanged.)

TW3: a stage model trained with --margin 0.25 (not the default 0.1) keeps that margin through `tw3 export` and
`edge-boneage export` (any format: the same crop record), and a .tflite copied alone into an empty folder makes
`tw3 predict` crop with 0.25 and agree with the .keras; a lone stage .keras does not carry its margin, so both
exporters refuse it without --margin (one line) instead of writing the default.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from edge_boneage.cli import main  # noqa: E402
from keras_models.registry import register_model  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export needs TF backend")


@register_model("tiny_lone_age", task="age", description="2-conv test model carrying its contract (test only)")
def build_tiny_lone_age(input_size=32, use_sex=True, width=4, preprocess=None):
    """The smallest age model `train` accepts with a contract: CastToFloat carries `preprocess` like the real ones.
    Registered at import, so test_model_contract (collected after this file) runs it through the contract too."""
    from keras_models.layers import SoftmaxExpectation
    from keras_models.mobilenet import CastToFloat

    image = keras.Input((input_size, input_size, 1), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(CastToFloat(preprocess=preprocess, name="to_float")(image))
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    inputs = {"image": image}
    if use_sex:
        inputs["sex"] = keras.Input((1,), dtype="float32", name="sex")
        x = keras.layers.Concatenate(name="cat")([x, inputs["sex"]])
    probs = keras.layers.Dense(19, activation="softmax", name="probs")(x)
    return keras.Model(inputs, {"age": SoftmaxExpectation(name="age")(probs), "probs": probs}, name="tiny_lone_age")


def _json_out(capsys) -> dict:
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert lines, "no JSON printed"
    return json.loads(lines[-1])


def test_age_model_alone_exports_and_predicts_with_its_contract(tmp_path, capsys):
    from edge_boneage.modelfile import open_model
    from edge_boneage.synth import write_dataset
    from edge_boneage.tflite_meta import read_metadata

    run = tmp_path / "run"
    assert main(["train", "--model", "tiny_lone_age", "--data", "synth", "--synth-n", "16", "--size", "32",
                 "--batch", "8",
                 "--epochs", "1", "--enhance", "clahe", "--crop", "hand", "--val-fraction", "0.5", "--out", str(run),
                 "--verbose", "0"]) == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    keras_path = alone / "age.keras"
    shutil.copy(run / "best.keras", keras_path)  # no run.json, nothing else
    spec = open_model(keras_path).spec
    assert spec.enhance == "clahe" and spec.crop == "hand"
    capsys.readouterr()

    assert main(["export", str(keras_path)]) == 0
    tfl = alone / "age.tflite"
    assert tfl.is_file() and sorted(p.name for p in alone.iterdir()) == ["age.keras", "age.tflite"]
    pre = read_metadata(tfl)["preprocess"]
    assert pre["enhance"] == "clahe" and pre["crop"] == "hand" and pre["crop_margin"] == spec.crop_margin
    assert open_model(tfl).spec == spec  # the whole contract, not only the two fields
    capsys.readouterr()

    syn = write_dataset(tmp_path / "syn", 2, size=128, seed=5)
    img = str(sorted((syn / "images").glob("*.png"))[0])
    assert main(["predict", img, "--model", str(keras_path), "--sex", "F", "--json", "--no-orient"]) == 0
    pk = _json_out(capsys)
    assert main(["predict", img, "--model", str(tfl), "--sex", "F", "--json", "--no-orient"]) == 0
    pl = _json_out(capsys)
    assert pl["age_months"] == pytest.approx(pk["age_months"], abs=0.05)


def test_tw3_stage_margin_survives_export_and_a_lone_tflite(tmp_path, capsys):
    from edge_boneage.synth import write_dataset
    from edge_boneage.tflite_meta import read_metadata
    from edge_boneage.tw3_pipeline import StageModel, TFLITE_META_NAME

    run = tmp_path / "tw3run"
    assert main(["tw3", "train", "--out", str(run), "--arch", "csp_resnext50_tw3", "--model-arg", "width_mult=0.25",
                 "--model-arg", "depths=[1,1,1,1]", "--model-arg", "cardinality=4", "--model-arg", "base_width=4",
                 "--crop", "32", "--margin", "0.25", "--image-size", "128", "--n-train", "2", "--n-val", "2",
                 "--n-test", "2", "--epochs", "1", "--batch", "26", "--verbose", "0"]) == 0
    keras_path = run / "best.keras"
    capsys.readouterr()

    # both exporters write the same crop record (edge-boneage export: any format)
    tw3_tfl, cli_tfl, cli_fp16 = tmp_path / "tw3.tflite", tmp_path / "cli.tflite", tmp_path / "cli_fp16.tflite"
    assert main(["tw3", "export", "--model", str(keras_path), "--out", str(tw3_tfl)]) == 0
    assert main(["export", str(keras_path), "--out", str(cli_tfl), "--check-n", "13"]) == 0
    assert main(["export", str(keras_path), "--out", str(cli_fp16), "--fp16", "--check-n", "13"]) == 0
    assert "margin 0.25 (from run.json)" in capsys.readouterr().out
    records = [read_metadata(p, TFLITE_META_NAME) for p in (tw3_tfl, cli_tfl, cli_fp16)]
    assert records[0] == records[1] == records[2]
    assert records[0]["crop"]["margin"] == 0.25 and records[0]["crop"]["margin_from"] == "run.json"
    assert read_metadata(cli_fp16)["quantization"]["mode"] == "fp16"

    # the .tflite alone in an empty folder crops as training did, and agrees with the .keras in its run
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(cli_tfl, alone / "stage.tflite")
    assert StageModel(alone / "stage.tflite").margin == 0.25
    syn = write_dataset(tmp_path / "syn", 2, size=128, seed=5, age_range=(6, 15))
    img, boxes = str(syn / "images" / "1.png"), str(syn / "boxes.csv")
    assert main(["tw3", "predict", img, "--model", str(keras_path), "--boxes", boxes, "--sex", "F", "--json"]) == 0
    pk = _json_out(capsys)
    assert main(["tw3", "predict", img, "--model", str(alone / "stage.tflite"), "--boxes", boxes, "--sex", "F",
                 "--json"]) == 0
    pl = _json_out(capsys)
    assert pk["crop"] == pl["crop"] == {"size": 32, "margin": 0.25}
    for b in pk["bones"]:
        assert pl["bones"][b]["stage"] == pk["bones"][b]["stage"]
        np.testing.assert_allclose(pl["bones"][b]["probs"], pk["bones"][b]["probs"], atol=1e-4)

    # a lone stage .keras does not know its margin: both exporters refuse it (one line, nothing written)
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(keras_path, lone / "best.keras")
    for argv in (["tw3", "export", "--model", str(lone / "best.keras"), "--out", str(lone / "a.tflite")],
                 ["export", str(lone / "best.keras"), "--out", str(lone / "b.tflite")]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "pass --margin" in err, err
    assert sorted(p.name for p in lone.iterdir()) == ["best.keras"]
    assert main(["export", str(lone / "best.keras"), "--out", str(lone / "b.tflite"), "--margin", "0.25",
                 "--check-n", "13"]) == 0
    assert read_metadata(lone / "b.tflite", TFLITE_META_NAME)["crop"]["margin"] == 0.25
