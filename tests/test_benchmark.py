"""`edge-boneage benchmark`: rows and statuses (incl. a forced export failure, an exporter crash and a runner crash),
JSON/CSV/PNG outputs, MACs vs hand computation, the benchmark_model parser (+ a fake adb), and a real ssh run
against an sshd started on loopback by the test (skipped with a reason when openssh-server is not installed:
scripts/install_sshd.sh installs it)."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError
from edge_boneage.bench import devices as D
from edge_boneage.bench import report as Rep

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "benchmark_model_output.txt"
TINY = {"input_size": 32, "alpha": 0.35, "minimalistic": True}


# ----------------------------------------------------------------------------------------------------------------
# benchmark_model output parser and the adb backend


def test_parse_benchmark_model_fixture():
    res = D.parse_benchmark_model_output(FIXTURE.read_text())
    t, m = res["timing_us"], res["memory"]
    assert (t["init"], t["first"], t["warmup_avg"], t["avg"]) == (41913.0, 38715.0, 23268.4, 22684.2)
    # the LAST count= line is the timed runs; the one before it the warm-up runs
    assert (t["runs"], t["warmup_runs"], t["std"], t["min"], t["max"]) == (50, 22, 712.0, 21802.0, 26119.0)
    assert (t["p5"], t["p50"], t["p95"], t["p90"]) == (21894.0, 22513.0, 24387.0, None)
    assert (m["init_delta_mb"], m["overall_delta_mb"], m["peak_mb"]) == (12.8711, 31.4023, 36.1055)
    assert res["model_file_mb"] == 6.74213 and res["accuracy"] is None


def test_parse_benchmark_model_exponents_prefixes_and_failure():
    text = ("07-08 15:34:26.201 I/tflite  ( 5395): count=10 first=2653894 curr=2709263 min=2640862 max=3025403 "
            "avg=2.71985e+06 std=105101\n"
            "07-08 15:34:26.202 I/tflite  ( 5395): Inference timings in us: Init: 458883, First inference: 2732148, "
            "Warmup (avg): 2.73215e+06, Inference (avg): 2.71985e+06\n"
            "Memory footprint delta from the start of the tool (MB): init=286.73 overall=337\n")
    res = D.parse_benchmark_model_output(text)
    assert res["timing_us"]["avg"] == pytest.approx(2.71985e6) and res["timing_us"]["warmup_avg"] == 2.73215e6
    assert res["timing_us"]["runs"] == 10 and res["timing_us"]["p50"] is None and res["timing_us"]["warmup_runs"] is None
    assert res["memory"]["overall_delta_mb"] == 337.0 and res["memory"]["peak_mb"] is None
    with pytest.raises(EdgeBoneageError, match="no 'Inference timings in us' line; last line: ERROR: Failed to mmap"):
        D.parse_benchmark_model_output("INFO: STARTING!\nERROR: Failed to mmap model m.tflite\n")


def test_adb_backend_with_fake_adb(tmp_path):
    log = tmp_path / "adb.log"
    fake = tmp_path / "adb"
    fake.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in
  *benchmark_model\\ --graph=*broken*) echo "ERROR: Failed to mmap model"; exit 1 ;;
  *benchmark_model\\ --graph=*) cat {FIXTURE}; exit 0 ;;
esac
exit 0
""")
    fake.chmod(0o755)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    model, broken = tmp_path / "m_int8.tflite", tmp_path / "broken.tflite"
    model.write_bytes(b"x" * 100), broken.write_bytes(b"y")
    with pytest.raises(EdgeBoneageError, match="--benchmark-model-bin"):
        D.make_backend("adb:SER1")
    be = D.make_backend("adb:SER1", benchmark_model_bin=str(binary), adb=str(fake))
    be.prepare([])
    res = be.run_tflite(model, None, threads=2, runs=50, warmup=5)
    bad = be.run_tflite(broken, None, threads=1)
    be.close()
    calls = log.read_text().splitlines()
    remote = be.remote  # a fresh folder of this run's own: close() removes it and nothing else
    assert remote.startswith("/data/local/tmp/edge_boneage_bench_") and remote != D.make_backend(
        "adb:SER1", benchmark_model_bin=str(binary), adb=str(fake)).remote
    assert all(c.startswith("-s SER1 ") for c in calls)
    assert any(f"push {binary} {remote}/benchmark_model" in c for c in calls)
    assert any(f"push {model} {remote}/m_int8.tflite" in c for c in calls)
    assert any(f"--graph={remote}/m_int8.tflite --num_threads=2 --num_runs=50 "
               "--warmup_runs=5" in c for c in calls)
    assert res["ok"] and res["timing_us"]["avg"] == 22684.2 and res["model_bytes"] == 100
    assert not bad["ok"] and "ERROR: Failed to mmap model" in bad["error"]
    assert calls[-1].endswith(f"rm -rf {remote}")


