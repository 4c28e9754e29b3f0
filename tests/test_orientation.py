"""Hand orientation (edge_boneage.orientation): the 8 transforms and their undo, the packaged classifier on real
radiographs, and predict turning a rotated film upright before the age model sees it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_boneage import orientation as O
from edge_boneage.tflite_meta import read_metadata


def test_apply_and_undo_are_inverse_and_all_eight_differ():
    img = np.random.default_rng(0).integers(0, 256, (7, 5), dtype=np.uint8)
    shown = [O.apply_orientation(img, c) for c in range(8)]
    for c, s in enumerate(shown):
        np.testing.assert_array_equal(O.to_upright_left(s, c), img)
    assert len({s.tobytes() + bytes(s.shape) for s in shown}) == 8
    np.testing.assert_array_equal(shown[1], np.rot90(img))  # class 1 = numpy's counter-clockwise quarter turn
    np.testing.assert_array_equal(shown[4], img[:, ::-1])  # class 4 = mirrored (a right hand)


def test_orientation_model_is_packaged_with_its_thresholds():
    o = O.default_orienter()
    assert o is not None, "edge_boneage/pretrained/orientation.tflite is missing"
    assert o.size == 64 and 0.5 <= o.rotate_threshold < 1.0 and 0.5 <= o.mirror_threshold < 1.0
    est = o.estimate(np.zeros((80, 60), np.uint8))
    assert 0 <= est.cls < 8 and abs(sum(est.probs) - 1.0) < 1e-4
    k, pk = est.rotation
    assert pk == pytest.approx(est.probs[k] + est.probs[k + 4]) and est.mirror_prob == pytest.approx(sum(est.probs[4:]))


def test_unclear_threshold_comes_from_the_model_file():
    o = O.default_orienter()
    meta = read_metadata(o.path)["orientation"]
    assert o.unclear_threshold == meta["unclear_threshold"] and 1 / 8 < o.unclear_threshold < o.rotate_threshold
    probs = (0.35, 0.3, 0.2, 0.15, 0, 0, 0, 0)
    assert O.Orientation(0, 0.35, probs, unclear_threshold=0.3).confident
    assert not O.Orientation(0, 0.35, probs, unclear_threshold=0.4).confident
    assert not O.Orientation(0, 0.35, probs).confident  # without a file's value: MIN_CONFIDENCE (0.5)


def test_rotation_and_mirroring_are_decided_separately():
    probs = np.zeros(8)
    probs[[1, 5]] = 0.46, 0.47  # sure of a quarter turn (0.93), unsure whether mirrored (0.47 + 0.07)
    probs[7] = 0.07
    est = O.Orientation(5, 0.47, tuple(probs), rotate_threshold=0.9, mirror_threshold=0.9)
    assert est.apply_cls == 1  # rotate back, leave the side as it is
    est = O.Orientation(5, 0.47, tuple(probs), rotate_threshold=0.95, mirror_threshold=0.5)
    assert est.apply_cls == 4  # unsure of the turn, sure enough of the mirroring


def _films(rsna_dir, n=6):
    from edge_boneage.io import read_image

    paths = sorted((rsna_dir / "fullres").glob("*.png"))[:n]
    return [read_image(p)[0] for p in paths]


def test_classifier_finds_the_orientation_of_real_radiographs(rsna_dir):
    o = O.default_orienter()  # all 55 full-resolution films (never trained on) in all 8 orientations
    hits = [o.estimate(O.apply_orientation(im, c)).cls == c for im in _films(rsna_dir, 55) for c in range(8)]
    assert len(hits) == 440 and np.mean(hits) >= 0.92, np.mean(hits)


def test_predict_turns_a_rotated_film_upright(rsna_dir, tmp_path):
    import cv2

    from edge_boneage.predict import AgePredictor, predict_image
    from edge_boneage.pretrained import default_model_path

    film = _films(rsna_dir, 1)[0]
    cv2.imwrite(str(tmp_path / "up.png"), film)
    cv2.imwrite(str(tmp_path / "rot.png"), O.apply_orientation(film, 3))
    p = AgePredictor(default_model_path())
    up = predict_image(p, tmp_path / "up.png", "M")
    turned = predict_image(p, tmp_path / "rot.png", "M")
    raw = predict_image(p, tmp_path / "rot.png", "M", orient=False)
    assert not up.orientation["applied"] and up.orientation["estimate"] == "upright"
    assert turned.orientation["applied"] and turned.orientation["estimate"] == "rot270"
    assert raw.orientation is None
    assert abs(turned.age_months - up.age_months) < 1e-3  # the same pixels reach the model
    assert "turned to an upright left hand" in turned.summary()


def test_tile_shuffled_outliers_keep_the_pixels_but_no_orientation():
    import cv2

    from benchmarks.train_orientation import tile_shuffle

    img = np.random.default_rng(1).integers(0, 256, (90, 72), dtype=np.uint8)
    for seed in range(5):
        out = tile_shuffle(img, np.random.default_rng(seed))
        side = out.shape[0]
        assert out.shape == (side, side) and out.dtype == np.uint8
        sq = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(sq.ravel()))  # the same pixels, moved
        assert not any(np.array_equal(out, O.apply_orientation(sq, c)) for c in range(8))
