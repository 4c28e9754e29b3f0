"""ONNX in and out: a tiny PyTorch CNN and our own tiny Keras MobileNetV3-Large through ONNX -> onnx2tf -> LiteRT,
each LiteRT output compared with ONNX Runtime on the same inputs (in a child process).

Needs the optional ONNX extra (convert/onnx.py: INSTALL_HINT) and torch for the PyTorch model; skips otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from edge_boneage.convert.onnx import INSTALL_HINT, missing_modules  # noqa: E402

_MISSING = missing_modules("onnx", "onnxruntime", "onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx", "psutil",
                           "onnxsim")
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"optional ONNX extra not installed ({', '.join(_MISSING)}): "
                                                       f"{INSTALL_HINT}")


def _torch_onnx(path):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.Hardswish(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5), torch.nn.Softmax(-1)).eval()
    with torch.no_grad():  # non-trivial BN statistics
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
    torch.onnx.export(net, (torch.rand(1, 1, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}})
    return net


def test_pytorch_cnn_to_litert(tmp_path):
    from edge_boneage.convert.onnx import onnx_inputs, onnx_to_litert, run_onnx, sample_inputs
    from edge_boneage.runtime import LiteRTModel
    from edge_boneage.tflite_meta import read_metadata

    src = tmp_path / "tiny.onnx"
    net = _torch_onnx(src)
    spec = onnx_inputs(src)
    assert spec == {"image": ([None, 1, 32, 32], "float32")}  # dynamic batch kept
    res = onnx_to_litert(src, tmp_path / "tiny.tflite", check_n=6)
    assert res["status"] == "PASSED" and res["kept_shape"] == []
    assert res["parity"]["max_abs_diff"]["probs"] < 1e-4
    # independent re-check here: PyTorch itself vs the LiteRT model on the NHWC-transposed input
    import torch

    x = sample_inputs(spec, 3, seed=9)["image"]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    lite = LiteRTModel(res["path"])
    got = lite({lite.input_names[0]: x.transpose(0, 2, 3, 1).copy()})
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run_onnx(src, {"image": x})["probs"], want, rtol=1e-4, atol=1e-5)
    meta = read_metadata(res["path"])
    assert meta["converted_by"].startswith("onnx2tf") and meta["parity"]["status"] == "PASSED"


def test_keras_mobilenet_onnx_roundtrip(tmp_path):
    pytest.importorskip("tf2onnx", reason="tf2onnx not installed (pip install --no-deps tf2onnx==1.17.0)")
    import keras

    from edge_boneage.convert.export import export_keras_onnx
    from edge_boneage.convert.onnx import onnx_inputs, onnx_to_litert
    from keras_models.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model("mobilenetv3_large", input_size=32, alpha=0.35, minimalistic=True)
    src = tmp_path / "m.keras"
    model.save(src)
    onnx_path = tmp_path / "m.onnx"
    res = export_keras_onnx(src, onnx_path, check_n=4)
    assert res["status"] == "PASSED" and onnx_path.is_file()
    assert onnx_inputs(onnx_path)["image"] == ([None, 32, 32, 1], "uint8")
    lite = onnx_to_litert(onnx_path, tmp_path / "m.tflite", check_n=4)
    assert lite["kept_shape"] == ["image"]  # NHWC Keras input kept (-kat)
    assert lite["status"] == "PASSED", lite["parity"]
    assert set(lite["parity"]["max_abs_diff"]) == {"age", "probs"}


def test_convert_cli_errors(tmp_path, capsys):
    from edge_boneage.cli import main

    assert main(["convert", str(tmp_path / "none.onnx")]) == 1
    assert "none.onnx: no such ONNX file" in capsys.readouterr().err
    bad = tmp_path / "bad.npy.txt"
    assert main(["convert", str(tmp_path / "x.onnx"), "--calib-npy", f"image={bad}"]) == 1
    assert "cannot read numpy array" in capsys.readouterr().err


def test_grouped_convolutions_export_to_onnx_split_per_group(tmp_path):
    """Keras runs grouped convolutions on CPU through an XLA-compiled call that tf2onnx leaves unconverted (ONNX
    Runtime then cannot load the file): the exporter splits them per group (convert.onnx.split_grouped_convs) and
    checks the ONNX model against the ORIGINAL Keras model."""
    pytest.importorskip("tf2onnx", reason="tf2onnx not installed (pip install --no-deps tf2onnx==1.17.0)")
    import keras

    from edge_boneage.convert.export import export_keras_onnx
    from edge_boneage.convert.onnx import run_onnx

    inp = keras.Input((16, 16, 4), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", groups=2, name="gconv")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", groups=4, use_bias=False, name="gconv2")(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="probs")(keras.layers.GlobalAveragePooling2D()(x)))
    src = tmp_path / "grouped.keras"
    model.save(src)
    out = tmp_path / "grouped.onnx"
    res = export_keras_onnx(src, out, check_n=2)
    assert res["status"] == "PASSED" and res["grouped_convs_split"] == 2 and out.is_file()
    x = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 4)).astype(np.float32)
    got = run_onnx(out, {"image": x})
    np.testing.assert_allclose(next(iter(got.values())), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_csp_resnext_stage_model_exports_to_onnx(tmp_path):
    pytest.importorskip("tf2onnx", reason="tf2onnx not installed (pip install --no-deps tf2onnx==1.17.0)")
    from edge_boneage.convert.export import export_keras_onnx
    from keras_models.registry import build_model

    src = tmp_path / "csp.keras"
    build_model("csp_resnext50_tw3", input_size=32, depths=(1, 1, 1, 1), cardinality=4, base_width=4,
                width_mult=0.25).save(src)
    res = export_keras_onnx(src, tmp_path / "csp.onnx", check_n=2)
    assert res["status"] == "PASSED" and res["grouped_convs_split"] == 4