# ----------------------------------------------------------------------------------------------------------------
# report helpers


def test_pareto_front_and_cpu_peak():
    pts = [(1.0, 5.0), (2.0, 4.0), (1.5, 6.0), (3.0, 4.0), (4.0, 1.0)]
    assert Rep.pareto_front(pts) == [0, 1, 4]
    zen4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2600.000\n" \
           "flags\t\t: fpu sse avx fma avx2 avx512f avx512bw\n"
    intel = zen4.replace("AuthenticAMD", "GenuineIntel").replace(": 25", ": 6")
    avx2 = zen4.replace(" avx512f avx512bw", "")
    assert Rep.cpu_peak(zen4)["peak_gmacs_per_core"] == pytest.approx(16 * 2.6)
    assert Rep.cpu_peak(intel)["peak_gmacs_per_core"] == pytest.approx(32 * 2.6)
    assert Rep.cpu_peak(avx2)["peak_gmacs_per_core"] == pytest.approx(16 * 2.6)
    assert Rep.cpu_peak("")["peak_gmacs_per_core"] is None


def test_ratios_by_hand():
    def row(model, variant, runtime, threads, p50, gmacs_s=None):
        return {"model": model, "variant": variant, "runtime": runtime, "threads": threads, "status": "ok",
                "p50_ms": p50, "gmacs_per_s": gmacs_s}

    rows = [row("ril", "f32", "litert", 1, 6.0, 20.0), row("ril", "int8", "litert", 1, 4.5),
            row("ril", "f32", "onnxruntime", 1, 8.0), row("plain", "f32", "litert", 1, 5.0),
            {**row("plain", "int8", "litert", 1, 1.0), "status": "validation failed"}]
    peak = {"peak_gmacs_per_core": 40.0}
    q = {(r["name"], r["model"]): r for r in Rep.compute_ratios(rows, pairs=[{"a": "ril", "b": "plain", "goal": 1.5}],
                                                                 peak=peak)}
    assert q[("litert_vs_onnxruntime", "ril")]["value"] == pytest.approx(0.75) and q[("litert_vs_onnxruntime", "ril")]["meets"]
    assert q[("int8_vs_f32", "ril")]["value"] == pytest.approx(0.75)
    assert ("int8_vs_f32", "plain") not in q  # failed rows never enter a ratio
    assert q[("ril_vs_plain", "ril / plain")]["value"] == pytest.approx(1.2)
    assert q[("gmacs_vs_peak", "ril")]["value"] == pytest.approx(0.5)
    assert "NOT MET" not in Rep.format_ratios(list(q.values()))


# ----------------------------------------------------------------------------------------------------------------
# MACs vs hand computation


def _tiny_conv_dense():
    import keras

    x_in = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x_in)  # 8*8*4 outputs x 3*3*3 = 6912
    x = keras.layers.DepthwiseConv2D(3, padding="valid", name="dw")(x)  # 6*6*4 outputs x 3*3 = 1296
    x = keras.layers.Flatten()(x)
    y = keras.layers.Dense(5, name="fc")(x)  # 5 outputs x 144 inputs = 720
    return keras.Model(x_in, y)


def test_macs_keras_and_tflite_match_hand_count(tmp_path):
    from edge_boneage.convert.export import export_litert
    from edge_boneage.bench.macs import keras_macs
    from edge_boneage.device_runner import count_macs

    model = _tiny_conv_dense()
    hand = {"CONV_2D": 8 * 8 * 4 * 27, "DEPTHWISE_CONV_2D": 6 * 6 * 4 * 9, "FULLY_CONNECTED": 5 * 144}
    k = keras_macs(model)
    assert k["by_layer_type"] == {"Conv2D": hand["CONV_2D"], "DepthwiseConv2D": hand["DEPTHWISE_CONV_2D"],
                                  "Dense": hand["FULLY_CONNECTED"]}
    path = export_litert(model, tmp_path / "tiny.tflite")
    g = count_macs(str(path))
    assert g["by_op"] == hand and g["macs"] == sum(hand.values()) == 8928


