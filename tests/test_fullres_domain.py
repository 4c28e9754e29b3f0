"""benchmarks.fullres_domain's bilinear rule (the one that reproduces the img100 files from raw films) against OpenCV's
bilinear, an independent implementation of the same half-pixel-centre formula."""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks.fullres_domain import bilinear


def test_bilinear_matches_opencv_linear_within_its_fixed_point_rounding():
    rng = np.random.default_rng(0)
    for h, w, s in ((2044, 1514, 100), (300, 200, 64), (64, 64, 100), (7, 5, 3)):
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ours = bilinear(img, s).astype(int)
        ref = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR_EXACT).astype(int)
        assert ours.shape == (s, s)
        assert np.abs(ours - ref).max() <= 1, (h, w, s)  # OpenCV rounds its 8-bit fixed-point weights
        assert (ours == ref).mean() > 0.7


def test_bilinear_keeps_a_constant_and_a_downscale_by_two_averages_pairs():
    assert (bilinear(np.full((40, 30), 77, np.uint8), 10) == 77).all()
    a = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10  # halving: each output is the mean of a 2x2 block
    want = np.floor(a.reshape(2, 2, 2, 2).astype(float).mean(axis=(1, 3)) + 0.5)
    assert (bilinear(a, 2) == want).all()
