"""edge_boneage.runtime (LiteRTModel) and convert.litert (export, op listing, child-process validation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError
from edge_boneage.runtime import LiteRTModel, dequantize, quantize, tensor_key

REPO = Path(__file__).resolve().parents[1]
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from edge_boneage.convert import litert  # noqa: E402
from edge_boneage.convert.export import export_litert  # noqa: E402
from edge_boneage.convert.litert import list_ops, non_builtin_ops, op_counts, validate_in_subprocess  # noqa: E402
from keras_models.layers import LocalBinaryPattern, SoftmaxExpectation  # noqa: E402


def age_model():
    """The project's I/O contract in miniature: image uint8 (B,S,S,1) + sex (B,1) -> age (B,1), probs (B,19)."""
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 1), name="image", dtype="uint8")
    sex = keras.Input((1,), name="sex")
    x = keras.layers.Rescaling(1 / 255)(keras.layers.Concatenate()([image, LocalBinaryPattern("ror")(image)]))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(x))
    x = keras.layers.Concatenate()([x, sex])
    probs = keras.layers.Dense(19, activation="softmax", name="probs")(x)
    return keras.Model({"image": image, "sex": sex}, {"age": SoftmaxExpectation(name="age")(probs), "probs": probs})


def age_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (batch, 16, 16, 1)).astype("uint8"),
            "sex": rng.integers(0, 2, (batch, 1)).astype("float32")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = age_model()
    path = export_litert(model, tmp_path_factory.mktemp("rt") / "age.tflite")
    return model, path


