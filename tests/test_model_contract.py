"""One contract every registered model keeps (in the spirit of keras-hub's TestCase.run_*_test).

Parametrised over keras_models.registry.list_models(), so a newly registered model is covered without a new test:
built at a tiny size / width (TINY_KNOBS; a model without an entry is built with DEFAULT_KNOBS), called on a
batch, saved and loaded back in a FRESH process with safe_mode (edge_boneage.modelfile.load_model: the project's
only .keras loader) giving the same outputs, and exported to float32 LiteRT through the one exporter
(convert.export.export_litert: the FORMATS table and the child-process parity gate), whose outputs match Keras.

Cheap by construction: one build per model (module fixture) and ONE child process that loads every saved model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from keras_models.registry import build_model, list_models  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="LiteRT export needs TF backend")

REPO = Path(__file__).resolve().parents[1]
BATCH = 2
#: the smallest settings each model accepts (taken from its own tests)
_TINY_RESNEXT = dict(input_size=32, depths=(1, 1, 1, 1), cardinality=4, base_width=4, width_mult=0.25)
_TINY_RIL = dict(num_regions=2, region_dim=16, crop_size=4, loc_units=16)
TINY_KNOBS = {
    "efficientnet_lite0": dict(input_size=32),
    "ril_efficientnet_lite0": dict(input_size=32, **_TINY_RIL),
    "mobilenetv3_large": dict(input_size=32, alpha=0.35, minimalistic=True),
    "ril_mobilenetv3_large": dict(input_size=32, alpha=0.35, minimalistic=True, **_TINY_RIL),
    "csp_resnext50_tw3": _TINY_RESNEXT,
    "resnext50_tw3": _TINY_RESNEXT,
    "orientation_net": dict(input_size=32, width=4),
}
DEFAULT_KNOBS = dict(input_size=32)
NAMES = [e.name for e in list_models()]

_CHILD = r"""
import json, sys
import numpy as np
from edge_boneage.modelfile import load_model
jobs = json.loads(open(sys.argv[1]).read())
for name, (keras_path, inputs_npz, out_npz) in jobs.items():
    model = load_model(keras_path)
    with np.load(inputs_npz) as d:
        out = model({k: d[k] for k in d.files}, training=False)
    out = out if isinstance(out, dict) else {model.output_names[0]: out}
    np.savez(out_npz, **{k: np.asarray(v) for k, v in out.items()})
"""


def _outputs(model, x) -> dict:
    out = model(x, training=False)
    out = out if isinstance(out, dict) else {model.output_names[0]: out}
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}


def test_the_registry_lists_the_project_models():
    """A newly registered model runs through this file with DEFAULT_KNOBS; this says which ones need an entry to
    stay cheap (it is not a failure: the contract tests below still run for them)."""
    assert {"efficientnet_lite0", "ril_efficientnet_lite0", "mobilenetv3_large", "ril_mobilenetv3_large",
            "csp_resnext50_tw3", "resnext50_tw3", "orientation_net"} <= set(NAMES)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{name: (model, inputs, outputs, fresh-process outputs, folder)}: each model built, called, saved, and loaded
    back in one fresh child process."""
    from edge_boneage.convert.export import generic_check_inputs

    root = tmp_path_factory.mktemp("contract")
    res, jobs = {}, {}
    for name in NAMES:
        keras.utils.set_random_seed(0)
        model = build_model(name, **TINY_KNOBS.get(name, DEFAULT_KNOBS))
        x = generic_check_inputs(model, BATCH, seed=3)
        y = _outputs(model, x)
        d = root / name
        d.mkdir()
        model.save(d / f"{name}.keras")  # the test writes the file: keras_models never touch files
        np.savez(d / "inputs.npz", **x)
        jobs[name] = [str(d / f"{name}.keras"), str(d / "inputs.npz"), str(d / "fresh.npz")]
        res[name] = [model, x, y, None, d]
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root / "jobs.json")], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in NAMES:
        with np.load(res[name][4] / "fresh.npz") as f:
            res[name][3] = {k: f[k] for k in f.files}
    return res


@pytest.mark.parametrize("name", NAMES)
def test_model_contract(built, name):
    from edge_boneage.convert.checkdata import input_specs
    from edge_boneage.convert.export import export_litert
    from edge_boneage.runtime import LiteRTModel
    from keras_models.registry import get_entry

    model, x, y, fresh, folder = built[name]
    entry = get_entry(name)
    # called on a batch: finite outputs with that batch
    shapes = {k: v.shape for k, v in y.items()}
    assert y and all(v.shape[0] == BATCH and np.all(np.isfinite(v)) for v in y.values()), shapes
    specs = input_specs(model)
    assert "image" in specs and specs["image"][1] == "uint8", specs  # the project's image input
    if entry.task == "age":
        assert set(y) >= {"age", "probs"} and y["probs"].shape[1] == 19
        np.testing.assert_allclose(y["probs"].sum(-1), 1.0, atol=1e-5)
    elif entry.task == "tw3_stage":
        assert set(y) == {"probs"} and y["probs"].shape[1] == 8
        np.testing.assert_allclose(y["probs"].sum(-1), 1.0, atol=1e-5)
    # saved and loaded back with safe_mode in a fresh process: the same function
    assert fresh.keys() == y.keys()
    for k in y:
        np.testing.assert_allclose(fresh[k], y[k], rtol=1e-5, atol=1e-5, err_msg=f"{name}.{k} after reload")
    # float32 LiteRT through the one exporter (its parity gate ran in a child process); the file agrees here too
    path = export_litert(model, folder / f"{name}.tflite")
    lite = LiteRTModel(path)(x)
    for k in y:
        got = lite[k] if k in lite else next(v for v in lite.values() if v.shape == y[k].shape)
        np.testing.assert_allclose(got, y[k], rtol=1e-4, atol=1e-4, err_msg=f"{name}.{k} LiteRT vs Keras")
