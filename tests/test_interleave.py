"""edge_boneage.bench.interleave: the bookkeeping of interleaved timing (no timing is asserted: speed figures are
benchmarks, not tests) and a real LiteRT + end-to-end job in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_boneage.bench import interleave as IL

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ROOT / "edge_boneage" / "pretrained" / "boneage_age.tflite"


def test_every_row_runs_warmup_plus_repeats_times_block_in_shuffled_order():
    calls, order = {"a": 0, "b": 0, "c": 0}, []

    def make(k):
        def f():
            calls[k] += 1
            order.append(k)
        return f

    raw = IL.interleave({k: make(k) for k in calls}, repeats=6, block=4, warmup=2, seed=1)
    assert calls == {"a": 26, "b": 26, "c": 26}
    assert all(len(r["us"]) == 24 and len(r["block_median_us"]) == 6 for r in raw.values())
    timed = order[6:]  # after the warm-up calls
    visits = [timed[i] for i in range(0, len(timed), 4)]  # one block = 4 consecutive calls of one row
    assert all(timed[i:i + 4] == [timed[i]] * 4 for i in range(0, len(timed), 4))
    per_repeat = [tuple(visits[i:i + 3]) for i in range(0, len(visits), 3)]
    assert all(sorted(p) == ["a", "b", "c"] for p in per_repeat)  # each repeat visits every row once
    assert len(set(per_repeat)) > 1  # ... in a shuffled order


def test_ratio_is_the_median_of_per_repeat_block_ratios():
    summary = {"a": {"block_median_ms": [2.0, 4.0, 6.0, 2.0]}, "b": {"block_median_ms": [1.0, 1.0, 2.0, 2.0]}}
    r = IL.ratio(summary, "a", "b")
    per = np.array([2.0, 4.0, 3.0, 1.0])
    assert r["ratio_p50"] == pytest.approx(np.median(per)) and r["repeats"] == 4
    assert r["ratio_p10"] == pytest.approx(np.percentile(per, 10))
    assert r["ratio_p90"] == pytest.approx(np.percentile(per, 90))
    s = IL.summarise({"x": {"us": [1000.0, 2000.0, 3000.0], "block_median_us": [2000.0]}})["x"]
    assert s["p50_ms"] == pytest.approx(2.0) and s["calls"] == 3 and s["block_median_ms"] == [2.0]


@pytest.mark.skipif(not PACKAGED.is_file(), reason="no packaged .tflite")
def test_child_job_times_litert_and_end_to_end_rows_and_reports_a_broken_row(tmp_path):
    import cv2

    from edge_boneage.synth import generate

    png = tmp_path / "hand.png"
    cv2.imwrite(str(png), generate(1, size=256, seed=4).images[0])
    job = {"rows": [{"label": "inf", "kind": "litert", "path": str(PACKAGED)},
                    {"label": "e2e", "kind": "e2e", "path": str(PACKAGED), "images": [str(png)]},
                    {"label": "broken", "kind": "litert", "path": str(tmp_path / "missing.tflite")}],
           "pairs": [["e2e", "inf"]], "repeats": 3, "block": 2, "warmup": 1}
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.interleave", str(tmp_path / "job.json"),
                           str(tmp_path / "out.json")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "out.json").read_text())
    assert set(res["rows"]) == {"inf", "e2e"} and "broken" in res["errors"]
    assert all(r["calls"] == 6 and r["p10_ms"] <= r["p50_ms"] <= r["p90_ms"] for r in res["rows"].values())
    assert res["ratios"][0]["a"] == "e2e" and res["ratios"][0]["repeats"] == 3
    # a one-row job in a fresh process reports its peak memory
    job = {"rows": [job["rows"][0]], "repeats": 1, "block": 1, "rss": True}
    (tmp_path / "job.json").write_text(json.dumps(job))
    subprocess.run([sys.executable, "-m", "edge_boneage.bench.interleave", str(tmp_path / "job.json"),
                    str(tmp_path / "out.json")], check=True, capture_output=True, cwd=ROOT)
    assert 10 < json.loads((tmp_path / "out.json").read_text())["peak_rss_mb"] < 2000


def test_litert_only_job_imports_no_tensorflow_or_keras(tmp_path):
    code = ("import sys; from edge_boneage.bench import interleave as IL; "
            f"IL.run_job({{'rows': [{{'label': 'x', 'kind': 'litert', 'path': {str(PACKAGED)!r}}}], 'repeats': 1, "
            "'block': 1, 'warmup': 0}); "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
