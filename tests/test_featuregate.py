"""The quality gate's feature check: keras_models.layers.FeatureResidual against NumPy (Keras and LiteRT), and
edge_boneage.featuregate end to end on a small age model: fit, save / safe_mode load, export (the threshold in the
.tflite metadata), predict's flag, and the int8 file carrying it in float."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from edge_boneage.convert.export import export, export_litert  # noqa: E402
from edge_boneage.runtime import LiteRTModel  # noqa: E402
from keras_models.layers import FeatureResidual  # noqa: E402


#: a 4-px checkerboard: far from the synthetic hands in the fixture network's features (residual ~8x the threshold)
FAR = (((np.indices((96, 96)) // 4).sum(0) % 2) * 255).astype(np.uint8)  # (~8x: float files)


def numpy_residual(x, mean, comps):
    v = np.asarray(x, np.float64) - mean
    return np.linalg.norm(v - (v @ comps.T) @ comps, axis=1)


def test_feature_residual_matches_numpy_keras_and_litert(tmp_path):
    rng = np.random.default_rng(0)
    dim, k = 40, 6
    comps = np.linalg.qr(rng.normal(size=(dim, k)))[0].T  # k orthonormal rows
    mean = rng.normal(size=dim)
    x = rng.normal(size=(7, dim)).astype(np.float32)
    x[0] = mean + 3.0 * comps[2]  # inside the subspace: residual 0
    inp = keras.Input((dim,), name="features")
    layer = FeatureResidual(dim, k, threshold=1.5, record={"fit": "test"}, name="feature_residual")
    model = keras.Model(inp, layer(inp))
    layer.set_weights([mean.astype(np.float32), comps.astype(np.float32)])
    ref = numpy_residual(x, mean, comps)
    assert ref[0] < 1e-5 and ref[1:].min() > 1.0
    np.testing.assert_allclose(np.asarray(model(x))[:, 0], ref, rtol=1e-4, atol=1e-3)
    (out,) = LiteRTModel(export_litert(model, tmp_path / "res.tflite"))(features=x).values()
    np.testing.assert_allclose(out[:, 0], ref, rtol=1e-4, atol=1e-3)
    cfg = layer.get_config()
    assert (cfg["dim"], cfg["k"], cfg["threshold"], cfg["record"]) == (dim, k, 1.5, {"fit": "test"})
    with pytest.raises(ValueError, match="fitted on 40 features"):
        FeatureResidual(dim, k)(np.zeros((1, 5), np.float32))


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A small MobileNetV3-Large age model (alpha 0.35, 32 px, random weights, squeeze + hand crop contract), its gated copy fitted
    on synthetic hands (99.8 % of their residuals), saved and exported."""
    from edge_boneage.featuregate import fit_feature_gate
    from edge_boneage.preprocess import PreprocessSpec
    from edge_boneage.synth import generate
    from keras_models.registry import build_model

    d = tmp_path_factory.mktemp("gate")
    keras.utils.set_random_seed(0)
    spec = PreprocessSpec(32, frame="squeeze", crop="hand")
    model = build_model("mobilenetv3_large", input_size=32, alpha=0.35, preprocess=spec.to_dict())
    hands = generate(96, size=96, seed=3).images
    x = np.stack([spec.apply(h) for h in hands])
    # BatchNorm statistics from the fitting hands (one training-mode pass, momentum 0): with the initial ones the
    # random network's pooled features are ~1e-11 and every residual would be rounding noise
    from edge_boneage.fitsetup import set_bn_momentum

    set_bn_momentum(model, 0.0)
    model({"image": x[:64, ..., None], "sex": np.ones((64, 1), np.float32)}, training=True)
    set_bn_momentum(model, 0.99)
    g = fit_feature_gate(model, x[:64], x[64:], k=8, quantile=99.8, record={"fitted_on": "synthetic hands"})
    g.save(d / "gated.keras")
    return {"dir": d, "spec": spec, "model": model, "gated": g, "x": x, "hands": hands,
            "tflite": export(d / "gated.keras", d / "gated.tflite", check_n=4, log=lambda *a: None).path,
            "plain": export_litert(model, d / "plain.tflite")}


def test_gate_is_carried_by_the_keras_file_and_the_tflite(gated):
    from edge_boneage.featuregate import OUTPUT, feature_gate_of
    from edge_boneage.modelfile import open_model

    kf, tf = open_model(gated["dir"] / "gated.keras"), open_model(gated["tflite"])
    assert kf.feature_gate == feature_gate_of(gated["gated"]) and kf.feature_gate["k"] == 8
    assert kf.feature_gate["fitted_on"] == "synthetic hands" and kf.feature_gate["fit_n"] == 64
    assert tf.feature_gate["threshold"] == pytest.approx(kf.feature_gate["threshold"])
    feed = {"image": gated["x"][:4, ..., None], "sex": np.ones((4, 1), np.float32)}
    a, b = gated["model"].predict(feed, verbose=0), gated["gated"].predict(feed, verbose=0)
    np.testing.assert_array_equal(a["age"], b["age"])  # the age outputs do not change
    res = np.concatenate([tf.run({"image": xi[None, ..., None], "sex": np.ones((1, 1), np.float32)})[OUTPUT]
                          for xi in gated["x"][64:]])
    assert (res[:, 0] <= tf.feature_gate["threshold"] + 1e-4).mean() >= 0.96  # ~99.8 % of the fitting residuals
    assert open_model(gated["plain"]).feature_gate is None


