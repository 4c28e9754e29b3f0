"""`edge-boneage export`: quantisation with float islands, the parity gate, metadata, calibration data.

Tiny models (32-64 px) so the file stays fast: an LBP probe model (LBP codes as an output, checked exactly) and a
small age model with the RIL parts (LBP -> conv -> affine region sampler -> softmax expectation) saved as .keras.
"""

from __future__ import annotations

import json
import os

from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from edge_boneage.convert import export as E  # noqa: E402
from edge_boneage.convert.quantize import convert_model, float_island_layers, island_nodes  # noqa: E402
from edge_boneage import EdgeBoneageError  # noqa: E402
from edge_boneage.synth import generate  # noqa: E402
from edge_boneage.tflite_meta import read_metadata  # noqa: E402
from keras_models.layers import AffineGridSampler, LocalBinaryPattern, SoftmaxExpectation  # noqa: E402
from keras_models.mobilenet import AGE_CENTRES_MONTHS, CastToFloat, RegionAffine  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export needs TF backend")


def _lbp_probe():
    """image -> LBP codes ("lbp") and a conv on them ("feat"): the codes are checked exactly."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 64, 1), dtype="uint8", name="image")
    codes = LocalBinaryPattern(method="ror", name="lbp")(CastToFloat(name="to_float")(inp))
    feat = keras.layers.Conv2D(4, 3, name="conv")(keras.layers.Rescaling(1 / 255.0, name="scale")(codes))
    return keras.Model({"image": inp}, {"lbp": codes, "feat": feat})


def _island_age_model(size=32):
    """A small age model with the RIL float islands (LBP, affine region sampler) and the project's I/O."""
    keras.utils.set_random_seed(1)
    image = keras.Input((size, size, 1), dtype="uint8", name="image")
    sex = keras.Input((1,), dtype="float32", name="sex")
    x = LocalBinaryPattern(method="ror", name="lbp_ror")(CastToFloat(name="to_float")(image))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(x)
    fmap = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(fmap)
    raw = keras.layers.Dense(8, name="loc")(pooled)
    theta = RegionAffine(2, name="theta")(raw)
    crops = AffineGridSampler(output_size=(4, 4), name="sampler")([fmap, theta])
    feats = keras.layers.Flatten(name="flat")(crops)
    feats = keras.layers.Concatenate(name="cat")([feats, keras.layers.Dense(4, name="sex_emb")(sex)])
    probs = keras.layers.Dense(19, activation="softmax", name="probs")(feats)
    age = SoftmaxExpectation(centres=AGE_CENTRES_MONTHS, name="age")(probs)
    return keras.Model({"image": image, "sex": sex}, {"age": age, "probs": probs}, name="tiny_ril")


@pytest.fixture(scope="module")
def probe_data():
    b = generate(12, 64, seed=3)
    calib = [{"image": b.images[i][None, ..., None]} for i in range(8)]
    check = {"image": b.images[8:][..., None]}
    return calib, check


@pytest.fixture(scope="module")
def probe():
    return _lbp_probe()


def _run(tmp_path, data, inputs, name="m.tflite"):
    from edge_boneage.convert.litert import validate_in_subprocess

    p = tmp_path / name
    p.write_bytes(data)
    return validate_in_subprocess(p, inputs)


def test_int8_keeps_lbp_in_float_and_exact(probe, probe_data, tmp_path):
    calib, check = probe_data
    ref = np.asarray(probe(check)["lbp"])
    assert float_island_layers(probe) == {"lbp": "LocalBinaryPattern"}
    data, info = convert_model(probe, "int8", representative=calib, io="float32")
    assert info["float_layers"] == ["lbp"] and info["denylisted_nodes"] >= 4
    assert info["ops"]["island_ops"] == info["ops"]["island_float_ops"] > 0
    assert info["ops"]["int8_ops"] > 0  # the rest of the graph is integer
    out = _run(tmp_path, data, check)
    np.testing.assert_array_equal(out["lbp"], ref)  # every LBP code exact

    # the same model with the LBP quantised too: many codes wrong (why the island exists)
    data_all, info_all = convert_model(probe, "int8", representative=calib, io="float32", keep_float=[])
    assert info_all["float_layers"] == [] and info_all["ops"]["island_float_ops"] < info_all["ops"]["island_ops"]
    wrong = np.mean(_run(tmp_path, data_all, check, "all.tflite")["lbp"] != ref)
    assert wrong > 0.05


