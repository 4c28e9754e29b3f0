"""Synthetic hand radiographs: determinism, label/stage consistency, stage-dependent epiphyses, CLI, Keras data."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from edge_boneage import tw3
from edge_boneage.cli import main as cli_main
from edge_boneage.synth import consistency, generate, iter_bone_crops, sample_child
from edge_boneage.synth.hand import tubular_template
from edge_boneage.synth.maturity import curve_end, total_score
from edge_boneage.synth.render import _rng, child_at, render


def test_generate_is_deterministic_and_index_addressable():
    a = generate(3, 128, seed=5)
    b = generate(3, 128, seed=5)
    assert a.images.dtype == np.uint8 and a.images.shape == (3, 128, 128)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.grades, b.grades)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.boneage, b.boneage)
    c = generate(1, 128, seed=5, start=2)  # image 2 alone equals image 2 of the batch
    assert np.array_equal(c.images[0], a.images[2]) and c.ids[0] == 2
    d = generate(3, 128, seed=6)
    assert not np.array_equal(a.images, d.images)
    assert len({img.tobytes() for img in a.images}) == 3


def test_labels_and_stages_are_consistent_with_tw3c_curve():
    res = consistency(n=400, seed=11)
    assert res["n_in_curve"] + res["n_beyond_curve"] == 400
    assert res["n_beyond_curve"] > 0  # 0..18 y covers ages past the curve ends (16 y male, 15 y female)
    assert res["mean_abs_months"] < 1.0
    assert res["p95_abs_months"] < 3.0
    for i in range(200):
        ch = sample_child(3, i, (0.0, 18.0))
        sex = "male" if ch["male"] else "female"
        g = np.asarray(ch["grades"])
        assert g.shape == (13,) and g.min() >= 0
        assert all(g[k] <= tw3.N_GRADES[b] for k, b in enumerate(tw3.BONES))
        assert total_score(g, sex) == pytest.approx(ch["score"])
        assert total_score(g, sex) == pytest.approx(tw3.total_score(g, sex))
        if ch["boneage"] / 12 >= curve_end(sex):
            assert ch["beyond_curve"] and ch["score"] == 1000
        else:
            assert not ch["beyond_curve"]
            back = tw3.score_to_age(ch["score"], sex) * 12
            # the female curve rises only 6 points in its last year (994 -> 1000): quantisation allowed there
            tol = 12.5 if (not ch["male"] and ch["boneage"] > 14 * 12) else 6.0
            assert abs(back - ch["boneage"]) <= tol
    # maturity follows age within each sex: rank correlation of total score with the label
    kids = [sample_child(4, i, (0, 15)) for i in range(150)]
    for male in (True, False):
        ages = np.array([k["boneage"] for k in kids if k["male"] == male])
        scores = np.array([k["score"] for k in kids if k["male"] == male])
        ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
        assert np.corrcoef(ranks(ages), ranks(scores))[0, 1] > 0.97


def test_age_range_is_respected():
    b = generate(6, 96, seed=2, age_range=(3.0, 4.0))
    assert np.all((b.boneage >= 36) & (b.boneage <= 48))
    assert not b.beyond_curve.any()


def _epiphysis_width(vstage):
    pts, splits, greys = tubular_template(50.0, 10.0, vstage, 1.0, (0.7, 0.88, 0.45))
    polys = np.split(pts, splits)
    if len(polys) < 3:
        return 0.0
    epi = polys[2]  # shaft outer, shaft inner, epiphysis outer, ...
    return float(epi[:, 1].max() - epi[:, 1].min())


def test_epiphysis_geometry_grows_and_fuses_with_stage():
    widths = [_epiphysis_width(v) for v in range(9)]
    assert widths[0] == 0.0
    assert all(b > a for a, b in zip(widths[:7], widths[1:7]))  # A..G: wider each stage
    assert widths[6] > 10.0  # G: wider than the metaphysis (capping)
    n_polys = [len(tubular_template(50.0, 10.0, v, 1.0, (0.7, 0.88, 0.45))[1]) + 1 for v in range(9)]
    assert n_polys[0] == 2 and n_polys[1] == 4 and n_polys[7] == 5 and n_polys[8] == 6  # bridges at H, I


def _ladder_crops(bone_index, size=256, seed=3, crop=64):
    crops = []
    for g in range(9):
        grades = np.array([min(g, tw3.N_GRADES[b]) for b in tw3.BONES])
        child = {"boneage": 100, "male": True, "grades": grades, "score": 0.0, "q": 0.5, "beyond_curve": False}
        img, boxes = render(child, size, _rng(seed, 0))
        crops.append((img, boxes))
    return crops


def test_stage_changes_the_rendered_epiphysis_only_near_the_bone():
    from edge_boneage.synth.render import bone_crop

    ladder = _ladder_crops(bone_index=0)
    imgs = [im.astype(np.int16) for im, _ in ladder]
    boxes0 = ladder[0][1]
    assert all(np.array_equal(boxes0, bx) for _, bx in ladder)  # pose does not depend on stages
    for k, b in enumerate(("radius", "mc3")):
        bi = tw3.BONES.index(b)
        crops = [bone_crop(im.astype(np.uint8), boxes0[bi], 64).astype(np.int16) for im in imgs]
        diffs = [np.abs(c - crops[0]).mean() for c in crops]
        assert diffs[1] > 1.0  # stage B appears
        assert all(np.abs(crops[g + 1] - crops[g]).mean() > 0.3 for g in range(8)), b  # every stage differs
        # the area changed relative to stage A grows from B to F (the centre widens and thickens)
        changed = [(np.abs(c - crops[0]) > 12).sum() for c in crops]
        assert changed[1] < changed[3] < changed[5], (b, changed)
    # far from any growth plate (image corners) nothing changes
    corner = (slice(0, 20), slice(0, 20))
    assert all(np.array_equal(imgs[0][corner], im[corner]) for im in imgs)


def test_boxes_inside_image_and_crops():
    b = generate(4, 160, seed=9)
    assert b.boxes.shape == (4, 13, 4)
    assert np.all(b.boxes >= 0) and np.all(b.boxes <= 160)
    w = b.boxes[..., 2] - b.boxes[..., 0]
    h = b.boxes[..., 3] - b.boxes[..., 1]
    assert np.all(w > 3) and np.all(h > 3)
    crops, grades, idx, male = next(iter_bone_crops(1, size=160, crop=48, seed=9))
    assert crops.shape == (13, 48, 48) and crops.dtype == np.uint8
    assert np.array_equal(grades, b.grades[0]) and list(idx) == list(range(13)) and male == bool(b.male[0])
    assert crops.std() > 5


def test_child_at_fixed_age():
    c = child_at(16.5, True, np.random.default_rng(0))
    assert c["beyond_curve"] and list(c["grades"]) == [tw3.N_GRADES[b] for b in tw3.BONES]
    c = child_at(8.0, False, np.random.default_rng(0))
    assert abs(tw3.score_to_age(c["score"], "female") - 8.0) < 0.25


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_writes_documented_files(tmp_path, capsys):
    out = tmp_path / "syn"
    assert cli_main(["synth", "--out", str(out), "--n", "3", "--size", "96", "--seed", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["boxes.csv", "images", "labels.csv", "stages.csv"]
    labels = _read_csv(out / "labels.csv")
    assert list(labels[0].keys()) == ["id", "boneage", "male"]
    assert [r["id"] for r in labels] == ["0", "1", "2"] and {r["male"] for r in labels} <= {"True", "False"}
    stages = _read_csv(out / "stages.csv")
    assert list(stages[0].keys())[-13:] == list(tw3.BONES) and len(stages) == 3
    boxes = _read_csv(out / "boxes.csv")
    assert len(boxes) == 39 and boxes[0]["bone"] == "radius"
    import cv2

    img = cv2.imread(str(out / "images" / "1.png"), cv2.IMREAD_UNCHANGED)
    ref = generate(3, 96, seed=4)
    assert img.shape == (96, 96) and np.array_equal(img, ref.images[1])
    assert int(labels[1]["boneage"]) == int(ref.boneage[1])
    assert [int(stages[1][b]) for b in tw3.BONES] == list(ref.grades[1])
    # same seed -> byte-identical files
    out2 = tmp_path / "syn2"
    assert cli_main(["synth", "--out", str(out2), "--n", "3", "--size", "96", "--seed", "4"]) == 0
    for name in ("images/0.png", "images/2.png", "labels.csv", "stages.csv", "boxes.csv"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes()
    # refusing to clobber, then replacing atomically with --overwrite
    assert cli_main(["synth", "--out", str(out), "--n", "2", "--size", "96"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["synth", "--out", str(out), "--n", "2", "--size", "96", "--overwrite"]) == 0
    assert len(list((out / "images").iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--n", "1", "--age-range", "5", "2"]) == 1


def test_keras_pydatasets():
    pytest.importorskip("keras")
    from edge_boneage.synth.dataset import SynthAgeDataset, SynthStageDataset

    ds = SynthAgeDataset(n=5, batch_size=2, size=64, seed=1)
    assert len(ds) == 3
    x, y = ds[0]
    assert x["image"].shape == (2, 64, 64, 1) and x["image"].dtype == np.uint8
    assert x["sex"].shape == (2, 1) and x["sex"].dtype == np.float32
    assert y.shape == (2, 1) and y.dtype == np.float32 and np.all((y >= 0) & (y <= 216))
    x2, y2 = ds[2]
    assert x2["image"].shape == (1, 64, 64, 1)
    ref = generate(5, 64, seed=1)
    assert np.array_equal(x2["image"][0, ..., 0], ref.images[4]) and y2[0, 0] == ref.boneage[4]
    with pytest.raises(IndexError):
        ds[3]
    st = SynthStageDataset(n_images=3, images_per_batch=2, size=128, crop=32, seed=1)
    assert len(st) == 2
    xs, ys = st[0]
    assert xs["image"].shape == (26, 32, 32, 1) and xs["image"].dtype == np.uint8
    assert xs["bone"].dtype == np.int32 and list(xs["bone"][:13, 0]) == list(range(13))
    assert ys.shape == (26, 1) and ys.dtype == np.int32 and ys.max() <= 8
