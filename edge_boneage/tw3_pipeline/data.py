"""Crop sets (``StageData``) for training and evaluation: from the synthetic generator (``synth_stage_data``; one
seed, disjoint image-index ranges per split) or from a data folder with user boxes (``folder_stage_data``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError, tw3
from edge_boneage.tw3_pipeline.boxes import boxes_for_image, check_boxes_in_image, parse_number, read_boxes
from edge_boneage.tw3_pipeline.constants import BONES, DEFAULT_AGE_RANGE, DEFAULT_MARGIN, N_BONES
from edge_boneage.tw3_pipeline.crops import region_crops


@dataclass
class StageData:
    """Crops of N radiographs, image-major: crop ``i * 13 + b`` is bone ``b`` of image ``i``."""

    crops: np.ndarray  # uint8 (N*13, S, S)
    boneage_months: np.ndarray  # float64 (N,)
    male: np.ndarray  # bool (N,)
    grades: np.ndarray | None  # int (N, 13), 0 = stage A .. 8 = I; None when unknown (real images)
    ids: list

    def __len__(self) -> int:
        return int(self.boneage_months.shape[0])

    @property
    def bone(self) -> np.ndarray:
        return np.tile(np.arange(N_BONES, dtype=np.int32), len(self))

    @property
    def crop_grades(self) -> np.ndarray:
        return self.grades.reshape(-1)


def synth_stage_data(n: int, image_size: int = 512, crop: int = 64, seed: int = 0, age_range=DEFAULT_AGE_RANGE,
                     start: int = 0, margin: float = DEFAULT_MARGIN) -> StageData:
    """Images ``start .. start+n-1`` of the synthetic generator, cropped with the generator's RUS boxes."""
    from edge_boneage.synth import generate_one

    n = int(n)
    crops = np.zeros((n * N_BONES, crop, crop), np.uint8)
    months = np.zeros(n, np.float64)
    male = np.zeros(n, bool)
    grades = np.zeros((n, N_BONES), np.int64)
    for j in range(n):
        child, img, boxes = generate_one(seed, start + j, image_size, tuple(age_range))
        crops[j * N_BONES : (j + 1) * N_BONES] = region_crops(img, boxes, crop, margin)
        months[j], male[j], grades[j] = child["boneage"], child["male"], child["grades"]
    return StageData(crops, months, male, grades, [f"synth{seed}-{start + j}" for j in range(n)])


def folder_stage_data(folder, crop: int, margin: float = DEFAULT_MARGIN, boxes_file=None, limit=None) -> StageData:
    """A data folder like `edge-boneage synth` writes: images/{id}.png, labels.csv (id,boneage,male), boxes
    (boxes.csv or `boxes_file`), optional stages.csv (13 grades). Works for real radiographs with user boxes."""
    from edge_boneage.io import read_image

    folder = Path(folder)
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise EdgeBoneageError(f"{labels}: not found (need id,boneage,male)")
    all_boxes = read_boxes(boxes_file or folder / "boxes.csv")
    stages = {}
    if (folder / "stages.csv").is_file():
        with open(folder / "stages.csv", newline="") as f:
            for r in csv.DictReader(f):
                stages[r["id"]] = [int(r[b]) for b in BONES]
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    if limit:
        rows = rows[: int(limit)]
    if not rows:
        raise EdgeBoneageError(f"{labels}: no data rows")
    crops, months, male, grades, ids = [], [], [], [], []
    for k, r in enumerate(rows, 1):
        where = f"{labels}: data row {k}"
        try:
            rid = r["id"].strip()
            months.append(parse_number(r["boneage"], "boneage", where))
            male.append(tw3.normalise_sex(r["male"]) == "male")
        except KeyError as exc:
            raise EdgeBoneageError(f"{labels}: missing column {exc}") from None
        candidates = [folder / "images" / f"{rid}{ext}" for ext in (".png", ".jpg", ".jpeg", ".dcm", "")]
        img_path = next((c for c in candidates if c.is_file()), None)
        if img_path is None:
            raise EdgeBoneageError(f"{where}: no image images/{rid}.png (or .jpg/.dcm)")
        img, _ = read_image(img_path)
        entry = boxes_for_image(all_boxes, img_path, boxes_file or folder / "boxes.csv")
        check_boxes_in_image(entry, img.shape[1], img.shape[0], img_path)
        crops.append(region_crops(img, entry, crop, margin))
        grades.append(stages.get(rid))
        ids.append(rid)
    g = np.asarray(grades, np.int64) if all(x is not None for x in grades) else None
    return StageData(np.concatenate(crops), np.asarray(months), np.asarray(male, bool), g, ids)


__all__ = ["StageData", "folder_stage_data", "synth_stage_data"]
