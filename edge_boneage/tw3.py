"""TW3 RUS scoring: stage scores, TW3-C / UK score<->bone-age curves, and scoring from stage probabilities.

NumPy only (runs on inference boxes without SciPy). Data: ``edge_boneage/data/tw3_rus.json``.

Conventions
-----------
* 13 RUS bones, in the order of ``BONES`` (the json's order): radius, ulna, mc1, mc3, mc5, pp1, pp3, pp5,
  mp3, mp5, dp1, dp3, dp5.
* Grade ``g`` is 1-based: stage letter ``'BCDEFGHI'[g-1]``; the ulna has 7 grades (B..H), the others 8.
  Grade 0 means stage A (no ossification centre), which scores 0.
* A probability vector for one bone has either ``n_grades`` entries (grades 1..n, the paper's layout) or
  ``n_grades + 1`` entries (index 0 = stage A, score 0; then grades 1..n).
* ``sex``: "male"/"female" (also "m"/"f"), or a bool / number (truthy = male, as RSNA's ``male`` column).
* Curves: ``"tw3c"`` (Chinese TW3-C RUS, male 0-16 y, female 0-15 y, the default) or ``"uk"`` (British TW3
  RUS 50th centile, male 1.6-18.3 y, female 1.0-16.0 y). Interpolation is monotone piecewise-cubic Hermite
  (PCHIP, Fritsch-Carlson, identical to ``scipy.interpolate.PchipInterpolator``); ``score_to_age`` is its
  exact inverse (bisection on the monotone cubic piece), so ``age_to_score(score_to_age(s)) == s`` in range.
  Values outside a curve's range are clamped to its ends; pass ``return_flags=True`` to learn which were.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np

from edge_boneage import EdgeBoneageError, vocab

STAGE_LETTERS = vocab.STAGE_LETTERS
SEXES = vocab.SEXES
CURVES = ("tw3c", "uk")
METHODS = ("classic", "top2", "topn")
DEFAULT_THRESHOLD = 0.61


@functools.lru_cache(maxsize=1)
def load_tables() -> dict:
    """The parsed tw3_rus.json (cached; do not mutate)."""
    text = resources.files("edge_boneage").joinpath("data/tw3_rus.json").read_text(encoding="utf-8")
    return json.loads(text)


_T = load_tables()
BONES: tuple[str, ...] = tuple(b["key"] for b in _T["bones"])
BONE_NAMES: dict[str, str] = {b["key"]: b["name"] for b in _T["bones"]}
N_GRADES: dict[str, int] = {b: len(_T["stage_scores"]["male"][b]) for b in BONES}
MAX_GRADES = max(N_GRADES.values())


if BONES != vocab.TW3_BONES:
    raise EdgeBoneageError(f"edge_boneage/data/tw3_rus.json: bones {BONES} are not edge_boneage.vocab.TW3_BONES")


def normalise_sex(sex) -> str:
    """'male' or 'female' from a string ('male', 'M', 'female', 'f') or a bool / 0-1 number (True = male):
    edge_boneage.vocab.sex_name."""
    return vocab.sex_name(sex)


def _check_bone(bone: str) -> str:
    if bone not in N_GRADES:
        raise EdgeBoneageError(f"unknown RUS bone {bone!r}: expected one of {', '.join(BONES)}")
    return bone


def stage_letter(grade: int, bone: str | None = None) -> str:
    """'A' for grade 0, else 'BCDEFGHI'[grade-1] (checked against the bone's grade count when given)."""
    n = N_GRADES[_check_bone(bone)] if bone is not None else MAX_GRADES
    if not 0 <= int(grade) <= n:
        raise EdgeBoneageError(f"grade {grade} out of range 0..{n}" + (f" for {bone}" if bone else ""))
    return "A" if int(grade) == 0 else STAGE_LETTERS[int(grade) - 1]


def stage_scores(bone: str, sex, include_a: bool = False) -> np.ndarray:
    """Scores of grades 1..n (float64); with include_a, a leading 0 for stage A (index = grade)."""
    s = np.asarray(_T["stage_scores"][normalise_sex(sex)][_check_bone(bone)], dtype=np.float64)
    return np.concatenate([[0.0], s]) if include_a else s


def stage_score(bone: str, grade: int, sex) -> float:
    """TW3 score of one bone at grade g (1-based; 0 = stage A scores 0)."""
    n = N_GRADES[_check_bone(bone)]
    g = int(grade)
    if not 0 <= g <= n:
        raise EdgeBoneageError(f"grade {grade} out of range 0..{n} for {bone}")
    return float(stage_scores(bone, sex, include_a=True)[g])


def total_score(grades, sex) -> float:
    """Sum of stage scores; ``grades`` is a dict bone->grade or a sequence of 13 grades in BONES order."""
    if isinstance(grades, dict):
        return float(sum(stage_score(b, grades[b], sex) for b in BONES))
    grades = list(grades)
    if len(grades) != len(BONES):
        raise EdgeBoneageError(f"expected {len(BONES)} grades (one per RUS bone), got {len(grades)}")
    return float(sum(stage_score(b, g, sex) for b, g in zip(BONES, grades)))


# ----------------------------------------------------------------------------------------------------------
# PCHIP (Fritsch-Carlson), numpy only; matches scipy.interpolate.PchipInterpolator (tested against it).
# ----------------------------------------------------------------------------------------------------------


def _edge_slope(h0, h1, m0, m1):
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def pchip_slopes(x, y) -> np.ndarray:
    """Derivatives at the knots of the monotone PCHIP through (x, y); x strictly increasing."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError("pchip needs 1-D x and y of equal length >= 2")
    h = np.diff(x)
    if np.any(h <= 0):
        raise ValueError("pchip needs strictly increasing x")
    m = np.diff(y) / h
    if x.size == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(x)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        whmean = (w1 / m[:-1] + w2 / m[1:]) / (w1 + w2)
        inner = 1.0 / whmean
    same = (np.sign(m[:-1]) * np.sign(m[1:]) > 0) & (m[:-1] != 0) & (m[1:] != 0)
    d[1:-1] = np.where(same, inner, 0.0)
    d[0] = _edge_slope(h[0], h[1], m[0], m[1])
    d[-1] = _edge_slope(h[-1], h[-2], m[-1], m[-2])
    return d


class Pchip:
    """Monotone cubic Hermite interpolant through (x, y); evaluation clamps x to [x0, xn]."""

    def __init__(self, x, y):
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.d = pchip_slopes(self.x, self.y)

    def _piece(self, i, t, h):
        y0, y1 = self.y[i], self.y[i + 1]
        d0, d1 = self.d[i] * h, self.d[i + 1] * h
        t2 = t * t
        t3 = t2 * t
        return (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * d0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * d1

    def __call__(self, xq):
        xq = np.clip(np.asarray(xq, dtype=np.float64), self.x[0], self.x[-1])
        i = np.clip(np.searchsorted(self.x, xq, side="right") - 1, 0, self.x.size - 2)
        h = self.x[i + 1] - self.x[i]
        return self._piece(i, (xq - self.x[i]) / h, h)

    def inverse(self, yq, iters: int = 60):
        """x with f(x) = yq for a non-decreasing interpolant (yq clamped to [y0, yn]); vectorised bisection."""
        yq = np.clip(np.asarray(yq, dtype=np.float64), self.y[0], self.y[-1])
        i = np.clip(np.searchsorted(self.y, yq, side="right") - 1, 0, self.x.size - 2)
        h = self.x[i + 1] - self.x[i]
        lo = np.zeros_like(yq)
        hi = np.ones_like(yq)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = self._piece(i, mid, h) < yq
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        x = self.x[i] + 0.5 * (lo + hi) * h
        x = np.where(yq == self.y[i + 1], self.x[i + 1], x)
        return np.where(yq == self.y[i], self.x[i], x)  # exact knots map exactly


@functools.lru_cache(maxsize=None)
def curve_knots(sex, curve: str = "tw3c") -> tuple[np.ndarray, np.ndarray]:
    """(age_years, score) knots of a curve; the UK table's leading zeros (undefined ages) are dropped."""
    sex = normalise_sex(sex)
    if curve == "tw3c":
        c = _T["tw3_c_rus_score_to_age"][sex]
        ages = np.asarray(c["age_years"], dtype=np.float64)
        scores = np.asarray(c["score"], dtype=np.float64)
    elif curve == "uk":
        c = _T["tw3_uk_rus_score_to_age"][sex]
        scores = np.asarray(c["score"], dtype=np.float64)
        ages = c["age_start_years"] + c["step_years"] * np.arange(scores.size)
        keep = scores > 0
        ages, scores = np.round(ages[keep], 6), scores[keep]
    else:
        raise EdgeBoneageError(f"unknown TW3 curve {curve!r}: use one of {', '.join(CURVES)}")
    if np.any(np.diff(scores) <= 0):  # the inversion needs a strictly increasing curve
        raise EdgeBoneageError(f"tw3_rus.json: {curve} {sex} curve is not strictly increasing")
    return ages, scores


@functools.lru_cache(maxsize=None)
def _curve(sex: str, curve: str) -> Pchip:
    return Pchip(*curve_knots(sex, curve))


def curve_range(sex, curve: str = "tw3c") -> tuple[float, float, float, float]:
    """(min_age, max_age, min_score, max_score) of a curve."""
    a, s = curve_knots(normalise_sex(sex), curve)
    return float(a[0]), float(a[-1]), float(s[0]), float(s[-1])


def _per_sample_sex(sex, shape):
    """Broadcast a scalar or array sex to a boolean is-male array of `shape`."""
    if isinstance(sex, str):
        return np.full(shape, normalise_sex(sex) == "male")
    arr = np.asarray(sex)
    if arr.dtype.kind in "US":
        arr = np.vectorize(lambda s: normalise_sex(str(s)) == "male")(arr)
    return np.broadcast_to(arr.astype(bool).reshape(arr.shape), shape) if arr.ndim else np.full(shape, bool(arr))


def _apply(fn_name, values, sex, curve, return_flags):
    v = np.asarray(values, dtype=np.float64)
    male = _per_sample_sex(sex, v.shape)
    out = np.empty_like(v)
    flags = np.zeros(v.shape, dtype=bool)
    for is_male in (True, False):
        sel = male == is_male
        if not np.any(sel):
            continue
        sx = "male" if is_male else "female"
        c = _curve(sx, curve)
        lo, hi = (c.x[0], c.x[-1]) if fn_name == "age_to_score" else (c.y[0], c.y[-1])
        out[sel] = c(v[sel]) if fn_name == "age_to_score" else c.inverse(v[sel])
        flags[sel] = (v[sel] < lo) | (v[sel] > hi) | ~np.isfinite(v[sel])
    if not v.ndim:
        out, flags = float(out), bool(flags)
    return (out, flags) if return_flags else out


def age_to_score(age_years, sex, curve: str = "tw3c", return_flags: bool = False):
    """Total RUS score at a bone age (years) on a curve; ages outside the curve are clamped (flagged)."""
    return _apply("age_to_score", age_years, sex, curve, return_flags)


def score_to_age(score, sex, curve: str = "tw3c", return_flags: bool = False):
    """Bone age (years) of a total RUS score: exact inverse of age_to_score; clamped (flagged) out of range."""
    return _apply("score_to_age", score, sex, curve, return_flags)


# ----------------------------------------------------------------------------------------------------------
# Scoring from stage probabilities (Gu, Sun, Zhang 2023: classic, Top2 and TopN TW3-C RUS, formula (1)).
# ----------------------------------------------------------------------------------------------------------


def _scores_for(probs: np.ndarray, bone: str, sex) -> np.ndarray:
    """Score table aligned with the probability vector layout (n grades, or n+1 with stage A first)."""
    n = N_GRADES[_check_bone(bone)]
    k = probs.shape[-1]
    if k not in (n, n + 1):
        raise EdgeBoneageError(
            f"{bone}: probability vector has {k} entries, expected {n} (grades 1..{n}) or {n + 1} (stage A first)"
        )
    return stage_scores(bone, sex, include_a=(k == n + 1))


def _topn_weighted(probs: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Formula (1), vectorised over leading axes; probs (..., K), scores (..., K) or (K,)."""
    p = np.asarray(probs, dtype=np.float64)
    scores = np.broadcast_to(scores, p.shape)
    order = np.argsort(-p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    ss = np.take_along_axis(scores, order, axis=-1)
    cum = np.cumsum(ps, axis=-1)
    # number of stages needed: the first prefix whose cumulative probability exceeds P (all if none does)
    exceeds = cum > threshold
    n_take = np.where(exceeds.any(axis=-1), np.argmax(exceeds, axis=-1) + 1, p.shape[-1])
    rank = np.arange(p.shape[-1])
    take = rank < n_take[..., None]
    # ties: a stage with the same probability as the last one taken is taken too (order-independent result)
    last_p = np.take_along_axis(ps, (n_take - 1)[..., None], axis=-1)
    take |= ps == last_p
    w = np.where(take, ps, 0.0)
    den = w.sum(axis=-1)
    num = (w * ss).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    # all-zero probabilities: plain mean of the tied (all) stages' scores
    flat = den <= 0
    if np.any(flat):
        out = np.where(flat, np.where(take, ss, 0.0).sum(-1) / np.maximum(take.sum(-1), 1), out)
    return out


def bone_score_topn(probs, bone: str, sex, threshold: float = DEFAULT_THRESHOLD):
    """TopN score (formula 1): sort stage probabilities descending, take stages until their cumulative
    probability exceeds ``threshold`` (all stages if it never does, e.g. threshold 1.0), return the
    probability-weighted mean of their scores. Stages tied with the last one taken are included."""
    p = np.asarray(probs, dtype=np.float64)
    out = _topn_weighted(p, _scores_for(p, bone, sex), float(threshold))
    return float(out) if out.ndim == 0 else out


def bone_score_classic(probs, bone: str, sex):
    """Classic TW3: score of the most probable stage (ties -> the lower grade)."""
    p = np.asarray(probs, dtype=np.float64)
    s = _scores_for(p, bone, sex)
    out = s[np.argmax(p, axis=-1)]
    return float(out) if np.ndim(out) == 0 else out


def bone_score_top2(probs, bone: str, sex):
    """Top2: probability-weighted mean of the scores of the two most probable stages."""
    p = np.asarray(probs, dtype=np.float64)
    s = np.broadcast_to(_scores_for(p, bone, sex), p.shape)
    order = np.argsort(-p, axis=-1, kind="stable")[..., :2]
    pp = np.take_along_axis(p, order, axis=-1)
    ss = np.take_along_axis(s, order, axis=-1)
    den = pp.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, (pp * ss).sum(-1) / np.where(den > 0, den, 1), ss.mean(-1))
    return float(out) if np.ndim(out) == 0 else out


def bone_score(probs, bone: str, sex, method: str = "topn", threshold: float = DEFAULT_THRESHOLD):
    if method == "classic":
        return bone_score_classic(probs, bone, sex)
    if method == "top2":
        return bone_score_top2(probs, bone, sex)
    if method == "topn":
        return bone_score_topn(probs, bone, sex, threshold)
    raise EdgeBoneageError(f"unknown scoring method {method!r}: use one of {', '.join(METHODS)}")


def _bone_probs(probs_per_bone, bone, i):
    if isinstance(probs_per_bone, dict):
        if bone not in probs_per_bone:
            raise EdgeBoneageError(f"probabilities for RUS bone {bone!r} missing")
        return np.asarray(probs_per_bone[bone], dtype=np.float64)
    return np.asarray(probs_per_bone[i], dtype=np.float64)


def rus_score(probs_per_bone, sex, method: str = "topn", threshold: float = DEFAULT_THRESHOLD):
    """Total RUS score from per-bone stage probabilities.

    ``probs_per_bone``: dict bone -> array (..., K_b) or a sequence of 13 such arrays in BONES order
    (leading axes = batch). ``sex``: scalar or per-sample array broadcastable to the batch shape.
    Returns a float (no batch axes) or an array of the batch shape.
    """
    if not isinstance(probs_per_bone, dict) and len(probs_per_bone) != len(BONES):
        raise EdgeBoneageError(f"expected probabilities for {len(BONES)} RUS bones, got {len(probs_per_bone)}")
    total = None
    for i, bone in enumerate(BONES):
        p = _bone_probs(probs_per_bone, bone, i)
        batch = p.shape[:-1]
        male = _per_sample_sex(sex, batch)
        sm = bone_score(p, bone, "male", method, threshold)
        sf = bone_score(p, bone, "female", method, threshold)
        s = np.where(male, sm, sf)
        total = s if total is None else total + s
    return float(total) if np.ndim(total) == 0 else total


def bone_age_from_probs(
    probs_per_bone,
    sex,
    method: str = "topn",
    threshold: float = DEFAULT_THRESHOLD,
    curve: str = "tw3c",
    return_flags: bool = False,
):
    """Bone age in years from per-bone stage probabilities: rus_score, then score_to_age on the curve."""
    total = rus_score(probs_per_bone, sex, method, threshold)
    return score_to_age(total, sex, curve=curve, return_flags=return_flags)
