"""Training engine, data sources, resume, evaluate (.keras vs .tflite) and JAX data parallel.

Fast by construction: a 2-conv "tiny_test_age" model (registered here and in the child scripts), 32 px
images, a few dozen samples, 1-4 epochs. Slow or crash-prone things run in child processes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError, sources
from edge_boneage import train as T

REPO = Path(__file__).resolve().parents[1]
S = 32

# The tiny model, as source text: exec'd here and written into the child-process scripts.
TINY_SRC = '''
import keras
from keras_models.layers import SoftmaxExpectation
from keras_models.registry import register_model, list_models

list_models()

@register_model("tiny_test_age", task="age", description="2-conv test model")
def build_tiny_test_age(input_size=32, use_sex=True, width=4):
    image = keras.Input((input_size, input_size, 1), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(image)
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    inputs = {"image": image}
    if use_sex:
        sex = keras.Input((1,), dtype="float32", name="sex")
        inputs["sex"] = sex
        x = keras.layers.Concatenate(name="cat")([x, sex])
    probs = keras.layers.Dense(19, activation="softmax", name="probs")(x)
    age = SoftmaxExpectation(name="age")(probs)
    return keras.Model(inputs, {"age": age, "probs": probs}, name="tiny_test_age")
'''

_ns: dict = {}
exec(TINY_SRC, _ns)  # registers tiny_test_age in this process


def _arrays(n=40, seed=0, size=S):
    rng = np.random.default_rng(seed)
    months = rng.uniform(0, 228, n)
    yy, xx = np.mgrid[:size, :size]
    # a brightness ramp whose level depends on the age, plus noise: something learnable
    imgs = (months[:, None, None] / 228 * 150 + 40 * (xx[None] / size) + rng.normal(0, 10, (n, size, size)))
    return sources.ArrayImages(np.clip(imgs, 0, 255).astype(np.uint8), months, rng.integers(0, 2, n))


def _child_env(**extra):
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1",
                "KERAS_BACKEND": env.get("KERAS_BACKEND", "tensorflow")})
    env.update(extra)
    return env


def _cli_script(tmp_path: Path, slow_batches: float = 0.0) -> Path:
    """A child script: register the tiny model, optionally slow every batch, run the CLI with argv."""
    script = tmp_path / "child_cli.py"
    script.write_text(TINY_SRC + f'''
import sys, time
from edge_boneage import sources, cli
if {slow_batches!r} > 0:
    _orig = sources.BatchMaker.batch
    def _slow(self, b):
        time.sleep({slow_batches!r})
        return _orig(self, b)
    sources.BatchMaker.batch = _slow
sys.exit(cli.main(sys.argv[1:]))
''')
    return script


def _log_epochs(path: Path) -> list[int]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------------------------- targets, batches


def test_class_targets_match_the_models_bins():
    from keras_models.layers import BONE_AGE_CLASS_CENTRES_MONTHS

    assert np.allclose(sources.CLASS_CENTRES_MONTHS, BONE_AGE_CLASS_CENTRES_MONTHS)
    months = np.array([0.0, 11.99, 12.0, 100.0, 227.0, 240.0, -3.0])
    assert sources.age_to_class(months).tolist() == [0, 0, 1, 8, 18, 18, 0]
    hot = sources.class_targets(months)
    assert hot.shape == (7, 19) and np.all(hot.sum(1) == 1) and hot[3, 8] == 1
    sm = sources.class_targets([100.0], label_smoothing=0.19)
    assert sm[0, 8] == pytest.approx(0.81 + 0.01) and sm[0, 0] == pytest.approx(0.01)
    g = sources.class_targets([102.0], sigma_years=1.0)  # centre of bin 8 is 102 months
    assert g[0].argmax() == 8 and g[0].sum() == pytest.approx(1.0)
    assert g[0, 7] == pytest.approx(g[0, 9]) and g[0, 7] / g[0, 8] == pytest.approx(np.exp(-0.5), rel=1e-5)


def test_batches_contract_and_deterministic_per_epoch():
    src = _arrays(20)
    a = sources.BatchMaker(src, 8, shuffle=True, augment=sources.Augment(), seed=3)
    b = sources.BatchMaker(src, 8, shuffle=True, augment=sources.Augment(), seed=3)
    x, y = a.batch(0)
    assert x["image"].dtype == np.uint8 and x["image"].shape == (8, S, S, 1)
    assert x["sex"].dtype == np.float32 and x["sex"].shape == (8, 1)
    assert y["age"].shape == (8, 1) and y["probs"].shape == (8, 19)
    assert np.allclose(y["age"][:, 0], src.months[a.indices(0)])
    assert len(a) == 3 and len(sources.BatchMaker(src, 8, drop_remainder=True)) == 2
    for epoch in (0, 1):
        a.epoch = b.epoch = epoch
        xa, _ = a.batch(1)
        xb, _ = b.batch(1)
        assert np.array_equal(xa["image"], xb["image"])  # same (seed, epoch) -> same batch
    a.epoch = 0
    order0 = a.order().copy()
    a.epoch = 1
    assert not np.array_equal(order0, a.order())  # a new order each epoch
    assert sorted(order0.tolist()) == list(range(20))


def test_age_balanced_draws_flatten_the_age_histogram(tmp_path):
    rng = np.random.default_rng(0)
    months = np.concatenate([rng.uniform(120, 132, 900), rng.uniform(24, 36, 100)])  # 9:1 over two one-year bins
    p = sources.age_balance_probs(months, 1.0)
    assert np.isclose(p.sum(), 1.0) and np.isclose(p[months < 100].sum(), 0.5)  # P=1: both bins equally often
    assert np.isclose(sources.age_balance_probs(months, 0.5)[months < 100].sum(), 1 / (1 + 3))  # sqrt(9) : 1
    assert np.allclose(sources.age_balance_probs(months, 0.0), 1 / len(months))
    with pytest.raises(EdgeBoneageError, match="balance power"):
        sources.age_balance_probs(months, 1.5)
    out = tmp_path / "run"
    with pytest.raises(EdgeBoneageError, match=r"--balance-ages 2: expected a power in \[0, 1\]"):
        T.train(T.TrainConfig(data="synth", balance_ages=2.0, out=str(out)))
    assert not out.exists()  # refused before the run folder was made
    src = sources.ArrayImages(rng.integers(0, 255, (1000, S, S), dtype=np.uint8), months, np.ones(1000))
    m = sources.BatchMaker(src, 50, shuffle=True, augment=sources.Augment(), seed=1, balance=1.0)
    young = [np.mean(src.months[m.order()] < 100) for m.epoch in range(5)]
    assert 0.4 < np.mean(young) < 0.6  # half the draws young (10 % of the data)
    plain = sources.BatchMaker(src, 50, shuffle=True, seed=1)
    assert sorted(plain.order().tolist()) == list(range(1000))  # off: a permutation, as before
    m.epoch = 0
    order = m.order()
    b, j = next((b, j) for b in range(len(m)) for j in range(50)
                if order[b * 50 + j] in order[:b * 50 + j])  # an image drawn twice in one epoch ...
    first = int(np.nonzero(order == order[b * 50 + j])[0][0])
    x1, x2 = m.batch(first // 50)[0]["image"][first % 50], m.batch(b)[0]["image"][j]
    assert not np.array_equal(x1, x2)  # ... is augmented differently each time


def test_augment_keeps_left_right_orientation_and_range():
    img = np.zeros((64, 64), np.uint8)
    img[16:48, 6:24] = 200  # a bright block on the LEFT
    aug = sources.Augment()
    for k in range(30):
        out = aug(img, np.random.default_rng(k))
        assert out.dtype == np.uint8 and out.shape == img.shape
        cols = np.nonzero(out > 100)[1]
        assert cols.mean() < 32  # never mirrored to the right
    assert not np.array_equal(aug(img, np.random.default_rng(0)), img)  # it does change the image


def test_augment_blur_is_an_independent_cv2_blur_or_unsharp_mask_after_the_rest():
    """blur>0 is the blur=0 augmentation (same draws first) then cv2.GaussianBlur or x + k (x - blur(x)) with the
    next three draws (sigma, which one, k), clipped to uint8; deterministic for a seed; both kinds happen."""
    import cv2

    img = np.random.default_rng(3).integers(0, 256, (48, 48)).astype(np.uint8)
    img[10:30, 8:20] = 220
    blur = sources.Augment(blur=1.5)
    seen = set()
    for k in range(12):
        ref_rng = np.random.default_rng(k)
        plain = sources.Augment(blur=0.0)(img, np.random.default_rng(k))
        sources.Augment()(img, ref_rng)  # consumes exactly the plain draws; the blur's three come next
        sigma = ref_rng.uniform(0.0, 1.5)
        sharpen, amount = ref_rng.random() < 0.5, ref_rng.uniform(0.0, 1.0)
        out = blur(img, np.random.default_rng(k))
        assert out.dtype == np.uint8 and out.shape == img.shape
        soft = cv2.GaussianBlur(plain.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        want = plain + amount * (plain - soft) if sharpen else soft
        want = np.clip(np.rint(want), 0, 255)
        # the reference starts from the rounded plain image, the augmentation from its float: within rounding
        assert np.abs(out.astype(float) - want).mean() < 1.0, k
        assert np.array_equal(out, blur(img, np.random.default_rng(k)))  # deterministic for a seed
        seen.add(bool(sharpen))
        if sigma > 0.5 and (amount > 0.2 or not sharpen):
            lap = lambda a: np.abs(cv2.Laplacian(a.astype(np.float32), cv2.CV_32F)).mean()
            assert (lap(out) > lap(plain)) if sharpen else (lap(out) < lap(plain)), k
    assert seen == {True, False}  # both kinds drawn


def test_split_is_disjoint_stratified_and_seeded():
    months = np.random.default_rng(1).uniform(0, 228, 500)
    tr, va = T._split_indices(500, 0.2, 7, months)
    assert len(va) == 100 and len(tr) == 400 and not set(tr) & set(va)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(500))
    tr2, va2 = T._split_indices(500, 0.2, 7, months)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, T._split_indices(500, 0.2, 8, months)[1])
    # stratified: every 2-year band holds about 20 % of its images in validation
    for lo in range(0, 19, 2):
        band = (months >= lo * 12) & (months < (lo + 2) * 12)
        share = np.isin(np.flatnonzero(band), va).mean()
        assert 0.1 < share < 0.3, (lo, share)


def test_pydataset_epoch_follows_fit_and_resume_sees_same_batches():
    """Every batch drawn during Keras epoch e is drawn with dataset epoch e, each batch once, in order; a
    dataset started at epoch 1 (a resume) gives exactly epoch 1's batches."""
    import keras

    src = _arrays(24)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("begin", epoch, None))

    ds = sources.make_dataset(src, 8, shuffle=True, augment=True, seed=5, drop_remainder=True)
    from keras_models.registry import build_model

    model = build_model("tiny_test_age", input_size=S)
    T.compile_model(model, T.TrainConfig())
    batches = {}
    orig = ds.maker.batch

    def record(b):
        out = orig(b)
        seen.append(("draw", ds.maker.epoch, b))
        batches.setdefault(ds.maker.epoch, {})[b] = out[0]["image"]
        return out

    ds.maker.batch = record
    model.fit(ds, epochs=3, verbose=0, callbacks=[ds.epoch_callback(), Spy()], shuffle=False)
    begins = [i for i, ev in enumerate(seen) if ev[0] == "begin"]
    assert [seen[i][1] for i in begins] == [0, 1, 2]
    for e, start in enumerate(begins):
        stop = begins[e + 1] if e + 1 < len(begins) else len(seen)
        draws = [ev for ev in seen[start + 1:stop]]
        assert draws == [("draw", e, b) for b in range(3)], draws  # batches 0..2 of dataset epoch e, once each
    resumed = sources.make_dataset(src, 8, shuffle=True, augment=True, seed=5, drop_remainder=True, epoch=1)
    for b in range(len(resumed)):
        assert np.array_equal(resumed[b][0]["image"], batches[1][b])