def test_predict_flags_a_picture_far_from_the_fitted_images(gated, tmp_path):
    import cv2

    from edge_boneage.featuregate import REASON
    from edge_boneage.predict import AgePredictor, predict_image

    pred = AgePredictor(gated["tflite"])
    thr = pred.feature_gate["threshold"]
    cv2.imwrite(str(tmp_path / "hand.png"), gated["hands"][64])
    cv2.imwrite(str(tmp_path / "far.png"), FAR)
    near = predict_image(pred, tmp_path / "hand.png", "M", orient=False)
    assert near.feature_residual is not None and near.feature_residual <= thr
    assert not any(r.startswith(REASON) for r in near.quality_reasons)
    p = predict_image(pred, tmp_path / "far.png", "M", orient=False)
    assert p.feature_residual > thr and not p.quality_ok
    (reason,) = [r for r in p.quality_reasons if r.startswith(REASON)]
    assert reason == f"{REASON} (feature residual {p.feature_residual:.2f} > {thr:.2f})"
    assert p.to_dict()["feature_residual"] == p.feature_residual


def test_judge():
    from edge_boneage.featuregate import judge

    gate = {"threshold": 2.0}
    assert judge({"feature_residual": np.array([[1.5]])}, gate) == (1.5, None)
    assert judge({"feature_residual": np.array([[2.5]])}, gate)[1].endswith("(feature residual 2.50 > 2.00)")
    assert judge({"feature_residual": np.array([[np.nan]])}, gate)[1] is not None  # NaN never passes
    assert judge({"age": np.array([[1.0]])}, gate) == (None, None) and judge({"feature_residual": 9}, None) == (None, None)


def test_int8_with_int8_outputs_turns_the_check_off_and_says_why(gated):
    """The TensorFlow converter's int8 file with int8 I/O (`--recipe tf_int8`, the default I/O) has an int8 residual
    output, calibrated on ordinary inputs: it saturates at their largest residual, so the exporter writes the record
    with threshold None and the reason, and predict then skips the check."""
    from edge_boneage.modelfile import open_model
    from edge_boneage.tflite_meta import read_metadata

    res = export(gated["dir"] / "gated.keras", gated["dir"] / "gated_int8.tflite", quantization="int8", check_n=4,
                 calib_n=16, log=lambda *a: None, force=True)
    rec = read_metadata(res.path)["outputs"]["feature_residual"]
    assert rec["threshold"] is None and "saturates" in rec["disabled"] and rec["keras_threshold"] > 0
    assert open_model(res.path).feature_gate is None


def test_int8_float_io_recipe_keeps_the_check_in_float(gated, tmp_path):
    """An ai-edge-quantizer int8 file (float I/O) keeps the residual a float island (convert.quantize.
    FLOAT_ISLAND_TYPES), its last op and output included: it carries the Keras threshold, gives about the float
    file's residuals on hands and a far larger one on the far picture (an int8 output would saturate at the
    calibration images' largest)."""
    pytest.importorskip("ai_edge_quantizer")
    import cv2

    from edge_boneage.modelfile import open_model
    from edge_boneage.predict import AgePredictor, predict_image
    from edge_boneage.tflite_meta import read_metadata

    res = export(gated["dir"] / "gated.keras", tmp_path / "aeq.tflite", quantization="int8",
                 recipe="aeq_int8_float_stem", check_n=4, calib_n=16, log=lambda *a: None, force=True)
    rec = read_metadata(res.path)["outputs"]["feature_residual"]
    thr = open_model(gated["tflite"]).feature_gate["threshold"]
    assert rec["threshold"] == pytest.approx(thr) and "disabled" not in rec
    assert np.dtype(LiteRTModel(res.path).output_details()["feature_residual"]["dtype"]) == np.float32
    cv2.imwrite(str(tmp_path / "far.png"), FAR)
    pred = AgePredictor(res.path)
    assert pred.feature_gate is not None and pred.feature_gate["threshold"] == pytest.approx(thr)
    x = gated["x"][64:, ..., None]  # the hands the threshold came from: the float file's residuals, roughly
    # (a random-weight network calibrated on 16 images quantises coarsely; the trained model: BENCHMARKS.md)
    feed = {"image": x, "sex": np.ones((len(x), 1), np.float32)}
    r8 = np.asarray(LiteRTModel(res.path)(**feed)["feature_residual"])[:, 0]
    r32 = np.asarray(LiteRTModel(gated["tflite"])(**feed)["feature_residual"])[:, 0]
    assert np.corrcoef(r8, r32)[0, 1] > 0.8 and np.median(np.abs(r8 - r32)) < 0.3 * np.median(r32)
    # the far picture stands out of the int8 file's residuals too (its int8 body clips activations beyond the
    # calibration range, so less than in the float file: BENCHMARKS.md int8_feature_check measures it on RSNA)
    p8 = predict_image(pred, tmp_path / "far.png", "M", orient=False)
    assert p8.feature_residual > 4 * np.median(r8)