def test_fp16_restores_float32_lbp_weights(probe, probe_data, tmp_path):
    """fp16-rounded LBP kernels (0.70711 -> 0.70703) flip some codes; the exporter puts float32 weights back."""
    _, check = probe_data
    ref = np.asarray(probe(check)["lbp"])
    data, info = convert_model(probe, "fp16")
    assert info["restored_float32_weights"] >= 2
    np.testing.assert_array_equal(_run(tmp_path, data, check)["lbp"], ref)
    data_plain, _ = convert_model(probe, "fp16", keep_float=[])
    assert np.any(_run(tmp_path, data_plain, check, "plain.tflite")["lbp"] != ref)


def test_island_nodes_match_only_layer_scopes(probe):
    data, _ = convert_model(probe, "float32")
    nodes = island_nodes(data, ["lbp"])
    assert nodes and all("/lbp_" in n or "/lbp/" in n for n in nodes)
    assert island_nodes(data, []) == []


@pytest.fixture(scope="module")
def age_keras(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    path = d / "tiny.keras"
    _island_age_model().save(path)
    (d / "run.json").write_text(json.dumps({"config": {"model": "tiny_ril", "enhance": None},
                                            "result": {"val_overall": {"mae_months": 12.5}}}))
    return path


def test_export_float32_metadata_round_trip(age_keras, tmp_path):
    out = tmp_path / "f32.tflite"
    res = E.export(age_keras, out, quantization="float32", check_n=8, log=lambda *_: None)
    assert res.written and res.passed and out.is_file()
    assert res.parity["max_abs_diff_age"] <= 1e-4 * 230 and res.parity["max_abs_diff_probs"] <= 1e-4
    meta = read_metadata(out)
    assert meta["model"]["name"] == "tiny_ril" and meta["model"]["task"] == "age"
    assert meta["input"]["sex_input"] is True and meta["input"]["image"]["size"] == 32
    assert meta["preprocess"]["input_size"] == 32 and meta["preprocess"]["letterbox"]
    assert meta["outputs"]["probs"]["class_centres_months"] == AGE_CENTRES_MONTHS
    assert meta["outputs"]["age"]["unit"] == "months"
    assert meta["quantization"]["mode"] == "float32"
    assert meta["parity"]["status"] == "PASSED" and meta["parity"]["n"] == 8
    assert meta["source_validation_mae_months"] == 12.5
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_export_int8_cli_says_what_stays_float(age_keras, tmp_path, capsys):
    from edge_boneage.cli import main

    out = tmp_path / "q.tflite"
    rc = main(["export", str(age_keras), "--out", str(out), "--int8", "--io", "int8", "--calib-n", "16",
               "--check-n", "8"])
    text = capsys.readouterr().out
    assert rc == 0, text
    # the LBP, the sampler and the expected-age head (SoftmaxExpectation + the softmax feeding it) stay float
    assert ("kept in float32: age (SoftmaxExpectation), lbp_ror (LocalBinaryPattern), probs (Dense), "
            "sampler (AffineGridSampler)") in text
    meta = read_metadata(out)
    q = meta["quantization"]
    assert q["mode"] == "int8" and q["kept_float_layers"] == {"lbp_ror": "LocalBinaryPattern",
                                                            "sampler": "AffineGridSampler",
                                                            "age": "SoftmaxExpectation", "probs": "Dense"}
    assert set(q["kept_float_reason"]) == {"LocalBinaryPattern", "AffineGridSampler", "SoftmaxExpectation",
                                           "Dense"}
    assert q["io_tensors"]["inputs"]["image"]["dtype"] == "uint8"
    assert q["io_tensors"]["inputs"]["sex"]["dtype"] == "int8"
    assert q["io_tensors"]["outputs"]["age"]["dtype"] == "int8"
    assert "synth" in q["calibration"]
    p = meta["parity"]
    assert p["status"] == "PASSED" and "age_mae_vs_keras_months" in p and "age_mae_vs_labels_months" in p
    from edge_boneage.runtime import LiteRTModel

    m = LiteRTModel(out)  # runs in this process too: int8 I/O (de)quantised by the runtime
    b = generate(2, 64, seed=5)
    import cv2

    img = np.stack([cv2.resize(i, (32, 32), interpolation=cv2.INTER_AREA) for i in b.images])[..., None]
    age = m(image=img, sex=b.male[:, None].astype(np.float32))["age"]
    assert age.shape == (2, 1) and np.all((age >= 0) & (age <= 230))


def test_gate_refuses_and_force_marks(age_keras, tmp_path):
    out = tmp_path / "bad.tflite"
    with pytest.raises(EdgeBoneageError, match=r"bad\.tflite: parity check failed \(dynamic\).*no file written"):
        E.export(age_keras, out, quantization="dynamic", check_n=8, limits={"max_age_mae": 0.0},
                 log=lambda *_: None)
    assert not out.exists() and not list(tmp_path.iterdir())
    res = E.export(age_keras, out, quantization="dynamic", check_n=8, limits={"max_age_mae": 0.0}, force=True,
                   log=lambda *_: None)
    assert res.forced and out.is_file()
    assert read_metadata(out)["parity"]["status"] == "FAILED (forced)"


def test_compare_rules():
    data = E.DataSet({"image": np.zeros((3, 4, 4, 1), np.uint8)}, {"age_months": np.array([10.0, 20.0, 30.0])})
    k = {"age": np.array([[10.0], [20.0], [30.0]]), "probs": np.full((3, 19), 1 / 19)}
    same = E.compare("float32", k, {kk: v + 5e-5 for kk, v in k.items()}, data, "age")
    assert same["passed"] and same["age_mae_vs_labels_months"] == pytest.approx(5e-5)
    off = E.compare("float32", k, {"age": k["age"] + 0.01, "probs": k["probs"]}, data, "age")
    assert not off["passed"] and "age" in off["reason"]
    nan = E.compare("int8", k, {"age": k["age"] * np.nan, "probs": k["probs"]}, data, "age")
    assert not nan["passed"] and "non-finite" in nan["reason"]
    q = E.compare("int8", k, {"age": k["age"] + 2.0, "probs": k["probs"]}, data, "age")
    assert q["passed"] and q["age_mae_vs_keras_months"] == pytest.approx(2.0)
    assert not E.compare("int8", k, {"age": k["age"] + 4.0, "probs": k["probs"]}, data, "age")["passed"]
    assert E.compare("fp16", k, {"age": k["age"] + 0.9, "probs": k["probs"] + 0.009}, data, "age")["passed"]
    assert not E.compare("fp16", k, {"age": k["age"] + 1.1, "probs": k["probs"]}, data, "age")["passed"]
    assert not E.compare("fp16", k, {"age": k["age"], "probs": k["probs"] + 0.02}, data, "age")["passed"]


def test_calibration_data_synth_and_errors(age_keras):
    model = E.load_keras_model(age_keras)
    d = E.make_data(model, "synth", 5, seed=1)
    assert d.inputs["image"].shape == (5, 32, 32, 1) and d.inputs["image"].dtype == np.uint8
    assert d.inputs["sex"].shape == (5, 1) and len(d.samples()) == 5 and d.samples()[0]["image"].shape[0] == 1
    with pytest.raises(EdgeBoneageError, match="--rsna-dir"):
        E.make_data(model, "rsna", 2, seed=1)
    with pytest.raises(EdgeBoneageError, match="unknown calibration source"):
        E.make_data(model, "imagenet", 2, seed=1)


def test_calibration_data_rsna(age_keras, rsna_dir):
    model = E.load_keras_model(age_keras)
    d = E.make_data(model, "rsna", 4, seed=2, rsna_dir=rsna_dir)
    assert d.inputs["image"].shape == (4, 32, 32, 1) and d.inputs["image"].max() > 0
    assert np.all((d.labels["age_months"] > 0) & (d.labels["age_months"] < 250))
    d2 = E.make_data(model, "rsna", 4, seed=2, rsna_dir=rsna_dir, offset=4)  # check set: disjoint images
    assert not np.array_equal(d.inputs["image"], d2.inputs["image"])


def test_load_errors(tmp_path):
    with pytest.raises(EdgeBoneageError, match="no such model file"):
        E.load_keras_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EdgeBoneageError, match="bad.keras: cannot load Keras model"):
        E.load_keras_model(bad)


