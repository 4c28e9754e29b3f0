"""(CSP-)ResNeXt50 TW3 stage classifiers: shapes, masking, head selection, parameter counts, .keras and LiteRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras_models import resnext as R  # noqa: E402
from keras_models.registry import build_model, list_models  # noqa: E402

TINY = dict(input_size=32, depths=(1, 1, 1, 1), cardinality=4, base_width=4, width_mult=0.25)
REPO = Path(__file__).resolve().parents[1]


def _inputs(n=13, size=32, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(n, size, size, channels)).astype("uint8")
    bone = (np.arange(n) % 13).astype("int32").reshape(n, 1)
    return image, bone


def _predict(model, image, bone=None):
    feed = {"image": image} if bone is None else {"image": image, "bone": bone}
    out = model.predict(feed, verbose=0)
    return np.asarray(out["probs"])


# ---------------------------------------------------------------------------------------------------------------
# hand computation of the parameter count (written from the architecture description, not from the code)

def _conv(cin, cout, k=1, groups=1):
    return k * k * (cin // groups) * cout


def _bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def _hand_count(*, csp, channels=1, depths=(1, 1, 1, 1), cardinality=4, base_width=4, width_mult=0.25,
                head="heads", embed_dim=64):
    stem = max(8, round(64 * width_mult))
    n = _conv(channels, stem, 7) + _bn(stem)
    cin = stem
    for i, d in enumerate(depths):
        planes = round((64, 128, 256, 512)[i] * width_mult)
        width = int(planes * base_width / 64) * cardinality
        out = 4 * planes
        stride = 1 if i == 0 else 2
        rin, rout = (cin // 2, out // 2) if csp else (cin, out)
        for b in range(d):
            bin_ = rin if b == 0 else rout
            n += _conv(bin_, width) + _bn(width) + _conv(width, width, 3, cardinality) + _bn(width)
            n += _conv(width, rout) + _bn(rout)
            if b == 0 and (stride != 1 or bin_ != rout):
                n += _conv(bin_, rout) + _bn(rout)
        if csp:
            n += _conv(cin // 2, out // 2) + _bn(out // 2)
        cin = out
    if head == "heads":
        n += cin * 13 * 8 + 13 * 8
    elif head == "embedding":
        n += 13 * embed_dim + (cin + embed_dim) * 8 + 8
    else:  # single bone
        n += cin * 8 + 8
    return n


@pytest.mark.parametrize("csp", [False, True])
@pytest.mark.parametrize("head", ["heads", "embedding", "single"])
def test_param_count_matches_hand_computation(csp, head):
    kw = dict(TINY, csp=csp)
    if head == "single":
        model = R.build_tw3_classifier(bone="mc3", **kw)
    else:
        model = R.build_tw3_classifier(bone_conditioning=head, **kw)
    assert model.count_params() == _hand_count(csp=csp, head=head)


def test_param_count_hand_computation_deeper_and_rgb():
    kw = dict(depths=(2, 1, 2, 1), cardinality=8, base_width=4, width_mult=0.5, channels=3)
    for csp in (False, True):
        model = R.build_tw3_classifier(csp=csp, input_size=32, **kw)
        assert model.count_params() == _hand_count(csp=csp, **kw)


def test_grouped_conv_really_grouped():
    model = R.build_tw3_classifier(**TINY)
    conv = model.get_layer("stage2_b1_conv2")
    # width = int(32 * 4 / 64) * 4 = 8 channels in 4 groups: the kernel sees 8 / 4 = 2 input channels
    assert conv.groups == 4 and tuple(conv.kernel.shape) == (3, 3, 2, 8)


def test_full_size_param_counts_match_paper():
    # the paper's sizes are float32 MiB including BN moving statistics (as in a PyTorch state dict / Keras count)
    plain = R.build_tw3_classifier(csp=False, bone="radius", channels=3).count_params()
    csp = R.build_tw3_classifier(csp=True, bone="radius", channels=3).count_params()
    paper_plain, paper_csp = 88.07 * 2**20 / 4, 46.28 * 2**20 / 4
    assert abs(plain - paper_plain) / paper_plain < 0.01, plain
    assert abs(csp - paper_csp) / paper_csp < 0.10, csp
    assert abs(plain - 23.0e6) / 23.0e6 < 0.01


# ---------------------------------------------------------------------------------------------------------------
# outputs

@pytest.mark.parametrize("csp", [False, True])
@pytest.mark.parametrize("head", ["heads", "embedding"])
def test_shared_model_shapes_softmax_and_ulna_mask(csp, head):
    model = R.build_tw3_classifier(csp=csp, bone_conditioning=head, **TINY)
    assert [i.name for i in model.inputs] == ["image", "bone"] or sorted(i.name for i in model.inputs) == ["bone", "image"]
    image, bone = _inputs()
    probs = _predict(model, image, bone)
    assert probs.shape == (13, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    ulna = bone[:, 0] == R.BONES.index("ulna")
    assert np.all(probs[ulna, 7] == 0.0)
    assert np.all(probs[~ulna] > 0.0)


def test_per_bone_models_and_ulna_mask():
    models = R.build_per_bone_tw3("csp_resnext50", **TINY)
    assert list(models) == list(R.BONES)
    image, _ = _inputs(n=3)
    for name in ("radius", "ulna"):
        m = models[name]
        assert [i.name for i in m.inputs] == ["image"]
        probs = _predict(m, image)
        assert probs.shape == (3, 8)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert np.all(probs[:, 7] == 0.0) if name == "ulna" else np.all(probs[:, 7] > 0.0)
    # distinct networks, not one shared set of weights
    assert models["radius"].get_layer("stem_conv").kernel is not models["ulna"].get_layer("stem_conv").kernel


def test_heads_selected_by_bone_match_numpy_reference():
    # seeded: an unseeded backbone is a different network each run, and now and then one amplifies the float32
    # summation-order difference past the tolerance (2.1e-5 > 1e-5 once in a CI run); the tolerance is unchanged
    keras.utils.set_random_seed(0)
    model = R.build_tw3_classifier(csp=True, **TINY)
    dense = model.get_layer("heads")
    rng = np.random.default_rng(1)  # random head weights so that every head differs clearly
    dense.set_weights([rng.normal(size=w.shape).astype("float32") for w in dense.get_weights()])
    image, bone = _inputs(seed=2)
    feats = keras.Model(model.inputs, model.get_layer("gap").output).predict(
        {"image": image, "bone": bone}, verbose=0)
    kernel, bias = dense.get_weights()
    logits = (feats @ kernel + bias).reshape(-1, 13, 8)
    expected = np.zeros((len(bone), 8))
    for i, b in enumerate(bone[:, 0]):
        z = logits[i, b, : R.GRADES_PER_BONE[b]].astype(np.float64)
        e = np.exp(z - z.max())
        expected[i, : len(z)] = e / e.sum()
    np.testing.assert_allclose(_predict(model, image, bone), expected, atol=1e-5)
    # the same image with another bone id gives another head's answer
    p0 = _predict(model, image[:1], np.array([[0]], "int32"))
    p3 = _predict(model, image[:1], np.array([[3]], "int32"))
    assert np.abs(p0 - p3).max() > 1e-3


def test_bone_tables_match_tw3_json():
    data = json.loads((REPO / "edge_boneage" / "data" / "tw3_rus.json").read_text())
    assert tuple(b["key"] for b in data["bones"]) == R.BONES
    assert data["stage_letters"] == "BCDEFGHI"
    for sex in ("male", "female"):
        scores = data["stage_scores"][sex]
        assert tuple(len(scores[b]) for b in R.BONES) == R.GRADES_PER_BONE


def test_input_scaling_and_rgb():
    # uint8 input, the model casts and scales: a float copy of the same values gives the same answer
    model = R.build_tw3_classifier(channels=3, **TINY)
    image, bone = _inputs(n=4, channels=3)
    a = _predict(model, image, bone[:4])
    b = _predict(model, image.astype("float32"), bone[:4])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert model.get_layer("scale").scale == pytest.approx(1 / 255)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown bone"):
        R.build_tw3_classifier(bone="femur", **TINY)
    with pytest.raises(ValueError, match="out of range"):
        R.build_tw3_classifier(bone=13, **TINY)
    with pytest.raises(ValueError, match="bone_conditioning"):
        R.build_tw3_classifier(bone_conditioning="film", **TINY)
    with pytest.raises(ValueError, match="cardinality"):
        R.build_tw3_classifier(input_size=32, width_mult=0.25, base_width=1, depths=(1, 1, 1, 1))


def test_registry():
    names = {e.name for e in list_models(task="tw3_stage")}
    assert {"resnext50_tw3", "csp_resnext50_tw3"} <= names
    m = build_model("csp_resnext50_tw3", **TINY)
    assert any(layer.name.endswith("_csp_conv") for layer in m.layers)
    m = build_model("resnext50_tw3", **TINY)
    assert not any(layer.name.endswith("_csp_conv") for layer in m.layers)


# ---------------------------------------------------------------------------------------------------------------
# serialisation and LiteRT

@pytest.mark.parametrize("csp,head", [(True, "heads"), (False, "embedding")])
def test_keras_save_load_safe_mode(tmp_path, csp, head):
    model = R.build_tw3_classifier(csp=csp, bone_conditioning=head, **TINY)
    image, bone = _inputs()
    ref = _predict(model, image, bone)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(_predict(loaded, image, bone), ref)


def test_single_bone_save_load_safe_mode(tmp_path):
    model = R.build_tw3_classifier(csp=True, bone="ulna", **TINY)
    image, _ = _inputs(n=2)
    path = tmp_path / "ulna.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(_predict(loaded, image), _predict(model, image))


@pytest.mark.parametrize("csp", [False, True])
def test_litert_float_export_matches_keras(tmp_path, csp):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("LiteRT export needs KERAS_BACKEND=tensorflow")
    from edge_boneage.convert.export import export_litert
    from edge_boneage.convert.litert import list_ops, non_builtin_ops
    from edge_boneage.runtime import LiteRTModel

    model = R.build_tw3_classifier(csp=csp, **TINY)
    path = export_litert(model, tmp_path / "m.tflite")
    assert non_builtin_ops(path) == []
    ops = set(list_ops(path))
    assert "CONV_2D" in ops and not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)
    image, bone = _inputs()
    lite = LiteRTModel(path)
    assert set(lite.input_names) == {"image", "bone"} and lite.output_names == ["probs"]
    got = lite(image=image, bone=bone)["probs"]
    ref = _predict(model, image, bone)
    assert got.shape == (13, 8)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    ulna = bone[:, 0] == 1
    assert np.all(got[ulna, 7] == 0.0)