# ----------------------------------------------------------------------------------------------------------------
# end to end through the harness (child processes for every export and every row)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    from edge_boneage.bench.config import config_from_dict
    from edge_boneage.bench.harness import run_benchmark

    tmp = tmp_path_factory.mktemp("bench")
    bad = tmp / "broken.keras"
    bad.write_bytes(b"this is not a zip archive")
    cfg = config_from_dict({
        "models": [{"model": "mobilenetv3_large", "name": "tiny", "kwargs": TINY}, {"model": str(bad)}],
        "variants": ["f32", "fp16", "int8"], "threads": [1], "runtimes": ["litert", "onnxruntime", "openvino", "keras"],
        "data": {"source": "synth", "n": 6, "seed": 3}, "runs": 3, "warmup": 1, "calib_n": 4, "check_n": 4,
        "interleave_repeats": 3, "interleave_block": 2, "out": "out", "title": "test"})
    old = os.environ.get("EDGE_BONEAGE_BENCH_FAULT")
    cwd = os.getcwd()
    os.chdir(tmp)  # a relative "out" is the caller's (the children run elsewhere); restored below
    # fault injection: the exporter aborts during fp16 (a fresh exporter must continue with int8) and the LiteRT
    # runner aborts on the int8 file (that row must say so; the harness must go on)
    os.environ["EDGE_BONEAGE_BENCH_FAULT"] = "export-abort:tiny_fp16,abort:tiny_int8.tflite"
    logs: list[str] = []
    try:
        rep = run_benchmark(cfg, log=logs.append)
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("EDGE_BONEAGE_BENCH_FAULT", None)
        else:
            os.environ["EDGE_BONEAGE_BENCH_FAULT"] = old
    return rep, tmp / "out", logs


def _row(rep, **kw):
    found = [r for r in rep["rows"] if all(r.get(k) == v for k, v in kw.items())]
    assert len(found) == 1, (kw, [(r["model"], r["variant"], r["runtime"], r["status"]) for r in rep["rows"]])
    return found[0]


def test_harness_rows_and_statuses(bench_run):
    rep, _, logs = bench_run
    f32 = _row(rep, model="tiny", variant="f32", runtime="litert")
    assert f32["status"] == "ok", f32["error"]
    for k in ("size_mb", "gmacs", "mae_months", "acc_1y", "init_ms", "first_ms", "warmup_ms", "mean_ms", "p50_ms",
              "p90_ms", "peak_mem_mb", "gmacs_per_s"):
        assert isinstance(f32[k], float) and f32[k] > 0 or (k == "acc_1y" and f32[k] is not None), (k, f32[k])
    assert f32["p50_ms"] <= f32["p90_ms"] and f32["result"]["timing_us"]["runs"] == 3
    assert f32["peak_mem_mb"] < 500  # the LiteRT runner child imports numpy + the interpreter only (no TensorFlow)
    d = f32["delegate"]  # XNNPACK partitions and the ops outside them, for every LiteRT file
    assert d["partitions"] >= 1 and 0 < d["delegated"] <= d["ops"] and sum(d["outside"].values()) == d["ops"] - d["delegated"]
    assert "XNNPACK" in rep["text"] and "ops delegated" in rep["text"]
    assert f32["gmacs_per_s"] == pytest.approx(f32["gmacs"] / (f32["mean_ms"] / 1000))
    # every ok row re-timed in one interleaved child: 3 shuffled repeats x 2 calls; the sequential p50 is kept
    for r in rep["rows"]:
        if r["status"] == "ok" and r["runtime"] in ("litert", "onnxruntime", "keras"):
            assert r["timing"] == "interleaved" and r["interleaved_calls"] == 6, r
            assert r["p10_ms"] <= r["p50_ms"] <= r["p90_ms"] and r["seq_p50_ms"] > 0

    fp16 = _row(rep, model="tiny", variant="fp16")
    assert fp16["status"] == "export failed" and "SIGABRT" in fp16["error"] and "fp16" in fp16["error"]
    int8 = _row(rep, model="tiny", variant="int8", runtime="litert")
    assert int8["status"] == "validation failed" and "crashed with SIGABRT" in int8["error"] and int8["crashed"]
    assert int8["file"].endswith("tiny_int8.tflite") and int8["size_mb"] > 0  # the exporter continued after fp16
    broken = _row(rep, model="broken")
    assert broken["status"] == "export failed" and "cannot load Keras model" in broken["error"]

    keras_row = _row(rep, model="tiny", runtime="keras")
    assert keras_row["status"] == "ok", keras_row["error"]
    ort = _row(rep, model="tiny", runtime="onnxruntime")
    if ort["status"] == "skipped":
        pytest.skip(f"ONNX rows skipped: {ort['error']}")
    assert ort["status"] == "ok", ort["error"]
    # the same network through three runtimes: the same predictions (random weights, so only agreement counts)
    assert ort["mae_months"] == pytest.approx(f32["mae_months"], abs=1e-3)
    assert keras_row["mae_months"] == pytest.approx(f32["mae_months"], abs=1e-3)
    ov = _row(rep, model="tiny", runtime="openvino")  # OpenVINO reads the same ONNX file
    if ov["status"] != "skipped":
        assert ov["status"] == "ok", ov["error"]
        assert ov["file"] == ort["file"] and ov["mae_months"] == pytest.approx(f32["mae_months"], abs=1e-3)
        assert ov["timing"] == "interleaved"
    assert ort["gmacs"] == f32["gmacs"]  # same network: MACs from the f32 graph
    # MobileNetV3 runs every conv on the true batch: the Keras-layer count equals the .tflite graph count
    assert rep["models"]["tiny"]["keras_macs"] == pytest.approx(f32["gmacs"] * 1e9, rel=1e-6)
    assert any(q["name"] == "litert_vs_onnxruntime" for q in rep["ratios"])
    assert rep["models"]["tiny"]["weights"].startswith(("random weights", "trained weights"))


