"""One radiograph (``predict_image``): boxes -> 13 crops -> stage probabilities -> scores -> RUS score -> bone
age, and its human-readable form (``format_prediction``)."""

from __future__ import annotations

import time

import numpy as np

from edge_boneage import tw3
from edge_boneage.tw3_pipeline.boxes import ImageBoxes, boxes_for_image, check_boxes_in_image, read_boxes
from edge_boneage.tw3_pipeline.constants import BONES, DEFAULT_MARGIN, N_BONES, N_CLASSES
from edge_boneage.tw3_pipeline.crops import region_crops
from edge_boneage.tw3_pipeline.model import StageModel
from edge_boneage.tw3_pipeline.scoring import score_probs


def years_months(age_years: float) -> tuple[int, int]:
    months = int(round(float(age_years) * 12))
    return months // 12, months % 12


def predict_image(image_path, model, boxes, sex, *, method: str = "topn", threshold: float = tw3.DEFAULT_THRESHOLD,
                  curve: str = "tw3c", margin: float | None = None, boxes_path=None) -> dict:
    """Stages, probabilities, scores, total RUS score and bone age of one radiograph.

    `boxes`: an ImageBoxes, or a boxes file path (the entry for this image is looked up by name)."""
    from edge_boneage.io import read_image

    m = model if isinstance(model, StageModel) else StageModel(model)
    sexn = tw3.normalise_sex(sex)
    if not isinstance(boxes, ImageBoxes):
        boxes_path = boxes
        boxes = boxes_for_image(read_boxes(boxes), image_path, boxes)
    img, meta = read_image(image_path)
    check_boxes_in_image(boxes, img.shape[1], img.shape[0], image_path)
    if margin is None:  # the model's training margin (.tflite metadata, .keras run folder), else the default
        margin = m.margin if m.margin is not None else DEFAULT_MARGIN
    t0 = time.perf_counter()
    crops = region_crops(img, boxes, m.size, margin)
    probs = m.predict(crops, np.arange(N_BONES)).reshape(N_BONES, N_CLASSES)
    ms = (time.perf_counter() - t0) * 1000
    male = sexn == "male"
    scores, total, age, clamped = score_probs(probs, male, method, threshold, curve)
    bones = {}
    for i, b in enumerate(BONES):
        n = tw3.N_GRADES[b]
        p = probs[i, :n]
        g = int(np.argmax(p)) + 1
        bones[b] = {"stage": tw3.stage_letter(g, b), "grade": g, "probs": [round(float(v), 6) for v in p],
                    "score": float(scores[i])}
    y, mo = years_months(float(age))
    return {"image": str(image_path), "boxes": str(boxes_path) if boxes_path else boxes.image, "sex": sexn,
            "model": m.path, "method": method, "threshold": float(threshold) if method == "topn" else None,
            "curve": curve, "bones": bones, "rus_score": float(total), "bone_age_years": float(age),
            "bone_age": {"years": y, "months": mo}, "clamped_to_curve": bool(clamped), "latency_ms": ms,
            "crop": {"size": m.size, "margin": margin}}


def format_prediction(pred: dict) -> str:
    thr = "" if pred["threshold"] is None else ", P=%.2f" % pred["threshold"]
    lines = [f"{pred['image']}: bone age {pred['bone_age']['years']} y {pred['bone_age']['months']} m "
             f"({pred['bone_age_years']:.2f} y), TW3-C RUS score {pred['rus_score']:.1f} "
             f"({pred['method']}{thr}, {pred['sex']})"
             + ("  [clamped to the curve range]" if pred["clamped_to_curve"] else "")]
    for b, r in pred["bones"].items():
        top = sorted(range(len(r["probs"])), key=lambda k: -r["probs"][k])[:3]
        tops = ", ".join(f"{tw3.stage_letter(k + 1, b)} {r['probs'][k]:.2f}" for k in top)
        lines.append(f"    {b:7s} stage {r['stage']}  score {r['score']:7.2f}   ({tops})")
    return "\n".join(lines)


__all__ = ["format_prediction", "predict_image", "years_months"]
