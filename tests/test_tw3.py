"""TW3 RUS library: tables, PCHIP curves (vs SciPy), classic / Top2 / TopN scoring (paper worked example)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError, tw3

REPO = Path(__file__).resolve().parents[1]
PAPER_PROBS = [0.0001, 0.0075, 0.0624, 0.4152, 0.4223, 0.0466, 0.0397, 0.0062]  # seed 000, Table 2


def test_tables_match_json_and_final_stages_sum_to_1000():
    raw = json.loads((REPO / "edge_boneage" / "data" / "tw3_rus.json").read_text())
    assert tw3.BONES == tuple(b["key"] for b in raw["bones"])
    assert len(tw3.BONES) == 13
    assert tw3.N_GRADES["ulna"] == 7 and all(tw3.N_GRADES[b] == 8 for b in tw3.BONES if b != "ulna")
    for sex in tw3.SEXES:
        assert sum(tw3.stage_score(b, tw3.N_GRADES[b], sex) for b in tw3.BONES) == 1000
    # Table 1 of the paper (male radius and ulna)
    assert [tw3.stage_score("radius", g, "male") for g in range(1, 9)] == [16, 21, 30, 39, 59, 87, 138, 213]
    assert [tw3.stage_score("ulna", g, "M") for g in range(1, 8)] == [27, 30, 32, 40, 58, 107, 181]
    assert tw3.stage_score("radius", 0, "female") == 0
    assert tw3.stage_letter(1) == "B" and tw3.stage_letter(8) == "I" and tw3.stage_letter(0) == "A"
    assert tw3.stage_letter(7, "ulna") == "H"
    with pytest.raises(EdgeBoneageError):
        tw3.stage_letter(8, "ulna")
    with pytest.raises(EdgeBoneageError):
        tw3.stage_score("ulna", 8, "male")
    with pytest.raises(EdgeBoneageError):
        tw3.stage_score("femur", 1, "male")
    with pytest.raises(EdgeBoneageError):
        tw3.normalise_sex("x")
    assert tw3.normalise_sex(True) == "male" and tw3.normalise_sex(0.0) == "female"


@pytest.mark.parametrize("curve", tw3.CURVES)
@pytest.mark.parametrize("sex", tw3.SEXES)
def test_pchip_matches_scipy(curve, sex):
    interpolate = pytest.importorskip("scipy.interpolate")
    ages, scores = tw3.curve_knots(sex, curve)
    ref = interpolate.PchipInterpolator(ages, scores)
    x = np.linspace(ages[0], ages[-1], 2001)
    np.testing.assert_allclose(tw3.age_to_score(x, sex, curve), ref(x), rtol=0, atol=1e-9)
    np.testing.assert_allclose(tw3.pchip_slopes(ages, scores), ref.derivative()(ages), rtol=1e-12, atol=1e-12)


def test_pchip_on_non_monotone_data_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(0.1, 2.0, 12))
    y = rng.normal(size=12)
    y[4] = y[5]  # a flat piece
    xq = np.linspace(x[0], x[-1], 777)
    np.testing.assert_allclose(tw3.Pchip(x, y)(xq), interpolate.PchipInterpolator(x, y)(xq), atol=1e-12)


@pytest.mark.parametrize("curve", tw3.CURVES)
@pytest.mark.parametrize("sex", tw3.SEXES)
def test_curves_monotone_and_inverse(curve, sex):
    a0, a1, s0, s1 = tw3.curve_range(sex, curve)
    ages = np.linspace(a0, a1, 500)
    sc = tw3.age_to_score(ages, sex, curve)
    assert np.all(np.diff(sc) > 0)
    np.testing.assert_allclose(tw3.score_to_age(sc, sex, curve), ages, atol=1e-9)
    knots_a, knots_s = tw3.curve_knots(sex, curve)
    np.testing.assert_allclose(tw3.score_to_age(knots_s, sex, curve), knots_a, atol=1e-12)
    assert s1 == 1000


def test_curve_clamps_and_flags():
    age, flag = tw3.score_to_age(1200, "male", return_flags=True)
    assert age == 16.0 and flag
    age, flag = tw3.score_to_age(500, "male", return_flags=True)
    assert 12.0 < age < 13.0 and not flag
    ages, flags = tw3.age_to_score(np.array([-1.0, 7.0, 17.5]), "female", return_flags=True)
    assert list(flags) == [True, False, True]
    assert ages[0] == 0 and ages[2] == 1000
    assert tw3.age_to_score(7.0, "female") == 317  # a knot
    # UK male table starts at 1.6 y: a score below its first entry clamps to 1.6 and is flagged
    age, flag = tw3.score_to_age(10, "male", curve="uk", return_flags=True)
    assert age == pytest.approx(1.6) and flag
    # per-sample sex
    out = tw3.score_to_age(np.array([500.0, 500.0]), np.array([True, False]))
    assert out[0] == pytest.approx(tw3.score_to_age(500, "male"))
    assert out[1] == pytest.approx(tw3.score_to_age(500, "female"))
    assert out[0] > out[1]  # girls mature earlier: same score = younger bone age
    with pytest.raises(EdgeBoneageError):
        tw3.score_to_age(100, "male", curve="us")


def test_paper_worked_example_topn():
    s = tw3.bone_score_topn(PAPER_PROBS, "radius", "male", threshold=0.61)
    assert round(s, 2) == 49.08
    assert s == pytest.approx((39 * 0.4152 + 59 * 0.4223) / (0.4152 + 0.4223))
    assert tw3.bone_score_classic(PAPER_PROBS, "radius", "male") == 59  # paper: argmax grade 5 -> 59
    assert tw3.bone_score_top2(PAPER_PROBS, "radius", "male") == pytest.approx(s)  # same two stages here
    # the same probabilities with a leading stage-A entry give the same result
    assert tw3.bone_score_topn([0.0] + PAPER_PROBS, "radius", "male") == pytest.approx(s)


def test_topn_edge_cases():
    scores = tw3.stage_scores("radius", "male")
    p = np.array([0.0, 0.0, 0.05, 0.9, 0.05, 0, 0, 0])
    assert tw3.bone_score_topn(p, "radius", "male") == 39  # top-1 above threshold: just its score
    # threshold 1.0: the cumulative sum never exceeds 1, so every stage is used -> expectation
    q = np.array([0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.05, 0.05])
    assert tw3.bone_score_topn(q, "radius", "male", threshold=1.0) == pytest.approx(float(q @ scores))
    # threshold 0: only the top stage
    assert tw3.bone_score_topn(q, "radius", "male", threshold=0.0) == scores[2]
    # exactly reaching the threshold is not exceeding it: 0.3 + 0.2 = 0.5 is not > 0.5, a third stage joins
    r = np.array([0.0, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.5])
    assert tw3.bone_score_topn(r, "radius", "male", threshold=0.6) == pytest.approx((0.5 * 213 + 0.3 * 30) / 0.8)
    # ties: two stages at 0.4; top-1 alone exceeds 0.35, but its equal-probability twin joins too
    t = np.array([0.0, 0.0, 0.4, 0.4, 0.2, 0.0, 0.0, 0.0])
    tied = tw3.bone_score_topn(t, "radius", "male", threshold=0.35)
    assert tied == pytest.approx((30 + 39) / 2)
    assert tw3.bone_score_topn(t[::-1].copy(), "radius", "male", threshold=0.35) == pytest.approx((59 + 87) / 2)
    # a uniform vector with threshold 0.5 takes every (tied) stage
    u = np.full(7, 1 / 7)
    assert tw3.bone_score_topn(u, "ulna", "female") == pytest.approx(np.mean(tw3.stage_scores("ulna", "f")))
    with pytest.raises(EdgeBoneageError):
        tw3.bone_score_topn(np.ones(5) / 5, "radius", "male")


def test_topn_batched_matches_loop():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(8, 0.5), size=64)
    batched = tw3.bone_score_topn(p, "mc3", "female", threshold=0.7)
    looped = [tw3.bone_score_topn(row, "mc3", "female", threshold=0.7) for row in p]
    np.testing.assert_allclose(batched, looped)
    # reference by brute force: smallest descending prefix with sum > P
    sc = tw3.stage_scores("mc3", "female")
    for row, got in zip(p, batched):
        o = np.argsort(-row)
        k = int(np.argmax(np.cumsum(row[o]) > 0.7)) + 1
        assert got == pytest.approx(float(row[o[:k]] @ sc[o[:k]] / row[o[:k]].sum()))


def _one_hot_probs(grades, batch=None):
    out = {}
    for b, g in zip(tw3.BONES, grades):
        v = np.zeros(tw3.N_GRADES[b] + 1)
        v[g] = 1.0
        out[b] = v if batch is None else np.tile(v, (batch, 1))
    return out


def test_rus_score_and_bone_age():
    grades = [5, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    probs = _one_hot_probs(grades)
    for method in tw3.METHODS:
        assert tw3.rus_score(probs, "male", method) == pytest.approx(tw3.total_score(grades, "male"))
    total = tw3.total_score(grades, "female")
    assert tw3.bone_age_from_probs(probs, "female") == pytest.approx(tw3.score_to_age(total, "female"))
    # batch with per-sample sex and a list instead of a dict
    pb = _one_hot_probs(grades, batch=3)
    lst = [pb[b] for b in tw3.BONES]
    sexes = np.array([1.0, 0.0, 1.0])
    got = tw3.rus_score(lst, sexes, "topn")
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [tw3.total_score(grades, s) for s in ("m", "f", "m")])
    ages, flags = tw3.bone_age_from_probs(pb, sexes, return_flags=True)
    assert ages.shape == (3,) and not flags.any()
    all_final = _one_hot_probs([tw3.N_GRADES[b] for b in tw3.BONES])
    assert tw3.rus_score(all_final, "female") == 1000
    assert tw3.bone_age_from_probs(all_final, "female") == 15.0
    with pytest.raises(EdgeBoneageError):
        tw3.rus_score({"radius": np.ones(8) / 8}, "male")
    with pytest.raises(EdgeBoneageError):
        tw3.rus_score(probs, "male", method="top3")