def test_harness_outputs_written(bench_run):
    rep, out, _ = bench_run
    data = json.loads((out / "benchmark.json").read_text())
    assert len(data["rows"]) == len(rep["rows"]) and data["environment"]["load_average_before"] is not None
    with open(out / "benchmark.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == Rep.COLUMNS and len(rows) == len(rep["rows"])
    assert {r["status"] for r in rows} >= {"ok", "export failed", "validation failed"}
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "tiny" in (out / "benchmark.txt").read_text()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave no temporaries


def test_cli_config_errors(tmp_path):
    from edge_boneage.cli import main

    cfg = tmp_path / "bench_bad.json"
    cfg.write_text(json.dumps({"models": ["mobilenetv3_large"], "variants": ["f32", "int4"]}))
    assert main(["benchmark", "--config", str(cfg)]) == 1
    cfg.write_text(json.dumps({"models": ["mobilenetv3_large"], "colour": 1}))
    assert main(["benchmark", "--config", str(cfg)]) == 1
    assert main(["benchmark"]) == 1


def test_weights_are_named_files_never_guessed(tmp_path, monkeypatch):
    from edge_boneage.bench.config import config_from_dict

    with pytest.raises(EdgeBoneageError, match="weights 'auto'.*no longer read"):
        config_from_dict({"models": [{"model": "mobilenetv3_large", "weights": "auto"}]}, "cfg.json")
    with pytest.raises(EdgeBoneageError, match="missing.keras: no such file"):
        config_from_dict({"models": [{"model": "mobilenetv3_large", "weights": str(tmp_path / "missing.keras")}]},
                         "cfg.json")
    (tmp_path / "w.keras").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)  # a relative path is the caller's: the children get it absolute
    cfg = config_from_dict({"models": [{"model": "mobilenetv3_large", "weights": "w.keras"}],
                            "data": {"source": "rsna", "rsna_dir": "rsna", "n": 8}}, "cfg.json")
    assert cfg.models[0].weights == str(tmp_path / "w.keras") and cfg.data["rsna_dir"] == str(tmp_path / "rsna")


def test_shipped_configs_parse():
    from edge_boneage.bench.config import load_config

    configs = sorted((REPO / "benchmarks" / "configs").glob("bench_*.json"))
    assert configs, "no benchmarks/configs/bench_*.json"
    for p in configs:
        cfg = load_config(p)
        assert cfg.models and cfg.variants


# ----------------------------------------------------------------------------------------------------------------
# ssh to a real sshd on loopback


@pytest.fixture
def loopback_sshd(tmp_path):
    from benchmarks.ssh_loopback import SshdUnavailable, loopback_sshd as sshd

    try:
        with sshd(tmp_path) as box:
            yield box
    except SshdUnavailable as e:
        pytest.skip(str(e))


def _tiny_age_tflite(path: Path, extra_input: bool = False) -> Path:
    """A tiny model under the age I/O contract; extra_input adds an input no evaluation set has."""
    import keras

    from edge_boneage.convert.export import export_litert

    keras.utils.set_random_seed(1)
    image = keras.Input((32, 32, 1), dtype="uint8", name="image")
    sex = keras.Input((1,), name="sex")
    inputs = {"image": image, "sex": sex}
    x = keras.layers.Rescaling(1 / 255.0)(image)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    feats = [x, sex]
    if extra_input:
        inputs["weight_kg"] = keras.Input((1,), name="weight_kg")
        feats.append(inputs["weight_kg"])
    x = keras.layers.Concatenate()(feats)
    probs = keras.layers.Dense(19, activation="softmax", name="probs")(x)
    age = keras.layers.Dense(1, name="age", bias_initializer=keras.initializers.Constant(100.0))(x)
    return export_litert(keras.Model(inputs, {"age": age, "probs": probs}), path)