# ----------------------------------------------------------------------------------------------- train + resume


def test_train_in_process_writes_run_and_recovers_uncommitted_row(tmp_path):
    out = tmp_path / "run"
    src = _arrays(40)
    cfg = T.TrainConfig(model="tiny_test_age", size=S, epochs=2, batch=8, lr=1e-2, out=str(out), verbose=0,
                        val_fraction=0.2)
    r = T.train(cfg, source=src)
    assert r.epochs_done == 2 and _log_epochs(out / "log.csv") == [0, 1]
    for name in ("run.json", "state.json", "last.keras", "best.keras", "val/report.json", "val/pred_vs_true.png"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model"] == "tiny_test_age" and run["n_val"] == 8 and len(run["val_ids"]) == 8
    # the val report is the best checkpoint's, and agrees with Keras' own validation MAE of that epoch
    rep = json.loads((out / "val/report.json").read_text())
    assert rep["overall"]["mae_months"] == pytest.approx(r.best_val_mae_months, rel=1e-4)
    # a second run into the same folder without --resume is refused
    with pytest.raises(EdgeBoneageError, match="--resume"):
        T.train(cfg, source=src)
    # simulate a kill after epoch 2's CSV row was written but before its state commit
    with open(out / "log.csv", "a") as f:
        f.write("2" + ",9.9" * (len(open(out / "log.csv").readline().split(",")) - 1) + "\n")
    assert _log_epochs(out / "log.csv") == [0, 1, 2]
    r2 = T.train(T.TrainConfig(out=str(out), resume=True, epochs=3, verbose=0), source=src)
    assert r2.initial_epoch == 2 and r2.epochs_done == 3
    assert _log_epochs(out / "log.csv") == [0, 1, 2]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert float(rows[2]["loss"]) != 9.9  # the uncommitted row was replaced by the real epoch 2
    last = T.load_model(out / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 3 * (32 // 8)  # optimizer state carried over the resume
    assert not list((out / "checkpoints").glob("*.tmp.keras")) and len(list((out / "checkpoints").iterdir())) == 1


def test_training_learns_an_easy_signal(tmp_path):
    """End to end through the engine (targets, loss, batches, checkpoints, report): image brightness encodes
    the age, so a working pipeline must get far below the ~57-month MAE of predicting the mean age."""
    src = _arrays(160)
    r = T.train(T.TrainConfig(model="tiny_test_age", size=S, epochs=25, batch=16, lr=1e-2, out=str(tmp_path / "r"),
                              verbose=0, val_fraction=0.25, augment=False), source=src)
    first = r.history[0]["val_age_mae"]
    assert first > 40 and r.best_val_mae_months < 15, [round(h["val_age_mae"], 1) for h in r.history]
    assert r.val_report["overall"]["mae_months"] == pytest.approx(r.best_val_mae_months, rel=1e-4)
    assert r.val_report["overall"]["acc_1y"] > 0.5


def test_init_from_copies_weights_by_path_and_drops_extra_outputs(tmp_path):
    """--init-from takes a packaged model too: the same network plus extra weights (the feature check's) starts the
    run with the shared weights; a different network is refused in one line."""
    import keras

    src = _arrays(24)
    cfg = dict(model="tiny_test_age", size=S, epochs=1, batch=8, verbose=0, val_fraction=0.25)
    T.train(T.TrainConfig(lr=1e-2, out=str(tmp_path / "a"), **cfg), source=src)
    m = T.load_model(tmp_path / "a" / "best.keras")
    feats = next(l for l in reversed(m.layers) if len(l.output.shape) == 2 and l.output.shape[-1] > 1
                 and l.name not in m.output_names).output
    outs = {n: t for n, t in zip(m.output_names, m.outputs)}
    outs["extra_head"] = keras.layers.Dense(3, name="extra_head")(feats)
    packaged = keras.Model(m.inputs, outs, name=m.name)
    T.save_model_atomic(packaged, tmp_path / "packaged.keras")
    T.train(T.TrainConfig(lr=1e-12, weight_decay=0.0, ema=None, init_from=str(tmp_path / "packaged.keras"),
                          out=str(tmp_path / "b"), **cfg), source=src)
    b = T.load_model(tmp_path / "b" / "last.keras")
    want = {w.path: w.numpy() for w in m.trainable_weights}
    assert [w.path for w in b.trainable_weights] == list(want)
    for w in b.trainable_weights:  # lr ~ 0: still the initial weights
        np.testing.assert_allclose(w.numpy(), want[w.path], atol=1e-5, err_msg=w.path)
    other = keras.Model(inp := keras.Input((4,)), keras.layers.Dense(3)(inp))
    T.save_model_atomic(other, tmp_path / "other.keras")
    with pytest.raises(EdgeBoneageError, match="not the same architecture"):
        T.train(T.TrainConfig(lr=1e-2, init_from=str(tmp_path / "other.keras"), out=str(tmp_path / "c"), **cfg),
                source=src)


def test_bn_momentum_override_is_saved(tmp_path):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.BatchNormalization(momentum=0.999)(keras.layers.Dense(3)(inp)))
    assert T.set_bn_momentum(model, 0.9) == 1
    T.save_model_atomic(model, tmp_path / "m.keras")
    loaded = T.load_model(tmp_path / "m.keras")
    assert [l.momentum for l in loaded.layers if isinstance(l, keras.layers.BatchNormalization)] == [0.9]
    with pytest.raises(EdgeBoneageError, match="momentum"):
        T.set_bn_momentum(model, 1.5)


def test_truncate_log_drops_uncommitted_partial_and_duplicate_rows(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_age_mae\n0,1.0,50\n1,0.9,40\n1,0.8,39\n2,0.7,38\n3,0.6")  # 3: half-written
    T._truncate_log(log, 2)
    assert log.read_text() == "epoch,loss,val_age_mae\n0,1.0,50\n1,0.8,39\n2,0.7,38\n"
    log.write_text("epoch,loss,val_age_mae\n0,1.0,50\n1,0.9")  # committed 0; row 1 torn mid-write
    T._truncate_log(log, 0)
    assert _log_epochs(log) == [0] and log.read_text().endswith("\n")


@pytest.mark.slow
def test_cli_kill_and_resume_every_epoch_logged_once(tmp_path):
    """Start `edge-boneage train` in a child, SIGKILL it once epoch 1 is committed, resume, check the log.

    The kill waits for state.json (the commit), not for the CSV row, which is written just before it: a kill between
    the two is the torn-row case, tested in test_train_in_process_writes_run_and_recovers_uncommitted_row."""
    out = tmp_path / "run"
    script = _cli_script(tmp_path, slow_batches=0.25)
    argv = [sys.executable, str(script), "train", "--model", "tiny_test_age", "--size", str(S), "--synth-n", "48",
            "--epochs", "5", "--batch", "8", "--out", str(out), "--verbose", "0", "--no-augment"]
    proc = subprocess.Popen(argv, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and T.committed_epoch(out) < 1 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = _log_epochs(out / "log.csv")
    committed = T.committed_epoch(out)
    assert 1 <= committed < 4 and 2 <= len(killed_at) < 5, (committed, killed_at)  # really interrupted mid-run
    assert not (out / "val").exists()
    res = subprocess.run(argv + ["--resume"], env=_child_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert _log_epochs(out / "log.csv") == [0, 1, 2, 3, 4]
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 4 and (out / "last.keras").is_file() and (out / "best.keras").is_file()
    run = json.loads((out / "run.json").read_text())
    assert len(run["resumes"]) == 1 and run["resumes"][0]["at_epoch"] == committed + 1 >= 2
    assert "trained tiny_test_age" in res.stdout and "overall" in res.stdout


# ----------------------------------------------------------------------------------------------- evaluate


def test_evaluate_keras_and_tflite_agree(tmp_path):
    """`edge-boneage evaluate` on a .keras and on its LiteRT export: same MAE; the .tflite path imports no TF/Keras."""
    from keras_models.registry import build_model

    convert = pytest.importorskip("edge_boneage.convert.export")
    model = build_model("tiny_test_age", input_size=S)
    keras_path = tmp_path / "m.keras"
    T.save_model_atomic(model, keras_path)
    tfl_path = convert.export_litert(model, tmp_path / "m.tflite")

    from edge_boneage import cli

    assert cli.main(["evaluate", str(keras_path), "--data", "synth", "--synth-n", "24", "--out",
                     str(tmp_path / "ek")]) == 0
    code = (f"import sys\nfrom edge_boneage import cli\nrc = cli.main(sys.argv[1:])\n"
            f"heavy = sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules)\n"
            f"print('HEAVY', heavy)\nsys.exit(rc)\n")
    res = subprocess.run([sys.executable, "-c", code, "evaluate", str(tfl_path), "--data", "synth", "--synth-n",
                          "24", "--out", str(tmp_path / "et")], env=_child_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY []" in res.stdout  # LiteRT evaluation never imported TensorFlow/Keras/JAX
    rk = json.loads((tmp_path / "ek/report.json").read_text())
    rt = json.loads((tmp_path / "et/report.json").read_text())
    assert rk["overall"]["n"] == rt["overall"]["n"] == 24
    assert rt["overall"]["mae_months"] == pytest.approx(rk["overall"]["mae_months"], abs=1e-3)
    pk = np.loadtxt(tmp_path / "ek/predictions.csv", delimiter=",", skiprows=1, usecols=2)
    pt = np.loadtxt(tmp_path / "et/predictions.csv", delimiter=",", skiprows=1, usecols=2)
    assert np.abs(pk - pt).max() < 1e-3 and pk.std() > 0  # per image, and the model is not constant
    assert (tmp_path / "et/bland_altman.png").is_file() and rt["meta"]["format"] == "tflite"


def test_evaluate_errors_are_one_line(tmp_path):
    from edge_boneage import cli

    assert cli.main(["evaluate", str(tmp_path / "nope.keras"), "--data", "synth", "--out", str(tmp_path)]) == 1
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"x")
    with pytest.raises(EdgeBoneageError, match="unknown model format"):
        T.open_age_model(bad)


def test_model_arg_parsing_and_unknown_model(tmp_path):
    from edge_boneage.commands.train import parse_model_args

    assert parse_model_args(["alpha=0.5", "use_sex=false", "lbp=ror", "n=9", "x=null"]) == {
        "alpha": 0.5, "use_sex": False, "lbp": "ror", "n": 9, "x": None}
    # "none" is a real option value (RIL's lbp=none), not Python None: it once crashed the ablation run
    assert parse_model_args(["lbp=none"]) == {"lbp": "none"}
    with pytest.raises(EdgeBoneageError, match="key=value"):
        parse_model_args(["alpha"])
    with pytest.raises(EdgeBoneageError, match="unknown model 'no_such_model'"):
        T.train(T.TrainConfig(model="no_such_model", size=S, epochs=1, out=str(tmp_path / "r")), source=_arrays(16))


# ----------------------------------------------------------------------------------------------- JAX data parallel


@pytest.mark.slow
def test_jax_two_device_data_parallel(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "run"
    script = _cli_script(tmp_path)
    env = _child_env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2",
                     JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, str(script), "train", "--model", "tiny_test_age", "--size", str(S),
                          "--synth-n", "40", "--epochs", "2", "--batch", "8", "--out", str(out), "--verbose", "0"],
                         env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["environment"]["backend"] == "jax"
    assert run["distribution"]["distribution"] == "DataParallel over 2 devices"
    assert len(run["distribution"]["devices"]) == 2
    assert _log_epochs(out / "log.csv") == [0, 1]
    # the JAX-trained checkpoint loads under TensorFlow (this process)
    m = T.load_model(out / "last.keras")
    assert m.count_params() > 0


# ----------------------------------------------------------------------------------------------- real RSNA files


def test_rsna_files_train_split_and_evaluate_from_run(tmp_path, rsna_dir):
    """Real images through io + preprocess: the split is datasets.stratified_split's, and `evaluate --from-run`
    reproduces the training run's own validation report."""
    from edge_boneage import cli, datasets

    out = tmp_path / "run"
    cfg = T.TrainConfig(model="tiny_test_age", data="rsna", rsna_dir=str(rsna_dir), limit=40, size=S, epochs=1,
                        batch=8, out=str(out), verbose=0, val_fraction=0.25, seed=3)
    r = T.train(cfg)
    run = json.loads((out / "run.json").read_text())
    first40 = datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100").samples[:40]
    _, val = datasets.stratified_split(first40, val_fraction=0.25, seed=3)
    assert sorted(run["val_ids"]) == sorted(s.id for s in val) and run["n_train"] + run["n_val"] == 40
    x, _ = sources.BatchMaker(T.load_source(cfg), 4).batch(0)
    assert x["image"].shape == (4, S, S, 1) and x["image"].max() > 0  # decoded, letterboxed, resized
    assert cli.main(["evaluate", str(out / "best.keras"), "--from-run", str(out), "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev/report.json").read_text())
    assert again["overall"] == pytest.approx(r.val_report["overall"], rel=1e-5)


def test_cli_resume_refuses_changes_finished_run_and_sigterm(tmp_path, capsys):
    """--resume with a changed setting is refused naming it; resuming a finished run says so (exit 0, no hidden
    link files left); SIGTERM stops like Ctrl-C with the resume command in the message."""
    from edge_boneage.cli import main

    out = tmp_path / "run"
    base = ["train", "--model", "mobilenetv3_large", "--model-arg", "alpha=0.35", "--data", "synth", "--synth-n", "24",
            "--size", "32", "--batch", "8", "--epochs", "1", "--crop", "none", "--frame", "letterbox", "--out", str(out),
            "--verbose", "0"]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--resume", "--lr", "0.01", "--batch", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch 8 -> 4" in err[0] and "lr 0.0005 -> 0.01" in err[0], err
    assert main(base + ["--resume"]) == 0
    assert "already finished its 1 epochs" in capsys.readouterr().out
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], list(out.iterdir())

    env = dict(_child_env())
    argv = [sys.executable, "-m", "edge_boneage.cli", *base[:-4], "--epochs", "50", "--out", str(tmp_path / "r2"),
            "--verbose", "0"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while T.committed_epoch(tmp_path / "r2") < 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"edge-boneage train --resume --out {tmp_path / 'r2'}" in stderr


@pytest.mark.parametrize("extra, phrase", [(["--model-arg", "nosuch=1"], "unexpected keyword argument 'nosuch'"),
                                           (["--model-arg", "alpha=abc"], "--model-arg alpha=abc"),
                                           (["--size", "8"], "input_size must be >= 32")])
def test_bad_model_args_are_one_line_usage_errors(tmp_path, capsys, extra, phrase):
    from edge_boneage.cli import main

    rc = main(["train", "--data", "synth", "--synth-n", "16", "--batch", "4", "--epochs", "1", "--crop", "none",
               "--out", str(tmp_path / "r"), "--verbose", "0", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and phrase in err[0] and "edge-boneage models" in err[0], err


def test_unknown_enhance_is_a_usage_error(capsys):
    from edge_boneage.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--enhance", "sharpen"])
    assert e.value.code == 2 and "invalid choice: 'sharpen'" in capsys.readouterr().err


def test_source_size_auto_is_the_data_files_common_square(tmp_path):
    """--source-size auto (the cpu recipe): the file images' own size when all are N x N (read from headers),
    None for mixed sizes or synthetic data; the resolved number is what the contract gets."""
    import cv2

    d = tmp_path / "imgs"
    d.mkdir()
    rows = ["id,boneage,male"]
    for i in range(6):
        cv2.imwrite(str(d / f"{i}.png"), np.full((40, 40), 30 * i, np.uint8))
        rows.append(f"{i},{24 + 12 * i},{'True' if i % 2 else 'False'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = T.TrainConfig(data="csv", labels_csv=str(tmp_path / "labels.csv"), image_dir=str(d), source_size="auto",
                        size=32, frame="squeeze", crop="hand")
    r = T.resolve_source_size(cfg)
    assert r.source_size == 40 and r.preprocess_spec().source_size == 40 and r.preprocess_spec().version == 3
    cv2.imwrite(str(d / "5.png"), np.full((40, 50), 99, np.uint8))  # one odd size: no common square
    assert T.resolve_source_size(cfg).source_size is None
    assert T.resolve_source_size(dataclasses.replace(cfg, source_size="none")).preprocess_spec().version == 2
    assert T.resolve_source_size(dataclasses.replace(cfg, data="synth")).source_size is None
    assert T.resolve_source_size(dataclasses.replace(cfg, source_size="100")).source_size == 100
    with pytest.raises(EdgeBoneageError, match="--source-size 'big'"):
        T.resolve_source_size(dataclasses.replace(cfg, source_size="big"))
    with pytest.raises(EdgeBoneageError, match="not resolved"):
        cfg.preprocess_spec()
