"""Per-child TW3 RUS stages drawn consistently with the TW3-C curve.

For a labelled bone age ``a`` (years) and sex:

1. target total score ``T = age_to_score(a)`` on the TW3-C curve (ages at or above the curve end, 16 y male /
   15 y female, get every bone at its final stage, T = 1000; they are flagged ``beyond_curve``);
2. a common maturity ``q = T / 1000`` plus per-bone jitter ``e_b ~ N(0, jitter)`` gives each bone a desired
   fraction of its final score, ``D_b = clip(q + e_b, 0, 1) * max_score_b``;
3. each bone starts at the stage whose score is nearest ``D_b`` (stage A scores 0);
4. a local search moves single bones one stage up/down while that lowers
   ``|sum score - T| + lam * sum_b |score_b - D_b|``, so the total lands on T (a few points at most) while
   every bone stays near its own jittered maturity.

The summed score then maps back through the TW3-C curve to the labelled age (see ``consistency``).
"""

from __future__ import annotations

import numpy as np

from edge_boneage import tw3

#: ulna grades (B..H) drawn with the visual stage of the 8-grade bones: G = fusion begun (H), H = fused (I).
ULNA_VISUAL = np.array([0, 1, 2, 3, 4, 5, 7, 8])

_N = len(tw3.BONES)
_MAXG = np.array([tw3.N_GRADES[b] for b in tw3.BONES])


def _score_table(sex: str) -> np.ndarray:
    """(13, 9) scores by grade 0..8 (stage A = 0); grades a bone lacks are +inf."""
    t = np.full((_N, tw3.MAX_GRADES + 1), np.inf)
    for i, b in enumerate(tw3.BONES):
        t[i, : tw3.N_GRADES[b] + 1] = tw3.stage_scores(b, sex, include_a=True)
    return t


_TABLES = {s: _score_table(s) for s in tw3.SEXES}


def curve_end(sex) -> float:
    """Last age (years) of the TW3-C curve: 16 (male) / 15 (female)."""
    return tw3.curve_range(sex, "tw3c")[1]


def sample_grades(age_years: float, sex, rng: np.random.Generator, jitter: float = 0.05, lam: float = 0.15):
    """Return (grades int (13,), total score, q, beyond_curve) for one child; grade 0 = stage A."""
    sex = tw3.normalise_sex(sex)
    table = _TABLES[sex]
    maxs = table[np.arange(_N), _MAXG]
    noise = rng.normal(0.0, jitter, _N)  # drawn always, so the stream does not depend on the branch
    if age_years >= curve_end(sex):
        g = _MAXG.copy()
        return g, float(maxs.sum()), 1.0, True
    target = float(tw3.age_to_score(max(age_years, 0.0), sex))
    q = target / maxs.sum()
    desired = np.clip(q + noise, 0.0, 1.0) * maxs
    g = np.argmin(np.abs(np.where(np.isfinite(table), table, 1e9) - desired[:, None]), axis=1)
    rows = np.arange(_N)
    cur = table[rows, g]
    for _ in range(60):
        total = cur.sum()
        dev = np.abs(cur - desired)
        base = abs(total - target) + lam * dev.sum()
        best, best_i, best_g = base - 1e-9, -1, -1
        for step in (1, -1):
            ng = g + step
            ok = (ng >= 0) & (ng <= _MAXG)
            ns = table[rows, np.clip(ng, 0, tw3.MAX_GRADES)]
            cost = np.abs(total - cur + ns - target) + lam * (dev.sum() - dev + np.abs(ns - desired))
            cost = np.where(ok, cost, np.inf)
            i = int(np.argmin(cost))
            if cost[i] < best:
                best, best_i, best_g = cost[i], i, int(ng[i])
        if best_i < 0:
            break
        g[best_i] = best_g
        cur[best_i] = table[best_i, best_g]
    return g.astype(np.int64), float(cur.sum()), float(q), False


def total_score(grades, sex) -> float:
    table = _TABLES[tw3.normalise_sex(sex)]
    return float(table[np.arange(_N), np.asarray(grades)].sum())
