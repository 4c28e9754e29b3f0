"""`edge-boneage demo` (the README's main job) runs end to end; here at a tiny setting to stay fast."""

import json

from edge_boneage.cli import main
from edge_boneage.demo import run_demo


def test_demo_end_to_end_tiny(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", size=64, synth_n=48, epochs=1, log=lambda *a: None)
    variants = {r["variant"]: r for r in summary["rows"]}
    assert set(variants) == {"float32", "int8"}
    for r in variants.values():
        assert "PASSED" in r["parity"]
        assert 0 <= r["val_mae_months"] < 240
    assert variants["int8"]["size_kib"] < variants["float32"]["size_kib"]
    pred = summary["prediction"]
    assert 6 <= pred["age_months"] <= 222 and len(pred["probs"]) == 19
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk["rows"] == summary["rows"]
    for name in ("model_float32.tflite", "model_int8.tflite", "run/best.keras", "eval_float32/report.json"):
        assert (tmp_path / "demo" / name).is_file(), name


def test_demo_verb_is_registered(capsys):
    try:
        main(["demo", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "synthetic" in capsys.readouterr().out.lower()