def test_import_pulls_no_tensorflow_or_keras():
    code = ("import sys, edge_boneage.runtime; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'jax')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inputs_by_name_any_order_and_batch(exported):
    model, path = exported
    rt = LiteRTModel(path)
    assert set(rt.input_names) == {"image", "sex"} and set(rt.output_names) == {"age", "probs"}
    assert rt.input_details()["image"]["dtype"] == np.uint8
    assert list(rt.input_details()["image"]["shape_signature"]) == [-1, 16, 16, 1]
    for batch in (1, 4, 2):
        x = age_inputs(batch, seed=batch)
        ref = model.predict(x, verbose=0)
        for feed in (x, dict(reversed(list(x.items())))):
            out = rt(feed)
            assert out["age"].shape == (batch, 1) and out["probs"].shape == (batch, 19)
            np.testing.assert_allclose(out["age"], ref["age"], rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(out["probs"], ref["probs"], atol=1e-6)
    out = rt(image=x["image"], sex=x["sex"])  # keyword form
    np.testing.assert_allclose(out["age"], ref["age"], rtol=1e-5, atol=1e-4)


def test_sex_changes_output_so_inputs_are_not_swapped(exported):
    model, path = exported
    x = age_inputs(3)
    flipped = {**x, "sex": 1 - x["sex"]}
    rt = LiteRTModel(path)
    a, b = rt(x)["probs"], rt(flipped)["probs"]
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_allclose(b, model.predict(flipped, verbose=0)["probs"], atol=1e-6)


def test_fallback_without_signature_uses_tensor_names(exported, monkeypatch):
    model, path = exported
    from ai_edge_litert.interpreter import Interpreter

    monkeypatch.setattr(Interpreter, "get_signature_list", lambda self: {})
    rt = LiteRTModel(path)
    assert rt._runner is None and set(rt.input_names) == {"image", "sex"}
    x = age_inputs(2)
    out = rt(x)
    ref = model.predict(x, verbose=0)
    # without a SignatureDef the output names are the converter's tensor names: match outputs by shape
    by_shape = {v.shape[-1]: v for v in out.values()}
    np.testing.assert_allclose(by_shape[1], ref["age"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(by_shape[19], ref["probs"], atol=1e-6)


def test_tensor_key():
    assert tensor_key("serving_default_image:0") == "image"
    assert tensor_key("sex") == "sex"


def test_quantize_dequantize():
    det = {"dtype": np.int8, "quantization": (0.5, -3)}
    q = quantize(np.array([-1000.0, -1.0, 0.0, 0.74, 1000.0]), det)
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -3, -2, 127]
    np.testing.assert_allclose(dequantize(q, det), [-62.5, -1.0, 0.0, 0.5, 65.0])
    u8 = {"dtype": np.uint8, "quantization": (0.0, 0)}  # plain uint8 image input: round, clip, no scaling
    assert quantize(np.array([-3.0, 12.6, 300.0]), u8).tolist() == [0, 13, 255]
    f32 = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(np.array([1, 2]), f32).dtype == np.float32
    assert dequantize(np.array([1.5], np.float32), f32).tolist() == [1.5]


@pytest.mark.parametrize("io_type", ["int8", "uint8"])
def test_fully_quantised_io_is_quantised_and_dequantised(io_type, tmp_path):
    keras.utils.set_random_seed(1)
    x_in = keras.Input((8, 8, 1), name="image")
    y = keras.layers.Dense(3, name="score")(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(x_in)))
    model = keras.Model(x_in, y)
    rng = np.random.default_rng(0)
    calib = rng.uniform(0, 1, (32, 8, 8, 1)).astype("float32")
    dtype = getattr(tf, io_type)
    path = tmp_path / f"q_{io_type}.tflite"
    model.export(str(path), format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT],
                 representative_dataset=lambda: ([c[None]] for c in calib),
                 target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
                 inference_input_type=dtype, inference_output_type=dtype)
    rt = LiteRTModel(path)
    (det,) = rt.input_details().values()
    assert det["dtype"] == np.dtype(io_type) and det["quantization"][0] > 0
    (odet,) = rt.output_details().values()
    assert odet["dtype"] == np.dtype(io_type)
    x = rng.uniform(0, 1, (5, 8, 8, 1)).astype("float32")
    (out,) = rt(image=x).values()
    ref = model.predict(x, verbose=0)
    assert out.dtype == np.float32
    span = ref.max() - ref.min()
    assert np.abs(out - ref).max() < 0.05 * span, (np.abs(out - ref).max(), span)


def test_user_errors_are_one_line(exported, tmp_path):
    _, path = exported
    rt = LiteRTModel(path)
    x = age_inputs(1)
    with pytest.raises(EdgeBoneageError, match=r"missing \['sex'\]"):
        rt(image=x["image"])
    with pytest.raises(EdgeBoneageError, match=r"unexpected \['age'\]"):
        rt({**x, "age": x["sex"]})
    with pytest.raises(EdgeBoneageError, match=r"input 'image' has shape \(1, 15, 16, 1\)"):
        rt(image=x["image"][:, :15], sex=x["sex"])
    with pytest.raises(EdgeBoneageError, match="no such"):
        LiteRTModel(tmp_path / "nope.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(EdgeBoneageError, match="cannot load") as info:
        LiteRTModel(junk)
    assert "\n" not in str(info.value) and str(junk) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# convert.litert


def test_export_is_builtin_only_and_ops_listed_both_ways(exported):
    _, path = exported
    ops = list_ops(path)
    assert {"DEPTHWISE_CONV_2D", "CONV_2D", "REDUCE_MIN", "SOFTMAX", "FULLY_CONNECTED"} <= set(ops)
    assert sorted(ops) == sorted(litert._ops_from_flatbuffer(path))
    assert non_builtin_ops(path) == []
    assert sum(op_counts(path).values()) == len(ops)


def flex_model():
    x = keras.Input((4, 4), name="x")

    class Inverse(keras.layers.Layer):
        def call(self, m):
            return keras.ops.linalg.inv(m + 4.0 * keras.ops.eye(4))

    return keras.Model(x, Inverse()(x))


def test_flex_ops_are_detected_and_refused(tmp_path):
    model = flex_model()
    flex = tmp_path / "flex.tflite"  # exported by hand with SELECT_TF_OPS allowed, as Keras would by default
    model.export(str(flex), format="litert", verbose=False,
                 target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]})
    assert non_builtin_ops(flex) == ["FlexMatrixInverse"]
    assert "FlexMatrixInverse" in litert._ops_from_flatbuffer(flex)
    with pytest.raises(EdgeBoneageError, match="not supported|Flex"):
        validate_in_subprocess(flex, {"x": np.zeros((1, 4, 4), "float32")})
    target = tmp_path / "out" / "builtin.tflite"
    with pytest.raises(EdgeBoneageError, match="MatrixInverse") as info:
        export_litert(model, target)
    assert "\n" not in str(info.value)
    assert not target.exists() and os.listdir(target.parent) == []  # nothing half-written left behind


