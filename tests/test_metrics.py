"""edge_boneage.metrics against values computed by hand (no TF/Keras involved)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError
from edge_boneage import metrics

# Four images; errors (pred - true) = +6, -18, +12, 0 months.
TRUE = [24.0, 60.0, 120.0, 200.0]
PRED = [30.0, 42.0, 132.0, 200.0]
MALE = [1, 0, 1, 0]


def test_summarize_hand_values():
    s = metrics.summarize(TRUE, PRED)
    assert s["n"] == 4
    # |err| = 6, 18, 12, 0 -> mean 9
    assert s["mae_months"] == pytest.approx(9.0)
    assert s["mae_years"] == pytest.approx(0.75)
    # err^2 = 36 + 324 + 144 + 0 = 504; /4 = 126
    assert s["rmse_months"] == pytest.approx(math.sqrt(126.0))
    # |err| <= 12: 6 yes, 18 no, 12 yes (boundary counts), 0 yes -> 3/4
    assert s["acc_1y"] == pytest.approx(0.75)
    # mean signed err = (6 - 18 + 12 + 0) / 4 = 0
    assert s["bias_months"] == pytest.approx(0.0)
    # sample SD: sum sq dev = 504, /(n-1)=168
    assert s["sd_err_months"] == pytest.approx(math.sqrt(168.0))
    assert s["loa_high_months"] == pytest.approx(1.96 * math.sqrt(168.0))
    assert s["loa_low_months"] == pytest.approx(-1.96 * math.sqrt(168.0))


def test_per_sex_and_band_hand_values():
    r = metrics.compute_report(TRUE, PRED, MALE)
    male, female = r["by_sex"]["male"], r["by_sex"]["female"]
    # male: images 0, 2 -> errs +6, +12
    assert male["n"] == 2 and male["mae_months"] == pytest.approx(9.0) and male["bias_months"] == pytest.approx(9.0)
    assert male["acc_1y"] == pytest.approx(1.0)
    # female: images 1, 3 -> errs -18, 0
    assert female["n"] == 2 and female["mae_months"] == pytest.approx(9.0)
    assert female["bias_months"] == pytest.approx(-9.0) and female["acc_1y"] == pytest.approx(0.5)
    bands = r["by_age_band"]
    # true years: 2.0 -> [2,5); 5.0 -> [5,10); 10.0 -> [10,15); 16.67 -> [15,19]
    assert bands["0-2y"]["n"] == 0 and bands["0-2y"]["mae_months"] is None
    assert bands["2-5y"]["n"] == 1 and bands["2-5y"]["mae_months"] == pytest.approx(6.0)
    assert bands["5-10y"]["n"] == 1 and bands["5-10y"]["bias_months"] == pytest.approx(-18.0)
    assert bands["10-15y"]["n"] == 1 and bands["10-15y"]["acc_1y"] == pytest.approx(1.0)
    assert bands["15-19y"]["n"] == 1 and bands["15-19y"]["mae_months"] == pytest.approx(0.0)
    assert bands["15-19y"]["sd_err_months"] is None  # n = 1: no SD


def test_last_band_is_closed_and_outside_ages_only_overall():
    r = metrics.compute_report([228.0, 240.0], [228.0, 228.0])
    assert r["by_age_band"]["15-19y"]["n"] == 1  # exactly 19 y belongs to the last band
    assert sum(b["n"] for b in r["by_age_band"].values()) == 1  # 20 y is in no band
    assert r["overall"]["n"] == 2


def test_report_is_strict_json():
    r = metrics.compute_report(TRUE, PRED, MALE, meta={"model": "x.keras"})
    text = json.dumps(r, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text)["meta"]["model"] == "x.keras"


def test_empty_input_gives_nulls_not_nan():
    s = metrics.summarize([], [])
    assert s["n"] == 0 and all(v is None for k, v in s.items() if k != "n")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(EdgeBoneageError, match="predicted ages has 3 values"):
        metrics.summarize([1, 2], [1, 2, 3])
    with pytest.raises(EdgeBoneageError, match="not a finite number"):
        metrics.summarize([1, 2], [1, float("nan")])
    with pytest.raises(EdgeBoneageError, match="sex values"):
        metrics.compute_report([1, 2], [1, 2], male=[1, 2])


def test_write_report_files(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 228, 50)
    p = t + rng.normal(0, 10, 50)
    m = rng.integers(0, 2, 50)
    r = metrics.write_report(tmp_path, t, p, m, meta={"k": 1}, ids=[f"id{i}" for i in range(50)])
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["overall"]["mae_months"] == pytest.approx(float(np.abs(p - t).mean()))
    assert on_disk["overall"]["n"] == 50 and r["overall"] == on_disk["overall"]
    for name in metrics.PLOT_FILES.values():
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0] == "id,true_months,pred_months,male" and len(rows) == 51 and rows[1].startswith("id0,")
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_format_table_lists_every_group():
    text = metrics.format_table(metrics.compute_report(TRUE, PRED, MALE))
    assert "overall" in text and "sex=male" in text and "age 15-19y" in text
    assert "9.00" in text and "75.0%" in text
