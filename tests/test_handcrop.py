"""Hand localisation (edge_boneage.handcrop) and the preprocessing contract that uses it.

Synthetic scenes with a known hand box (a palm + five fingers drawn bright on dark, on a bright cassette, with a
marker letter) check the rule; the committed hand-drawn boxes (benchmarks/data/hand_boxes.json) check it on real
RSNA radiographs when ../shared is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.hand_iou import iou
from edge_boneage.handcrop import crop_box, locate_hand
from edge_boneage.preprocess import PreprocessSpec, preprocess_full

REPO = Path(__file__).resolve().parents[1]


def draw_hand(h=400, w=300, box=(80, 60, 230, 380), bg=20, level=170, seed=0):
    """A crude hand (palm rectangle + 5 finger bars + forearm) filling `box` = (x0, y0, x1, y1) exactly."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), bg, np.float32)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    palm_top, palm_bot = y0 + int(0.4 * bh), y0 + int(0.75 * bh)
    cv2.rectangle(img, (x0 + int(0.15 * bw), palm_top), (x1 - int(0.2 * bw) - 1, palm_bot), level, -1)
    for k in range(4):  # fingers
        fx = x0 + int(0.15 * bw) + k * int(0.17 * bw)
        top = y0 + (0 if k == 1 else int(0.08 * bh))
        cv2.rectangle(img, (fx, top), (fx + int(0.1 * bw), palm_top), level, -1)
    cv2.rectangle(img, (x1 - int(0.25 * bw), y0 + int(0.45 * bh)), (x1 - 1, y0 + int(0.55 * bh)), level, -1)  # thumb
    cv2.rectangle(img, (x0 + int(0.3 * bw), palm_bot), (x0 + int(0.65 * bw), y1 - 1), level, -1)  # forearm
    cv2.rectangle(img, (x0, y0 + int(0.6 * bh)), (x0 + int(0.2 * bw), y0 + int(0.66 * bh)), level, -1)  # left edge
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def tight(hb):
    return (hb.hand_x0, hb.hand_y0, hb.hand_x1, hb.hand_y1)


def test_finds_hand_on_dark_background():
    box = (80, 60, 230, 380)
    hb = locate_hand(draw_hand(box=box))
    assert hb.found and iou(tight(hb), box) > 0.9
    assert hb.h >= (box[3] - box[1])  # the canonical box holds the whole hand


def test_ignores_marker_and_thin_edges():
    img = draw_hand()
    cv2.putText(img, "L", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 255, 2)  # side marker away from the hand
    cv2.line(img, (0, 395), (299, 395), 255, 1)  # a thin bright cassette edge
    hb = locate_hand(img)
    assert iou(tight(hb), (80, 60, 230, 380)) > 0.85


def test_hand_inside_bright_cassette():
    img = np.full((400, 300), 10, np.uint8)
    img[20:390, 30:290] = 110  # bright cassette, fills its own box
    hand = draw_hand(box=(80, 60, 230, 380), bg=110, level=200, seed=1)
    img[20:390, 30:290] = hand[20:390, 30:290]
    hb = locate_hand(img)
    assert iou(tight(hb), (80, 60, 230, 380)) > 0.8, tight(hb)


def test_blank_image_gives_whole_frame():
    hb = locate_hand(np.zeros((50, 70), np.uint8))
    assert not hb.found and (hb.x0, hb.y0, hb.w, hb.h) == (0.0, 0.0, 70.0, 50.0)


def test_box_is_square_in_squeezed_frame():
    img = draw_hand(h=400, w=200, box=(40, 60, 115, 380))
    hb = locate_hand(img)  # a squeezed frame: the box is square in the 128x128 grid, so w/h = 200/400
    assert hb.w / hb.h == pytest.approx(200 / 400)


def test_crop_box_pads_outside_with_zero():
    img = np.full((10, 10), 7, np.uint8)
    out = crop_box(img, (-5, -5, 10, 10), (10, 10))
    assert out[:5, :5].max() == 0 and out[5:, 5:].min() == 7


