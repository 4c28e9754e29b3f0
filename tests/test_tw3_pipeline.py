"""TW3 pipeline: box parsers (VOC/COCO/CSV/JSON) and their one-line errors, crop geometry, the scoring path
(incl. the paper's 49.08), the threshold sweep choosing on validation, stage-model training + resume, the
`tw3 predict` CLI and .tflite vs .keras parity. Tiny models (32 px crops, depths [1,1,1,1]), few images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_boneage import EdgeBoneageError, tw3
from edge_boneage.tw3_pipeline.boxes import boxes_for_image, check_boxes_in_image, read_boxes
from edge_boneage.tw3_pipeline.constants import DEFAULT_AGE_RANGE, TFLITE_META_NAME
from edge_boneage.tw3_pipeline.crops import crop_region, crop_window, region_crops
from edge_boneage.tw3_pipeline.data import StageData, synth_stage_data
from edge_boneage.tw3_pipeline.model import StageModel
from edge_boneage.tw3_pipeline.reports import evaluate
from edge_boneage.tw3_pipeline.scoring import bone_scores, score_probs, stage_accuracy, threshold_sweep
from edge_boneage.tw3_pipeline.run_config import StageTrainConfig
from edge_boneage.tw3_pipeline.training import train_stage_model

BONES = tw3.BONES
PAPER_PROBS = [0.0001, 0.0075, 0.0624, 0.4152, 0.4223, 0.0466, 0.0397, 0.0062]  # Table 2 (radius, true grade 4)


def _boxes(w=200, h=160):
    """13 distinct in-image boxes."""
    return {b: (5.0 + 11 * i, 7.0 + 8 * i, 25.0 + 11 * i, 30.0 + 8 * i) for i, b in enumerate(BONES)}


# ------------------------------------------------------------------------------------------------ box parsers


def _write_voc(path, boxes, w=200, h=160, names=None):
    objs = "".join(
        f"<object><name>{(names or {}).get(b, b)}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for b, (x0, y0, x1, y1) in boxes.items())
    path.write_text(f"<annotation><filename>hand.png</filename><size><width>{w}</width><height>{h}</height>"
                    f"<depth>1</depth></size>{objs}</annotation>")
    return path


def test_voc_parses_and_validates(tmp_path):
    bx = _boxes()
    got = read_boxes(_write_voc(tmp_path / "a.xml", bx))
    assert list(got) == ["hand.png"]
    e = got["hand.png"]
    assert (e.width, e.height) == (200, 160)
    np.testing.assert_array_equal(e.array(), np.array([bx[b] for b in BONES], np.float32))
    # names are case-insensitive
    assert read_boxes(_write_voc(tmp_path / "c.xml", bx, names={"radius": "Radius"}))["hand.png"].boxes["radius"] == bx["radius"]

    with pytest.raises(EdgeBoneageError, match=r"b\.xml: object 3: unknown bone 'metacarpal1'") as ei:
        read_boxes(_write_voc(tmp_path / "b.xml", bx, names={"mc1": "metacarpal1"}))
    assert "\n" not in str(ei.value)
    far = dict(bx, dp5=(180.0, 100.0, 230.0, 150.0))  # x1 = 230 > width 200
    with pytest.raises(EdgeBoneageError, match=r"object 13 \(dp5\): box 180,100,230,150 lies outside the 200x160"):
        read_boxes(_write_voc(tmp_path / "d.xml", far))
    missing = {b: v for b, v in bx.items() if b not in ("ulna", "pp5")}
    with pytest.raises(EdgeBoneageError, match=r"e\.xml: image 'hand\.png' misses boxes for 2 RUS bone\(s\): ulna, pp5"):
        read_boxes(_write_voc(tmp_path / "e.xml", missing))
    flat = dict(bx, mp3=(50.0, 50.0, 50.0, 60.0))
    with pytest.raises(EdgeBoneageError, match=r"object 9 \(mp3\): empty box"):
        read_boxes(_write_voc(tmp_path / "f.xml", flat))
    (tmp_path / "g.xml").write_text("<annotation><object>")
    with pytest.raises(EdgeBoneageError, match=r"g\.xml: not a readable Pascal VOC XML"):
        read_boxes(tmp_path / "g.xml")


def _coco(bx, cat_names=None):
    cats = [{"id": 10 + i, "name": (cat_names or {}).get(b, b)} for i, b in enumerate(BONES)]
    anns = [{"id": 100 + i, "image_id": 1, "category_id": 10 + i, "bbox": [x0, y0, x1 - x0, y1 - y0]}
            for i, (b, (x0, y0, x1, y1)) in enumerate(bx.items())]
    return {"images": [{"id": 1, "file_name": "dir/h1.png", "width": 200, "height": 160}],
            "annotations": anns, "categories": cats}


def test_coco_parses_and_validates(tmp_path):
    bx = _boxes()
    p = tmp_path / "c.json"
    p.write_text(json.dumps(_coco(bx)))
    got = read_boxes(p)
    e = boxes_for_image(got, "/somewhere/h1.png")  # matched by file name
    for b in BONES:
        assert e.boxes[b] == pytest.approx(bx[b])
    doc = _coco(bx, cat_names={"dp3": "distal3"})
    p.write_text(json.dumps(doc))
    with pytest.raises(EdgeBoneageError, match=r"c\.json: annotations\[11\] \(id 111\): unknown bone 'distal3'"):
        read_boxes(p)
    doc = _coco(bx)
    doc["annotations"][2]["image_id"] = 7
    p.write_text(json.dumps(doc))
    with pytest.raises(EdgeBoneageError, match=r"annotations\[2\] \(id 102\): image_id 7 is not in 'images'"):
        read_boxes(p)
    doc = _coco(bx)
    doc["annotations"][0]["bbox"] = [-20, 10, 30, 30]
    p.write_text(json.dumps(doc))
    with pytest.raises(EdgeBoneageError, match=r"annotations\[0\] \(id 100\) \(radius\): box -20,10,10,40 lies outside"):
        read_boxes(p)
    doc = _coco(bx)
    doc["annotations"] = doc["annotations"][1:]
    p.write_text(json.dumps(doc))
    with pytest.raises(EdgeBoneageError, match=r"image 'dir/h1\.png' misses boxes for 1 RUS bone\(s\): radius"):
        read_boxes(p)


def _write_csv(path, rows, header=("image", "bone", "x0", "y0", "x1", "y1")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_parses_synth_format_and_reports_bad_rows(tmp_path):
    bx = _boxes()
    rows = [(img, b, *bx[b]) for img in ("3", "4") for b in BONES]
    # the `edge-boneage synth` boxes.csv header (id instead of image)
    got = read_boxes(_write_csv(tmp_path / "boxes.csv", rows, ("id", "bone", "x0", "y0", "x1", "y1")))
    assert sorted(got) == ["3", "4"]
    assert boxes_for_image(got, "data/images/4.png") is got["4"]  # synth id = file stem
    with pytest.raises(EdgeBoneageError, match=r"boxes\.csv: no boxes for image '5\.png'"):
        boxes_for_image(got, "images/5.png")

    bad = list(rows)
    bad[4] = ("3", "thumb", *bx["mc5"])
    with pytest.raises(EdgeBoneageError, match=r"b\.csv: data row 5 \(line 6\): unknown bone 'thumb'"):
        read_boxes(_write_csv(tmp_path / "b.csv", bad))
    bad = list(rows)
    bad[15] = ("4", "mc1", 10, "abc", 20, 30)
    with pytest.raises(EdgeBoneageError, match=r"data row 16 \(line 17\): y0 'abc' is not a number"):
        read_boxes(_write_csv(tmp_path / "c.csv", bad))
    bad = list(rows) + [("4", "dp5", 1, 1, 9, 9)]
    with pytest.raises(EdgeBoneageError, match=r"data row 27 \(line 28\): duplicate box for dp5 of image '4' "
                                               r"\(first at data row 26 \(line 27\)\)"):
        read_boxes(_write_csv(tmp_path / "d.csv", bad))
    bad = [r for r in rows if not (r[0] == "3" and r[1] == "mp5")]
    with pytest.raises(EdgeBoneageError, match=r"e\.csv: image '3' misses boxes for 1 RUS bone\(s\): mp5"):
        read_boxes(_write_csv(tmp_path / "e.csv", bad))
    bad = list(rows)
    bad[0] = ("3", "radius", 10, 10, 5, 20)
    with pytest.raises(EdgeBoneageError, match=r"data row 1 \(line 2\): empty box"):
        read_boxes(_write_csv(tmp_path / "f.csv", bad))
    with pytest.raises(EdgeBoneageError, match=r"g\.csv: header a,b has no 'image' column"):
        read_boxes(_write_csv(tmp_path / "g.csv", [], ("a", "b")))
    # a CSV has no image size: the outside-the-image check happens against the image
    far = [(img, b, *((150, 100, 260, 150) if b == "pp3" else bx[b])) for img in ("3",) for b in BONES]
    e = read_boxes(_write_csv(tmp_path / "h.csv", far))["3"]
    with pytest.raises(EdgeBoneageError, match=r"h\.csv: data row 7 \(line 8\): box 150,100,260,150 lies outside the 200x160"):
        check_boxes_in_image(e, 200, 160)
    check_boxes_in_image(e, 261, 160)  # within the 1-px tolerance


def test_simple_json_boxes(tmp_path):
    bx = _boxes()
    p = tmp_path / "one.json"
    p.write_text(json.dumps({"image": "x.png", "width": 200, "height": 160, "boxes": {b: list(v) for b, v in bx.items()}}))
    e = boxes_for_image(read_boxes(p), "x.png")
    assert e.boxes["dp5"] == bx["dp5"]
    p.write_text(json.dumps({b: list(v) for b, v in bx.items() if b != "mc3"}))
    with pytest.raises(EdgeBoneageError, match=r"one\.json: image '' misses boxes for 1 RUS bone\(s\): mc3"):
        read_boxes(p)


# ------------------------------------------------------------------------------------------------ crops


def test_crop_geometry():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 255, (120, 160), dtype=np.uint8)
    box = (40.0, 30.0, 60.0, 50.0)  # 20 x 20
    # margin 0, crop size = box size: exactly the box's pixels
    np.testing.assert_array_equal(crop_region(img, box, 20, margin=0.0, equalize=False), img[30:50, 40:60])
    # margin 0.25 -> side 30, centred: box region + 5 px each side
    np.testing.assert_array_equal(crop_region(img, box, 30, margin=0.25, equalize=False), img[25:55, 35:65])
    # non-square box: square of the longer side, centred on the box
    assert crop_window((40, 30, 60, 70), 0.0) == (30, 30, 40)
    np.testing.assert_array_equal(crop_region(img, (40, 30, 60, 70), 40, 0.0, False), img[30:70, 30:70])
    # partly outside the image: zeros there
    c = crop_region(img, (150, -5, 170, 15), 20, 0.0, False)
    np.testing.assert_array_equal(c[5:, :10], img[0:15, 150:160])
    assert not c[:5].any() and not c[:, 10:].any()
    # resize with INTER_AREA, then cv2.equalizeHist
    raw = crop_region(img, box, 8, margin=0.1, equalize=False)
    ox, oy, side = crop_window(box, 0.1)
    assert (ox, oy, side) == (38, 28, 24)
    np.testing.assert_array_equal(raw, cv2.resize(img[28:52, 38:62], (8, 8), interpolation=cv2.INTER_AREA))
    eq = crop_region(img, box, 8, margin=0.1)
    np.testing.assert_array_equal(eq, cv2.equalizeHist(raw))
    assert eq.dtype == np.uint8 and eq.min() == 0 and eq.max() == 255
    crops = region_crops(img, _boxes(), 16)
    assert crops.shape == (13, 16, 16) and crops.dtype == np.uint8


def test_synth_crops_follow_generator_boxes():
    from edge_boneage.synth import generate_one

    d = synth_stage_data(2, image_size=128, crop=24, seed=3, start=5)
    child, img, boxes = generate_one(3, 6, 128, DEFAULT_AGE_RANGE)
    np.testing.assert_array_equal(d.crops[13 + 4], crop_region(img, boxes[4], 24))
    np.testing.assert_array_equal(d.grades[1], child["grades"])
    assert d.boneage_months[1] == child["boneage"] and d.male[1] == child["male"]
    np.testing.assert_array_equal(d.bone[:14], [*range(13), 0])


# ------------------------------------------------------------------------------------------------ scoring


def _onehot_probs(grades):
    p = np.zeros((13, 8))
    for i, g in enumerate(grades):
        p[i, g - 1] = 1.0
    return p


def test_scoring_path_paper_example_and_ulna_layout():
    grades = [5, 7, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]  # ulna at its last grade 7 (H)
    p = _onehot_probs(grades)
    p[0] = PAPER_PROBS
    s, total, age, clamped = score_probs(p[None], np.array([True]), "topn", 0.61)
    assert round(float(s[0, 0]), 2) == 49.08  # Table 2 with Table 1 (male radius), the paper's worked example
    # ulna: the model's 8th (masked) entry must be dropped, not read as a leading stage A
    assert s[0, 1] == tw3.stage_score("ulna", 7, "male") == 181
    others = sum(tw3.stage_score(b, g, "male") for b, g in zip(BONES[1:], grades[1:]))
    assert total[0] == pytest.approx(s[0, 0] + others)
    assert age[0] == pytest.approx(tw3.score_to_age(total[0], "male")) and not clamped[0]
    # classic takes the argmax grade 5 -> 59, Top2 uses grades 4 and 5 here -> also 49.08
    assert score_probs(p[None], True, "classic")[0][0, 0] == 59
    assert round(float(score_probs(p[None], True, "top2")[0][0, 0]), 2) == 49.08
    # sex selects the score table per image
    s2 = bone_scores(np.stack([p, p]), np.array([True, False]), "classic")
    assert s2[1, 0] == tw3.stage_score("radius", 5, "female") and s2[0, 0] == 59


def test_sweep_picks_the_validation_argmin_and_table_uses_test():
    rng = np.random.default_rng(1)

    def make(n, p_male, p_female):
        probs = rng.dirichlet(np.full(8, 0.6), size=(n, 13))
        probs[:, 1, 7] = 0.0  # ulna: masked 8th grade
        probs[:, 1] /= probs[:, 1].sum(-1, keepdims=True)
        male = np.arange(n) % 2 == 0
        true = np.where(male, score_probs(probs, True, "topn", p_male)[2],
                        score_probs(probs, False, "topn", p_female)[2])
        return probs, true, male

    pv, tv, mv = make(24, 0.42, 0.77)
    sw = threshold_sweep(pv, tv, mv)
    assert sw["best"]["male"]["threshold"] == 0.42 and sw["best"]["male"]["mae_years"] == pytest.approx(0, abs=1e-9)
    assert sw["best"]["female"]["threshold"] == 0.77
    # every point of the curve is the MAE computed independently through edge_boneage.tw3
    k = sw["thresholds"].index(0.61)
    ref = np.mean([abs(tw3.bone_age_from_probs({b: pv[i, j, : tw3.N_GRADES[b]] for j, b in enumerate(BONES)},
                                               "female", "topn", 0.61) - tv[i]) for i in np.flatnonzero(~mv)])
    assert sw["mae_years"]["female"][k] == pytest.approx(ref)

    # evaluate(): P comes from the validation split, the table from the test split (generated with other P)
    pt, tt, mt = make(10, 0.9, 0.2)

    class Fake(StageModel):
        def __init__(self):
            self.path, self.format, self.size, self.meta = "fake", "fake", 8, {}

        def predict_images(self, data, batch=128):
            return pv if len(data) == 24 else pt

    def data(true, male):
        return StageData(np.zeros((len(true) * 13, 8, 8), np.uint8), true * 12.0, male, None, list(range(len(true))))

    import tempfile

    with tempfile.TemporaryDirectory() as out:
        rep = evaluate(Fake(), data(tv, mv), data(tt, mt), out)
        assert rep["thresholds_used"] == {"male": 0.42, "female": 0.77}
        assert (Path(out) / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "TopN TW3-C RUS" in (Path(out) / "report.md").read_text()
        assert json.loads((Path(out) / "report.json").read_text())["thresholds_used"]["male"] == 0.42
    t4 = rep["table4"]
    ref = score_probs(pt[mt], True, "topn", 0.42)[2]
    assert t4["topn"]["male"]["mae_years"] == pytest.approx(np.abs(ref - tt[mt]).mean())
    assert t4["topn"]["male"]["n"] == 5 and t4["classic"]["female"]["n"] == 5


def test_stage_accuracy_excludes_stage_a():
    grades = np.array([[0] + [3] * 12, [2] * 13])
    probs = np.stack([_onehot_probs([1] + [3] * 12), _onehot_probs([2] * 12 + [4])])
    acc = stage_accuracy(probs, grades)
    assert acc["radius"] == {"n": 1, "excluded_stage_a": 1, "acc": 1.0, "acc_pm1": 1.0}
    assert acc["dp5"]["acc"] == 0.5 and acc["dp5"]["acc_pm1"] == 0.5
    assert acc["all"]["n"] == 25 and acc["all"]["acc"] == pytest.approx(24 / 25)


# ------------------------------------------------------------------------------------------------ models

TINY = {"depths": [1, 1, 1, 1], "width_mult": 0.25, "cardinality": 8, "base_width": 4}
MARGIN = 0.25  # not DEFAULT_MARGIN: the margin a model was trained with must reach its .tflite and its predictions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tw3run")
    cfg = StageTrainConfig(arch="csp_resnext50_tw3", model_args=TINY, crop=32, margin=MARGIN, image_size=128,
                           n_train=4, n_val=2, n_test=2, epochs=1, batch=16, out=str(out / "run"), verbose=0,
                           jit_compile=False)
    first = train_stage_model(cfg)
    return cfg, first


def test_train_checkpoints_and_resume(trained):
    cfg, first = trained
    out = Path(cfg.out)
    assert first["epochs_done"] == 1 and (out / "best.keras").is_file() and (out / "last.keras").is_file()
    assert json.loads((out / "state.json").read_text())["epoch"] == 0
    acc = json.loads((out / "val_stage_accuracy.json").read_text())
    assert acc["all"]["n"] + acc["all"]["excluded_stage_a"] == 2 * 13
    with pytest.raises(EdgeBoneageError, match="already holds a tw3 training run"):
        train_stage_model(cfg)
    # a half-written row of an epoch that never committed is dropped on resume
    with open(out / "log.csv", "a") as f:
        f.write("1,0.5\n")
    again = train_stage_model(StageTrainConfig(out=cfg.out, resume=True, epochs=2, verbose=0))
    assert again["initial_epoch"] == 1 and again["epochs_done"] == 2
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"] and all(r["val_loss"] for r in rows)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001.keras"]
    assert json.loads((out / "run.json").read_text())["resumes"][0]["at_epoch"] == 1


def test_predict_cli_json_and_tflite_parity(trained, tmp_path, capsys):
    from edge_boneage import cli
    from edge_boneage.synth import write_dataset

    cfg, _ = trained
    keras_path = Path(cfg.out) / "best.keras"
    syn = write_dataset(tmp_path / "syn", 2, size=128, seed=5, age_range=(6, 15))
    img = syn / "images" / "1.png"
    rc = cli.main(["tw3", "predict", str(img), "--model", str(keras_path), "--boxes", str(syn / "boxes.csv"),
                   "--sex", "F", "--json"])
    assert rc == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["crop"] == {"size": 32, "margin": MARGIN}  # the .keras crops with its run's margin
    assert list(pred["bones"]) == list(BONES)
    assert len(pred["bones"]["ulna"]["probs"]) == 7 and len(pred["bones"]["radius"]["probs"]) == 8
    assert pred["rus_score"] == pytest.approx(sum(b["score"] for b in pred["bones"].values()))
    assert pred["bone_age_years"] == pytest.approx(tw3.score_to_age(pred["rus_score"], "female"))
    assert pred["bone_age"]["years"] * 12 + pred["bone_age"]["months"] == round(pred["bone_age_years"] * 12)
    assert pred["sex"] == "female" and pred["threshold"] == 0.61
    for b, r in pred["bones"].items():
        assert r["stage"] == tw3.stage_letter(int(np.argmax(r["probs"])) + 1, b)

    # .tflite: same stages and (nearly) the same probabilities, through the same CLI; the export went through the
    # gated exporter (parity checked in a child process, the main metadata record) and kept the training margin
    tfl = tmp_path / "stage.tflite"
    assert cli.main(["tw3", "export", "--model", str(keras_path), "--out", str(tfl)]) == 0
    out = capsys.readouterr().out
    assert f"margin {MARGIN:g} (from run.json)" in out and "parity: PASSED" in out
    from edge_boneage.tflite_meta import read_metadata

    main = read_metadata(tfl)
    assert main["model"]["task"] == "tw3_stage" and main["parity"]["status"] == "PASSED"
    assert main["quantization"]["mode"] == "float32" and main["extra_metadata"] == [TFLITE_META_NAME]
    assert main["preprocess"] is None  # no whole-hand contract for a region-crop model
    crop = read_metadata(tfl, TFLITE_META_NAME)["crop"]
    assert (crop["margin"], crop["margin_from"], crop["size"]) == (MARGIN, "run.json", 32)
    assert StageModel(tfl).margin == MARGIN
    assert cli.main(["tw3", "predict", str(img), "--model", str(tfl), "--boxes", str(syn / "boxes.csv"),
                     "--sex", "F", "--json"]) == 0
    lite = json.loads(capsys.readouterr().out)
    assert lite["crop"] == pred["crop"]  # margin read back from the .tflite metadata
    for b in BONES:
        assert lite["bones"][b]["stage"] == pred["bones"][b]["stage"]
        np.testing.assert_allclose(lite["bones"][b]["probs"], pred["bones"][b]["probs"], atol=1e-4)
    # and on many crops at once
    d = synth_stage_data(3, 128, 32, seed=9, margin=MARGIN)
    pk = StageModel(keras_path).predict_images(d)
    pl = StageModel(tfl).predict_images(d)
    np.testing.assert_array_equal(pk.argmax(-1), pl.argmax(-1))
    np.testing.assert_allclose(pk, pl, atol=1e-4)

    # errors are one line naming the file
    rc = cli.main(["tw3", "predict", str(syn / "images" / "0.png"), "--model", str(tfl), "--boxes",
                   str(_write_csv(tmp_path / "other.csv", [("9", b, 1, 1, 5, 5) for b in BONES])), "--sex", "M"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "other.csv: no boxes for image '0.png'" in err


def test_export_margin_must_be_known_and_agree_with_training(trained, tmp_path, capsys):
    """No default margin is ever written: tw3 export takes the run's, refuses a contradicting --margin, and needs
    --margin for a model no tw3 run.json describes; one-line errors naming the file, nothing written."""
    import shutil

    from edge_boneage import cli
    from edge_boneage.convert.export import export
    from edge_boneage.tflite_meta import read_metadata

    cfg, _ = trained
    keras_path = Path(cfg.out) / "best.keras"
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(keras_path, alone / "best.keras")
    run_json = json.loads((Path(cfg.out) / "run.json").read_text())

    def fails(model, *extra):
        tfl = tmp_path / "x.tflite"
        assert cli.main(["tw3", "export", "--model", str(model), "--out", str(tfl), *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and not tfl.exists()
        return err

    err = fails(keras_path, "--margin", "0.1")
    assert f"best.keras: trained with crop margin {MARGIN:g}" in err and "run.json" in err
    assert "no tw3 run.json next to it records the crop margin" in fails(alone / "best.keras")
    (alone / "run.json").write_text(json.dumps({"config": {"model": "mobilenetv3_large", "size": 224}}))  # age run
    assert "pass --margin" in fails(alone / "best.keras")
    (alone / "run.json").write_text("{not json")
    assert "alone/run.json: unreadable run.json" in fails(alone / "best.keras", "--margin", "0.25")
    (alone / "run.json").write_text(json.dumps({"config": {**run_json["config"], "crop": 64}}))
    assert "run crops are 64 px but best.keras takes 32 px" in fails(alone / "best.keras")
    with pytest.raises(EdgeBoneageError, match="may not replace the main record"):
        export(keras_path, tmp_path / "y.tflite", extra_metadata={"edge_boneage": {}})

    # a model outside its run folder exports with the margin given (and says so)
    (alone / "run.json").unlink()
    tfl = tmp_path / "alone.tflite"
    assert cli.main(["tw3", "export", "--model", str(alone / "best.keras"), "--out", str(tfl), "--margin", "0.3"]) == 0
    assert "margin 0.3 (from --margin)" in capsys.readouterr().out
    crop = read_metadata(tfl, TFLITE_META_NAME)["crop"]
    assert (crop["margin"], crop["margin_from"]) == (0.3, "--margin")


def test_resnext50_variant_trains_one_step(tmp_path):
    d = synth_stage_data(2, 128, 32, seed=1)
    cfg = StageTrainConfig(arch="resnext50_tw3", model_args=TINY, crop=32, n_train=2, n_val=2, epochs=1, batch=26,
                           out=str(tmp_path / "r"), verbose=0, jit_compile=False)
    s = train_stage_model(cfg, train_data=d, val_data=d)
    assert s["epochs_done"] == 1
    m = StageModel(s["best_checkpoint"])
    p = m.predict_images(d)
    assert p.shape == (2, 13, 8) and np.allclose(p.sum(-1), 1, atol=1e-5) and np.all(p[:, 1, 7] == 0)


def test_the_package_re_exports_each_modules_public_names():
    """`from edge_boneage.tw3_pipeline import X` keeps working for every public name of the split modules, and
    names the very object its owning module defines."""
    import importlib

    import edge_boneage.tw3_pipeline as pkg

    owners = ("boxes", "constants", "crops", "data", "export", "model", "prediction", "reports", "run_config", "scoring",
              "training")
    for name in owners:
        mod = importlib.import_module(f"edge_boneage.tw3_pipeline.{name}")
        for public in mod.__all__:
            if public == "parse_number":  # a helper the package's modules share, not part of its API
                continue
            assert getattr(pkg, public) is getattr(mod, public), f"{name}.{public}"
            assert public in pkg.__all__, public
    assert set(pkg.__all__) <= {n for n in dir(pkg) if not n.startswith("_")}


def test_tw3_cli_resume_refuses_changes_finished_run_and_sigterm(tmp_path, capsys):
    """`tw3 train --resume` behaves as `train --resume` (the shared run folder): a changed setting is refused in one
    line naming it; resuming a finished run says so (exit 0, no hidden link files left); SIGTERM stops like Ctrl-C
    with the resume command in the message."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from edge_boneage.cli import main
    from edge_boneage.runfolder import committed_epoch

    out = tmp_path / "run"
    base = ["tw3", "train", "--arch", "csp_resnext50_tw3", "--model-arg", "width_mult=0.25", "--model-arg",
            "depths=[1,1,1,1]", "--model-arg", "cardinality=8", "--crop", "32", "--image-size", "256", "--n-train",
            "16", "--n-val", "8", "--batch", "8", "--epochs", "1", "--verbose", "0", "--out", str(out)]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--resume", "--lr", "0.01", "--batch", "4", "--model-arg", "cardinality=4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch 8 -> 4" in err[0] and "lr 0.001 -> 0.01" in err[0], err
    assert "model_args" in err[0] and "'cardinality': 8" in err[0] and "'cardinality': 4" in err[0], err
    assert json.loads((out / "state.json").read_text())["epoch"] == 0  # the refused command changed nothing
    assert main(base + ["--resume"]) == 0
    assert "already finished its 1 epochs" in capsys.readouterr().out
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], list(out.iterdir())

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1",
           "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow")}
    r2 = tmp_path / "r2"
    argv = [sys.executable, "-m", "edge_boneage.cli", *base[:-4], "--epochs", "500", "--verbose", "0", "--out", str(r2)]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while committed_epoch(r2) < 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"edge-boneage tw3 train --resume --out {r2}" in stderr
    assert committed_epoch(r2) >= 0 and (r2 / "last.keras").is_file()


def test_tw3_train_reads_model_args_with_the_train_parser(capsys):
    """One --model-arg parser: `tw3 train` refuses a malformed one in the words of `train`, before any work."""
    from edge_boneage.cli import main
    from edge_boneage.commands.train import parse_model_args

    assert parse_model_args(["depths=[1,1,1,1]", "width_mult=0.25", "use_se=FALSE"]) == {
        "depths": [1, 1, 1, 1], "width_mult": 0.25, "use_se": False}
    for cmd in (["tw3", "train", "--out", "unused"], ["train"]):
        assert main([*cmd, "--model-arg", "cardinality"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--model-arg 'cardinality': expected key=value" in err[0], err
