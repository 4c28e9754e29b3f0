"""Metadata stored inside the .tflite flatbuffer survives, is readable without TF, and the model still runs."""

import subprocess
import sys

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError
from edge_boneage.tflite_meta import add_metadata, list_metadata, read_metadata


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    import keras
    import tensorflow as tf

    inp = keras.Input((4,), name="x")
    out = keras.layers.Dense(2, name="y")(inp)
    model = keras.Model(inp, out)
    path = tmp_path_factory.mktemp("m") / "tiny.tflite"
    model.export(str(path), format="litert", target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
    x = np.arange(4, dtype=np.float32)[None]
    return path, model.predict(x, verbose=0), x


def _run(model_bytes, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    runner = it.get_signature_runner()
    (out,) = runner(x=x).values()
    return out


def test_round_trip_and_model_still_runs(tiny_tflite):
    path, expected, x = tiny_tflite
    original = path.read_bytes()
    record = {"model": "tiny", "input": {"size": 4}, "val_mae_months": 7.25}
    tagged = add_metadata(original, record)
    assert read_metadata(tagged) == {"schema_version": 1, **record}
    assert read_metadata(original) is None
    # converter's own entries survive
    assert set(list_metadata(original)) <= set(list_metadata(tagged))
    np.testing.assert_allclose(_run(tagged, x), expected, atol=1e-6)


def test_replace_not_duplicate(tiny_tflite):
    path, _, _ = tiny_tflite
    once = add_metadata(path.read_bytes(), {"v": 1})
    twice = add_metadata(once, {"v": 2})
    assert read_metadata(twice)["v"] == 2
    assert list(list_metadata(twice)).count("edge_boneage") == 1


def test_reader_imports_no_tensorflow(tiny_tflite, tmp_path):
    path, _, _ = tiny_tflite
    tagged = tmp_path / "t.tflite"
    tagged.write_bytes(add_metadata(path.read_bytes(), {"model": "tiny"}))
    code = (
        "import sys; from edge_boneage.tflite_meta import read_metadata;"
        f"assert read_metadata({str(tagged)!r})['model'] == 'tiny';"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_files(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"hello world, not a model")
    with pytest.raises(EdgeBoneageError, match="junk.tflite: not a TFLite"):
        read_metadata(junk)
    with pytest.raises(EdgeBoneageError, match="missing.tflite: cannot read"):
        read_metadata(tmp_path / "missing.tflite")
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 8)
    with pytest.raises(EdgeBoneageError, match="trunc.tflite: corrupt"):
        read_metadata(trunc)