def test_crop_takes_the_scale_cue_away():
    """A hand and the same film zoomed 1.5x give nearly the same model image (unlike the plain letterbox rule)."""
    small = draw_hand(h=400, w=400, box=(140, 100, 260, 340), bg=0)
    mat = cv2.getRotationMatrix2D((199.5, 219.5), 0.0, 1.5)
    big = cv2.warpAffine(small, mat, (400, 400), flags=cv2.INTER_LINEAR)
    spec = PreprocessSpec(input_size=64, frame="squeeze", crop="hand")
    a, b = spec.apply(small).astype(float), spec.apply(big).astype(float)
    plain = PreprocessSpec(input_size=64)
    pa, pb = plain.apply(small).astype(float), plain.apply(big).astype(float)
    assert np.abs(a - b).mean() < 0.35 * np.abs(pa - pb).mean()


def test_spec_v2_round_trip_and_v1_files():
    s = PreprocessSpec(input_size=100, frame="squeeze", crop="hand", enhance="clahe")
    assert PreprocessSpec.from_dict(s.to_dict()) == s
    old = PreprocessSpec.from_dict({"input_size": 100, "version": 1})
    assert (old.frame, old.crop) == ("letterbox", None)
    with pytest.raises(ValueError, match="crop"):
        PreprocessSpec(input_size=100, crop="face")
    with pytest.raises(ValueError, match="hand-crop rule"):
        PreprocessSpec(input_size=100, crop="hand", crop_rule="another-rule")


def test_box_reported_in_original_pixels_for_letterbox():
    img = draw_hand(h=400, w=300, box=(80, 60, 230, 380))
    _, box = preprocess_full(img, 64, frame="letterbox", crop="hand")
    assert iou((box["hand_x0"], box["hand_y0"], box["hand_x1"], box["hand_y1"]), (80, 60, 230, 380)) > 0.9


def test_hand_drawn_boxes_on_rsna(rsna_dir):
    """Median IoU >= 0.85 per set of the localiser's tight box with boxes drawn by hand on real radiographs."""
    from benchmarks.hand_iou import BOXES, measure

    from edge_boneage.preprocess import PreprocessSpec

    # on the image itself, and as a source_size-100 contract frames it (boxes found at 100x100, reported in pixels)
    for spec in (None, PreprocessSpec(input_size=64, frame="squeeze", crop="hand", source_size=100)):
        res = measure(rsna_dir, BOXES, spec=spec)
        assert sorted(res) == ["fullres", "img100"] and all(len(v) == 30 for v in res.values())
        for st, v in res.items():
            assert float(np.median([i for _, i in v])) >= 0.85, (spec, st, sorted(v, key=lambda t: t[1])[:5])


def test_predict_tta_averages_crop_margins(tmp_path):
    """predict --tta is the mean of the three crop margins' predictions (and differs from a single crop)."""
    import dataclasses

    import keras

    from edge_boneage.predict import TTA_MARGINS, AgePredictor, predict_image
    from keras_models.registry import build_model

    keras.utils.set_random_seed(1)
    spec = PreprocessSpec(input_size=32, frame="squeeze", crop="hand")
    m = build_model("mobilenetv3_large", input_size=32, alpha=0.35, preprocess=spec.to_dict())
    p = tmp_path / "m.keras"
    m.save(p)
    img = draw_hand(h=200, w=160, box=(30, 20, 130, 190))
    f = tmp_path / "hand.png"
    cv2.imwrite(str(f), img)
    pred = AgePredictor(p)
    single = predict_image(pred, f, "F").age_months
    tta = predict_image(pred, f, "F", tta=True).age_months
    each = [pred.run(dataclasses.replace(pred.spec, crop_margin=mg).apply(img), 0.0)["age"].item() for mg in TTA_MARGINS]
    assert tta == pytest.approx(np.mean(each), abs=1e-4)
    assert single == pytest.approx(each[1], abs=1e-4)