def test_ssh_loopback_end_to_end(loopback_sshd, tmp_path, capsys):
    from edge_boneage.cli import main
    from edge_boneage.device_runner import model_inputs  # noqa: F401  (the runner imports without edge_boneage deps)
    from edge_boneage.bench.rows import pack_eval_set

    model = _tiny_age_tflite(tmp_path / "tiny_age_f32.tflite")
    broken = tmp_path / "corrupt.tflite"
    broken.write_bytes(b"TFL3 but not a flatbuffer" * 4)
    odd = _tiny_age_tflite(tmp_path / "odd_inputs.tflite", extra_input=True)
    out = tmp_path / "ssh_out"
    argv = ["benchmark", "--model", str(model), "--model", str(broken), "--model", str(odd),
            "--device", f"ssh:{loopback_sshd['target']}",
            "--remote-python", sys.executable, "--threads", "1,2", "--n", "5", "--runs", "4", "--warmup", "1",
            "--out", str(out)] + [f"--ssh-opt={o}" for o in loopback_sshd["opts"]]
    assert main(argv) == 0, capsys.readouterr()
    rep = json.loads((out / "benchmark.json").read_text())
    ok = [r for r in rep["rows"] if r["model"] == "tiny_age_f32"]
    assert [(r["threads"], r["status"], r["device"]) for r in ok] == \
        [(1, "ok", f"ssh:{loopback_sshd['target']}"), (2, "ok", f"ssh:{loopback_sshd['target']}")]
    remote = ok[0]["result"]
    assert remote["remote_dir"].startswith("/tmp/edge_boneage_bench_") and not Path(remote["remote_dir"]).exists()
    assert remote["timing_us"]["runs"] == 4 and remote["accuracy"]["n"] == 5 and ok[0]["gmacs"] > 0
    # the box ran the same file on the same images: the same predictions as a local run of the runner
    ev = pack_eval_set("age", 32, 1, {"source": "synth", "n": 5, "seed": 12345}, tmp_path / "ev.npz")
    local = D.LocalBackend().run_tflite(model, ev["path"], threads=1, runs=2, warmup=0)
    assert local["accuracy"]["mae_months"] == pytest.approx(remote["accuracy"]["mae_months"], abs=1e-4)
    bad = _row(rep, model="corrupt")  # cannot even be read here: a row, and the harness goes on
    assert bad["status"] == "validation failed" and "cannot load" in bad["error"]
    odd_rows = [r for r in rep["rows"] if r["model"] == "odd_inputs"]  # fails ON THE BOX: error JSON comes back
    assert len(odd_rows) == 2 and all(r["status"] == "validation failed" for r in odd_rows)
    assert "the evaluation set lacks ['weight_kg']" in odd_rows[0]["error"] and not odd_rows[0]["crashed"]


def test_eval_set_is_the_protocol_test_split_made_by_the_models_contract(rsna_dir, tmp_path):
    """data.split "test": the images that chose nothing; each model's evaluation set is made by its own contract."""
    from edge_boneage import datasets
    from edge_boneage.bench.rows import pack_eval_set
    from edge_boneage.io import read_image
    from edge_boneage.preprocess import PreprocessSpec
    from edge_boneage.dataconfig import protocol_split

    spec = {"input_size": 100, "frame": "squeeze", "crop": "hand"}
    info = pack_eval_set("age", 100, 1, {"source": "rsna", "rsna_dir": str(rsna_dir), "n": 6, "split": "test"},
                         tmp_path / "e.npz", spec)
    assert info["n"] == 6 and "protocol test split" in info["desc"]
    samples = list(datasets.load_rsna_csv(rsna_dir / "labels.csv", rsna_dir / "img100").samples)
    test = protocol_split(samples, rsna_dir)[2][:6]
    with np.load(tmp_path / "e.npz") as z:
        np.testing.assert_array_equal(z["label_age_months"], [s.boneage_months for s in test])
        want = PreprocessSpec.from_dict(spec).apply(read_image(test[0].path)[0])
        np.testing.assert_array_equal(z["image"][0, ..., 0], want)
    with pytest.raises(EdgeBoneageError, match="split"):
        pack_eval_set("age", 100, 1, {"source": "synth", "n": 4, "split": "test"}, tmp_path / "x.npz")