def test_export_arguments_checked(exported, tmp_path, monkeypatch):
    model, _ = exported
    with pytest.raises(EdgeBoneageError, match=r"\.tflite"):
        export_litert(model, tmp_path / "model.bin")
    with pytest.raises(EdgeBoneageError, match="not implemented"):
        export_litert(model, tmp_path / "m.tflite", quantization="int4")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(EdgeBoneageError, match="KERAS_BACKEND=tensorflow"):
        export_litert(model, tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_export_overwrites_atomically(exported, tmp_path):
    model, path = exported
    target = tmp_path / "age.tflite"
    target.write_bytes(b"old")
    export_litert(model, target)
    assert target.read_bytes() == path.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["age.tflite"]


def test_validate_in_subprocess_matches_in_process(exported):
    _, path = exported
    x = age_inputs(3)
    child = validate_in_subprocess(path, x)
    here = LiteRTModel(path)(x)
    assert child.keys() == here.keys()
    for k in here:
        np.testing.assert_array_equal(child[k], here[k])


def test_validate_in_subprocess_survives_a_crash(exported, monkeypatch):
    _, path = exported
    monkeypatch.setattr(litert, "_CHILD", "import os; os.abort()")  # what an int8 sampler did to the interpreter
    with pytest.raises(EdgeBoneageError, match="crashed with SIGABRT"):
        validate_in_subprocess(path, age_inputs(1))
    monkeypatch.setattr(litert, "_CHILD", "raise SystemExit('bad things')")
    with pytest.raises(EdgeBoneageError, match=r"exit code 1\): bad things"):
        validate_in_subprocess(path, age_inputs(1))


def test_xnnpack_int8_ratio_rule_and_detection(tmp_path):
    """convert.litert flags int8 ADDs whose input/output scale ratio XNNPACK refuses (a tiny-range tensor + 3, the
    hard-swish case with random weights) and passes the same graph with ordinary ranges."""
    from edge_boneage.convert.litert import xnnpack_int8_ratio_ok, xnnpack_int8_rejects

    assert xnnpack_int8_ratio_ok("ADD", [2.0 ** -10, 1.0], 1.0) and not xnnpack_int8_ratio_ok("ADD", [2.0 ** -11, 1.0], 1.0)
    assert not xnnpack_int8_ratio_ok("ADD", [256.0, 1.0], 1.0)
    assert xnnpack_int8_ratio_ok("MUL", [2.0 ** -8, 2.0 ** -8], 1.0) and not xnnpack_int8_ratio_ok("MUL", [2.0 ** -9, 2.0 ** -8], 1.0)

    def build(gain):
        x_in = keras.Input((16,), name="x")
        h = keras.layers.Dense(16, kernel_initializer="identity", use_bias=False, name="gain")(x_in)
        h = keras.layers.Rescaling(gain)(h)
        # hard-swish written as relu6(h + 3) * (h / 6), as convert.quantize does for int8 (h used twice: no folding)
        y = keras.layers.Dense(4, name="y")(keras.layers.ReLU(max_value=6.0)(h + 3.0) * (h / 6.0))
        return keras.Model(x_in, y)

    calib = np.random.default_rng(0).uniform(-1, 1, (32, 16)).astype("float32")
    found = {}
    for gain in (1.0, 1e-5):
        path = tmp_path / f"g{gain}.tflite"
        build(gain).export(str(path), format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT],
                           representative_dataset=lambda: ([c[None]] for c in calib),
                           target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]})
        found[gain] = xnnpack_int8_rejects(path)
    assert found[1.0] == {} and found[1e-5].get("ADD", 0) >= 1, found


def test_delegate_partitions_of_the_packaged_model():
    """XNNPACK takes the whole float32 network in one partition; only the uint8 -> float CAST stays outside."""
    from pathlib import Path

    from edge_boneage import device_runner as R

    path = Path(__file__).resolve().parents[1] / "edge_boneage" / "pretrained" / "boneage_age.tflite"
    Interpreter, _ = R.interpreter_class()
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    d = R.delegate_partitions(it)
    assert d["partitions"] == 1 and d["outside"] == {"CAST": 1} and d["delegated"] == d["ops"] - 1