def test_int8_hard_swish_runs_in_one_xnnpack_partition(tmp_path):
    """The converter's int8 HARD_SWISH is not taken by XNNPACK (it splits the graph); the exporter rewrites it."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_boneage.convert.quantize import decompose_hard_swish

    keras.utils.set_random_seed(2)
    inp = keras.Input((24, 24, 1), dtype="uint8", name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inp))
    x = keras.layers.Activation("hard_swish", name="hs")(x)
    x = keras.layers.Conv2D(8, 1, name="c2")(x)
    model = keras.Model({"image": inp}, {"out": x})
    clone, n = decompose_hard_swish(model)
    assert n == 1
    img = {"image": np.random.default_rng(0).integers(0, 256, (2, 24, 24, 1)).astype(np.uint8)}
    np.testing.assert_allclose(np.asarray(clone(img)["out"]), np.asarray(model(img)["out"]), atol=1e-6)
    calib = [{"image": img["image"][i:i + 1]} for i in range(2)]

    def delegate_parts(data):
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        ops = [o["op_name"] for o in it._get_ops_details()]
        return ops.count("DELEGATE"), ops

    fixed, info = convert_model(model, "int8", representative=calib, io="int8")
    assert info["hard_swish_decomposed"] == 1
    parts, ops = delegate_parts(fixed)
    assert "HARD_SWISH" not in ops and parts == 1
    fused, _ = convert_model(model, "int8", representative=calib, io="int8", xnnpack_hard_swish=False)
    parts0, ops0 = delegate_parts(fused)
    assert "HARD_SWISH" in ops0 and parts0 > 1  # what the fix avoids


def test_gate_refuses_a_model_that_crashes_the_interpreter(age_keras, tmp_path, monkeypatch):
    """A child-process crash (e.g. SIGABRT in invoke) is a parity failure: reason reported, nothing written."""
    import edge_boneage.convert.litert as L

    def crash(path, inputs, **kw):
        raise EdgeBoneageError(f"{path}: LiteRT interpreter crashed with SIGABRT: Aborted")

    monkeypatch.setattr(L, "validate_in_subprocess", crash)
    out = tmp_path / "crash.tflite"
    with pytest.raises(EdgeBoneageError, match=r"crash\.tflite: parity check failed \(float32\): the converted "
                                               r"model: LiteRT interpreter crashed with SIGABRT"):
        E.export(age_keras, out, quantization="float32", check_n=4, log=lambda *_: None)
    assert not out.exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# ai-edge-quantizer recipes and the accuracy-budgeted search (convert.aeq, convert.budget)

aeq_missing = pytest.mark.skipif(not __import__("edge_boneage.convert.aeq", fromlist=["available"]).available(),
                                 reason="ai-edge-quantizer is not installed (pip install 'edge-boneage[quant]')")


@aeq_missing
def test_aeq_recipe_keeps_islands_float_and_survives_metadata(age_keras, tmp_path):
    """The quantiser writes buffers after the flatbuffer (offsets); the metadata step must keep them loadable."""
    from edge_boneage.convert.quantize import _scope_pattern, _op_table
    from edge_boneage.runtime import LiteRTModel

    out = tmp_path / "aeq.tflite"
    res = E.export(age_keras, out, quantization="int8", recipe="aeq_int8", calib_n=16, check_n=8,
                   log=lambda *_: None)
    assert res.written and res.passed
    q = read_metadata(out)["quantization"]
    assert q["recipe"] == "aeq_int8" and q["io"] == "float32" and "ai-edge-quantizer" in q["method"]
    assert set(q["kept_float_layers"]) == {"lbp_ror", "sampler", "age", "probs"}
    assert q["ops"]["int8_ops"] > 0 and q["ops"]["island_ops"] > 0
    rows = _op_table(out.read_bytes())
    pat = _scope_pattern(["lbp_ror", "sampler"])
    island = [r for r in rows if any(pat.search(n) for n in r["outputs"]) and r["op"] not in ("QUANTIZE", "DEQUANTIZE")]
    assert island and all("int8" not in r["out_dtypes"] for r in island)  # LBP / sampler ops compute in float
    m = LiteRTModel(out)
    # the head islands' last ops (softmax, the expectation's sum) write the model outputs, which carry no layer
    # scope: they are float too, and so are the outputs (an int8 age moves by steps of its output scale)
    by_name = {n: r for r in rows for n in r["outputs"]}
    for name, d in m.output_details().items():
        assert np.dtype(d["dtype"]) == np.float32, name
        assert by_name[d["name"]]["out_dtypes"] == ["float32"] and by_name[d["name"]]["op"] != "DEQUANTIZE", name
    rng = np.random.default_rng(0)
    age = m({"image": rng.integers(0, 256, (1, 32, 32, 1), dtype=np.uint8), "sex": np.ones((1, 1), np.float32)})["age"]
    assert np.all(np.isfinite(age))


@aeq_missing
def test_aeq_head_int8_recipe_quantises_the_head(age_keras, tmp_path):
    out = tmp_path / "head.tflite"
    E.export(age_keras, out, quantization="int8", recipe="aeq_int8_head", calib_n=16, check_n=8, force=True,
             log=lambda *_: None)
    q = read_metadata(out)["quantization"]
    assert set(q["kept_float_layers"]) == {"lbp_ror", "sampler"}


def test_unknown_recipe_is_one_line_error(age_keras, tmp_path, capsys):
    from edge_boneage.cli import main

    rc = main(["export", str(age_keras), "--out", str(tmp_path / "x.tflite"), "--int8", "--recipe", "nope"])
    err = capsys.readouterr().err
    assert rc != 0 and "--recipe nope: unknown" in err and "tf_int8" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@aeq_missing
def test_budgeted_search_writes_a_faster_file_within_budget_or_nothing(age_keras, tmp_path):
    from edge_boneage.convert.budget import format_table, search

    out = tmp_path / "best.tflite"
    try:
        rep = search(age_keras, out, max_mae_increase=1e6, recipes=["aeq_int8", "dynamic"], calib_n=16, check_n=8,
                     heldout_n=24, repeats=3, block=3, log=lambda *_: None)
    except EdgeBoneageError as exc:  # on a 32-px toy network int8 need not beat float32: then nothing is written
        assert "faster than float32" in str(exc) and not out.exists()
        return
    rows = {r["candidate"]: r for r in rep["rows"]}
    assert set(rows) == {"float32", "aeq_int8", "dynamic"}
    chosen = rows[rep["chosen"]]
    assert chosen["p50_ms"] < rows["float32"]["p50_ms"] and chosen["mae_increase"] <= 1e6
    from edge_boneage.convert.budget import TIE

    # convert.budget's rule: the fastest, candidates within TIE of it counting as equally fast (then lower MAE wins)
    for r in rows.values():
        if r["status"] == "ok" and r is not chosen and r["candidate"] != "float32" and r["p50_ms"] < chosen["p50_ms"]:
            assert chosen["p50_ms"] <= (1 + TIE) * r["p50_ms"] and chosen["mae_increase"] <= r["mae_increase"], r
    meta = read_metadata(out)
    assert meta["quantization"]["search"]["chosen"] == rep["chosen"]
    assert json.loads(Path(f"{out}.search.json").read_text())["chosen"] == rep["chosen"]
    assert "<- written" in format_table(rep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.tflite", "best.tflite.search.json"]


def test_budgeted_search_refuses_a_negative_budget(age_keras, tmp_path):
    from edge_boneage.convert.budget import search

    with pytest.raises(EdgeBoneageError, match="must be >= 0"):
        search(age_keras, tmp_path / "x.tflite", max_mae_increase=-1)
    assert not list(tmp_path.iterdir())
