"""TW3 RUS pipeline (seed 000, Gu, Sun, Zhang 2023): region boxes -> crops -> stage classifier -> TopN scoring
-> bone age.

Steps
-----
1. **Boxes.** The 13 RUS regions of a radiograph come from the synthetic generator (``edge-boneage synth`` writes
   ``boxes.csv``) or from the user: Pascal VOC XML (object ``name`` = bone key), COCO JSON (category ``name`` =
   bone key, ``bbox`` = [x, y, w, h]), CSV (``image,bone,x0,y0,x1,y1``; ``id`` is accepted for ``image`` and
   ``xmin,ymin,xmax,ymax`` for the corners) or a small JSON (``{"image": ..., "boxes": {bone: [x0,y0,x1,y1]}}``).
   Bone keys: ``edge_boneage.tw3.BONES`` (case-insensitive). Every problem is one ``EdgeBoneageError`` line naming
   the file and the row / object / annotation: unknown bone, bad number, empty box, box outside the image (more
   than ``BOX_TOLERANCE_PX`` beyond an edge), duplicate bone, missing bones.
2. **Crops** (``crop_region``): a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box (parts
   outside the image are 0), resized to the model's input size with cv2.INTER_AREA (``preprocess.resize_area``,
   the project's one resize rule), then ``cv2.equalizeHist`` (the paper's histogram equalisation), uint8.
   Note: pixels outside the image are 0 and equalizeHist's LUT is (cdf(v) - cdf_min) / (N - cdf_min), so zero
   padding does not change how the other pixels are mapped when the crop's darkest value is 0 anyway.
3. **Stage model**: ``csp_resnext50_tw3`` / ``resnext50_tw3`` (keras_models/resnext.py), inputs "image" uint8
   (B,S,S,1) and "bone" int32 (B,1), output "probs" (B,8) over grades B..I (ulna: 7 grades, 8th is 0).
   Trained on synthetic crops with sparse categorical cross-entropy on ``grade - 1``. Stage A (no ossification
   centre, grade 0) has no class in the paper's 8-way model: such crops are left out of training and of the
   stage accuracy (at the paper's ages, 6-15 y, the generator draws A for 0.05 % of the bones).
4. **Scoring** (``edge_boneage.tw3``): classic (argmax stage), Top2, TopN with threshold P (formula 1); the 13
   bone scores are summed and mapped to bone age on the sex's TW3-C RUS curve (monotone PCHIP).
5. **Threshold sweep**: MAE vs P on VALIDATION images (the paper's Fig. 2/3), P = the argmin per sex (the
   paper's Table 3), then the Table-4 comparison (classic / Top2 / TopN, MAE and +-1-year accuracy by sex) on
   a separate TEST split, plus the per-bone stage accuracy.

Synthetic splits come from one seed and disjoint image-index ranges: train ``[0, n_train)``, validation
``[n_train, n_train + n_val)``, test ``[n_train + n_val, n_train + n_val + n_test)``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError, tw3
from edge_boneage.fileutil import atomic_path, write_json_atomic, write_text_atomic

BONES = tw3.BONES
N_BONES = len(BONES)
N_CLASSES = 8  # model output: grades B..I
DEFAULT_MARGIN = 0.10
DEFAULT_AGE_RANGE = (6.0, 15.0)  # the paper's data set: 6-15 years
BOX_TOLERANCE_PX = 1.0
DEFAULT_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(96))  # 0.05 .. 1.00
TFLITE_META_NAME = "edge_boneage_tw3"

_BONE_LOOKUP = {b.lower(): b for b in BONES}


# ================================================================================================ boxes


@dataclass
class ImageBoxes:
    """The 13 RUS boxes of one image: ``boxes[bone] = (x0, y0, x1, y1)`` in pixels (x right, y down)."""

    image: str  # image name as written in the boxes file (file name, path or id)
    boxes: dict[str, tuple[float, float, float, float]]
    width: int | None = None
    height: int | None = None
    source: str = ""  # boxes file
    where: dict[str, str] = field(default_factory=dict)  # bone -> "data row 3 (line 4)" / "object 2" ...

    def array(self) -> np.ndarray:
        """float32 (13, 4) in BONES order."""
        return np.asarray([self.boxes[b] for b in BONES], np.float32)

    def to_dict(self) -> dict:
        return {"image": self.image, "width": self.width, "height": self.height,
                "boxes": {b: [float(v) for v in self.boxes[b]] for b in BONES if b in self.boxes}}


def _bone_key(name, where: str) -> str:
    key = _BONE_LOOKUP.get(str(name).strip().lower())
    if key is None:
        raise EdgeBoneageError(f"{where}: unknown bone {str(name)!r} (expected one of {', '.join(BONES)})")
    return key


def _num(value, what: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EdgeBoneageError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(v):
        raise EdgeBoneageError(f"{where}: {what} {value!r} is not a finite number")
    return v


def _check_box(box, where: str, width=None, height=None) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise EdgeBoneageError(f"{where}: empty box x0,y0,x1,y1 = {x0:g},{y0:g},{x1:g},{y1:g} (need x1 > x0, y1 > y0)")
    t = BOX_TOLERANCE_PX
    if x0 < -t or y0 < -t or (width is not None and x1 > width + t) or (height is not None and y1 > height + t):
        size = f"{width}x{height}" if width is not None else "the image"
        raise EdgeBoneageError(f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {size} image")
    return x0, y0, x1, y1


def _add_box(entry: ImageBoxes, bone: str, box, where: str) -> None:
    if bone in entry.boxes:
        raise EdgeBoneageError(f"{where}: duplicate box for {bone} of image {entry.image!r} "
                               f"(first at {entry.where.get(bone, '?')})")
    entry.boxes[bone] = _check_box(box, where, entry.width, entry.height)
    entry.where[bone] = where.split(": ", 1)[-1] if ": " in where else where


def _check_complete(entry: ImageBoxes, path) -> ImageBoxes:
    missing = [b for b in BONES if b not in entry.boxes]
    if missing:
        raise EdgeBoneageError(f"{path}: image {entry.image!r} misses boxes for {len(missing)} RUS bone(s): "
                               f"{', '.join(missing)}")
    return entry


def check_boxes_in_image(entry: ImageBoxes, width: int, height: int, image_path=None) -> None:
    """Raise if any box lies outside a (width x height) image (the check a CSV cannot do at parse time)."""
    for b in BONES:
        where = f"{entry.source}: {entry.where.get(b, b)}" if entry.source else b
        try:
            _check_box(entry.boxes[b], where, width, height)
        except EdgeBoneageError as exc:
            extra = f" ({image_path})" if image_path else ""
            raise EdgeBoneageError(f"{exc}{extra}") from None


def _read_voc(path: Path) -> dict[str, ImageBoxes]:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise EdgeBoneageError(f"{path}: not a readable Pascal VOC XML file ({exc})") from None
    if root.tag != "annotation":
        raise EdgeBoneageError(f"{path}: root element is <{root.tag}>, expected <annotation> (Pascal VOC)")
    name = (root.findtext("filename") or root.findtext("path") or path.stem).strip()
    size = root.find("size")
    w = h = None
    if size is not None:
        w = int(_num(size.findtext("width"), "width", f"{path}: <size>"))
        h = int(_num(size.findtext("height"), "height", f"{path}: <size>"))
    entry = ImageBoxes(name, {}, w, h, str(path))
    for k, obj in enumerate(root.findall("object"), 1):
        where = f"{path}: object {k}"
        bone = _bone_key(obj.findtext("name", ""), where)
        bb = obj.find("bndbox")
        if bb is None:
            raise EdgeBoneageError(f"{where} ({bone}): no <bndbox>")
        box = [_num(bb.findtext(t), t, f"{where} ({bone})") for t in ("xmin", "ymin", "xmax", "ymax")]
        _add_box(entry, bone, box, f"{where} ({bone})")
    return {name: _check_complete(entry, path)}


def _read_coco(path: Path, doc: dict) -> dict[str, ImageBoxes]:
    cats = {}
    for k, c in enumerate(doc.get("categories") or [], 1):
        cats[c.get("id")] = c.get("name")
    images = {}
    for k, im in enumerate(doc.get("images") or [], 1):
        if "id" not in im or "file_name" not in im:
            raise EdgeBoneageError(f"{path}: images[{k - 1}] needs 'id' and 'file_name'")
        w = im.get("width")
        h = im.get("height")
        images[im["id"]] = ImageBoxes(str(im["file_name"]), {}, None if w is None else int(w),
                                      None if h is None else int(h), str(path))
    if not images:
        raise EdgeBoneageError(f"{path}: COCO file lists no images")
    for k, ann in enumerate(doc.get("annotations") or []):
        where = f"{path}: annotations[{k}]" + (f" (id {ann['id']})" if "id" in ann else "")
        if ann.get("image_id") not in images:
            raise EdgeBoneageError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if ann.get("category_id") not in cats:
            raise EdgeBoneageError(f"{where}: category_id {ann.get('category_id')!r} is not in 'categories'")
        bone = _bone_key(cats[ann["category_id"]], where)
        bb = ann.get("bbox")
        if not isinstance(bb, (list, tuple)) or len(bb) != 4:
            raise EdgeBoneageError(f"{where} ({bone}): bbox must be [x, y, width, height], got {bb!r}")
        x, y, w, h = (_num(v, n, f"{where} ({bone})") for v, n in zip(bb, ("x", "y", "width", "height")))
        _add_box(images[ann["image_id"]], bone, (x, y, x + w, y + h), f"{where} ({bone})")
    return {e.image: _check_complete(e, path) for e in images.values()}


def _read_simple_json(path: Path, doc) -> dict[str, ImageBoxes]:
    items = doc if isinstance(doc, list) else [doc]
    out = {}
    for k, item in enumerate(items):
        where = f"{path}: item {k}" if isinstance(doc, list) else str(path)
        if not isinstance(item, dict):
            raise EdgeBoneageError(f"{where}: expected an object with 'boxes'")
        boxes = item.get("boxes", item if "image" not in item else None)
        if not isinstance(boxes, dict):
            raise EdgeBoneageError(f"{where}: no 'boxes' object (bone -> [x0, y0, x1, y1])")
        name = str(item.get("image", ""))
        entry = ImageBoxes(name, {}, item.get("width"), item.get("height"), str(path))
        for bone_name, box in boxes.items():
            if bone_name in ("image", "width", "height"):
                continue
            bw = f"{where}: boxes[{bone_name!r}]"
            bone = _bone_key(bone_name, bw)
            if not isinstance(box, (list, tuple)) or len(box) != 4:
                raise EdgeBoneageError(f"{bw}: expected [x0, y0, x1, y1], got {box!r}")
            _add_box(entry, bone, [_num(v, "coordinate", bw) for v in box], bw)
        if name in out:
            raise EdgeBoneageError(f"{where}: image {name!r} listed twice")
        out[name] = _check_complete(entry, path)
    return out


_CSV_ALIASES = {"image": ("image", "id", "file", "filename", "file_name", "path"), "bone": ("bone", "name", "label"),
                "x0": ("x0", "xmin"), "y0": ("y0", "ymin"), "x1": ("x1", "xmax"), "y1": ("y1", "ymax")}


def _read_csv(path: Path) -> dict[str, ImageBoxes]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeBoneageError(f"{path}: cannot read CSV ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise EdgeBoneageError(f"{path}: empty CSV (expected header image,bone,x0,y0,x1,y1)")
    norm = [h.strip().lower() for h in header]
    col = {}
    for key, names in _CSV_ALIASES.items():
        hit = [i for i, h in enumerate(norm) if h in names]
        if not hit:
            raise EdgeBoneageError(f"{path}: header {','.join(header)} has no '{key}' column "
                                   "(expected image,bone,x0,y0,x1,y1)")
        col[key] = hit[0]
    out: dict[str, ImageBoxes] = {}
    data_row = 0
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        data_row += 1
        where = f"{path}: data row {data_row} (line {reader.line_num})"
        if len(row) < len(header):
            raise EdgeBoneageError(f"{where}: {len(row)} fields, expected {len(header)}")
        name = row[col["image"]].strip()
        if not name:
            raise EdgeBoneageError(f"{where}: empty image name")
        bone = _bone_key(row[col["bone"]], where)
        box = [_num(row[col[k]], k, where) for k in ("x0", "y0", "x1", "y1")]
        entry = out.setdefault(name, ImageBoxes(name, {}, None, None, str(path)))
        _add_box(entry, bone, box, where)
    if not out:
        raise EdgeBoneageError(f"{path}: no data rows")
    return {k: _check_complete(v, path) for k, v in out.items()}


def read_boxes(path) -> dict[str, ImageBoxes]:
    """All images' RUS boxes in a VOC .xml, COCO/simple .json or .csv file, keyed by image name."""
    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: boxes file not found")
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return _read_voc(path)
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EdgeBoneageError(f"{path}: not valid JSON ({exc})".replace("\n", " ")) from None
        if isinstance(doc, dict) and "annotations" in doc and "images" in doc:
            return _read_coco(path, doc)
        return _read_simple_json(path, doc)
    raise EdgeBoneageError(f"{path}: unknown boxes format {suffix!r} (use .xml VOC, .json COCO, or .csv)")


def boxes_for_image(all_boxes: dict[str, ImageBoxes], image_path, boxes_path=None) -> ImageBoxes:
    """The entry of `all_boxes` for an image: by exact name, path, file name or stem (synth ids); a file with one
    image whose name is empty or matches nothing is used for any image only if it has no name."""
    p = Path(image_path)
    for key in (str(image_path), p.name, p.stem):
        if key in all_boxes:
            return all_boxes[key]
    by_name = {Path(k).name: v for k, v in all_boxes.items()}
    by_stem = {Path(k).stem: v for k, v in all_boxes.items()}
    hit = by_name.get(p.name) or by_stem.get(p.stem)
    if hit is not None:
        return hit
    if len(all_boxes) == 1 and next(iter(all_boxes)) == "":
        return next(iter(all_boxes.values()))
    names = list(all_boxes)[:3]
    if boxes_path is None:
        boxes_path = next((e.source for e in all_boxes.values() if e.source), "boxes file")
    raise EdgeBoneageError(f"{boxes_path}: no boxes for image {p.name!r} ({len(all_boxes)} image(s) listed, "
                           f"e.g. {', '.join(map(repr, names))})")


# ================================================================================================ crops


def crop_window(box, margin: float = DEFAULT_MARGIN) -> tuple[int, int, int]:
    """(ox, oy, side): the integer square window of a box (side = max(w, h) * (1 + 2 * margin), centred)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(2, int(round(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * float(margin)))))
    ox = int(math.floor(0.5 * (x0 + x1) - side / 2.0 + 0.5))
    oy = int(math.floor(0.5 * (y0 + y1) - side / 2.0 + 0.5))
    return ox, oy, side


def crop_region(image: np.ndarray, box, size: int, margin: float = DEFAULT_MARGIN, equalize: bool = True) -> np.ndarray:
    """One RUS crop: square window around `box` (zero outside the image), INTER_AREA to size x size, equalizeHist."""
    from edge_boneage.preprocess import equalize_hist, resize_area

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or img.dtype != np.uint8:
        raise EdgeBoneageError(f"crop_region: expected a 2-D uint8 grey image, got {img.dtype} {img.shape}")
    ox, oy, side = crop_window(box, margin)
    h, w = img.shape
    sq = np.zeros((side, side), np.uint8)
    ax0, ay0, ax1, ay1 = max(ox, 0), max(oy, 0), min(ox + side, w), min(oy + side, h)
    if ax1 > ax0 and ay1 > ay0:
        sq[ay0 - oy : ay1 - oy, ax0 - ox : ax1 - ox] = img[ay0:ay1, ax0:ax1]
    out = resize_area(sq, int(size))
    return equalize_hist(out) if equalize else out


def region_crops(image: np.ndarray, boxes, size: int, margin: float = DEFAULT_MARGIN, equalize: bool = True) -> np.ndarray:
    """uint8 (13, size, size): the RUS crops of an image in BONES order (`boxes`: ImageBoxes, dict or (13, 4))."""
    if isinstance(boxes, ImageBoxes):
        boxes = boxes.array()
    elif isinstance(boxes, dict):
        boxes = [boxes[b] for b in BONES]
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (N_BONES, 4):
        raise EdgeBoneageError(f"expected {N_BONES} boxes of 4 numbers, got shape {boxes.shape}")
    return np.stack([crop_region(image, b, size, margin, equalize) for b in boxes])


# ================================================================================================ data


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
            months.append(_num(r["boneage"], "boneage", where))
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


# ================================================================================================ models


class StageModel:
    """A .keras (safe_mode) or .tflite stage classifier: ``predict(crops (N,S,S), bones (N,)) -> probs (N, 8)``."""

    def __init__(self, model, num_threads: int = 1):
        self.meta: dict = {}
        if not isinstance(model, (str, os.PathLike)):  # an in-memory Keras model
            self.path, self.format, self._keras, self._lite = "<keras model>", "keras", model, None
        else:
            path = Path(model)
            if not path.is_file():
                raise EdgeBoneageError(f"{path}: no such model file")
            self.path = str(path)
            if path.suffix == ".tflite":
                from edge_boneage.runtime import LiteRTModel
                from edge_boneage.tflite_meta import read_metadata

                self.format, self._keras = "tflite", None
                self._lite = LiteRTModel(path, num_threads=num_threads)
                self.meta = read_metadata(path, TFLITE_META_NAME) or {}
            elif path.suffix == ".keras":
                from edge_boneage.modelfile import load_model

                self.format, self._lite = "keras", None
                self._keras = load_model(path)
            else:
                raise EdgeBoneageError(f"{path}: unknown model format (use .keras or .tflite)")
        if self._lite is not None:
            det = self._lite.input_details()
            if "image" not in det:
                raise EdgeBoneageError(f"{self.path}: inputs are {self._lite.input_names}; expected 'image' (+ 'bone')")
            self.size = int(list(det["image"].get("shape_signature", det["image"]["shape"]))[1])
            self.input_names = set(det)
        else:
            from edge_boneage.train import model_input_names, model_input_size

            self.size = model_input_size(self._keras)
            self.input_names = set(model_input_names(self._keras))
        self.shared = "bone" in self.input_names

    def predict(self, crops: np.ndarray, bones, batch: int = 128) -> np.ndarray:
        crops = np.asarray(crops, np.uint8)
        if crops.ndim == 3:
            crops = crops[..., None]
        if crops.shape[1] != self.size:
            raise EdgeBoneageError(f"{self.path}: model input is {self.size}x{self.size}, crops are "
                                   f"{crops.shape[1]}x{crops.shape[2]}")
        bones = np.asarray(bones, np.int32).reshape(-1, 1)
        if not self.shared:
            raise EdgeBoneageError(f"{self.path}: a per-bone model (no 'bone' input); the pipeline needs the "
                                   "shared-backbone stage model")
        outs = []
        for i in range(0, crops.shape[0], batch):
            x = {"image": crops[i : i + batch], "bone": bones[i : i + batch]}
            if self._lite is not None:
                out = self._lite(x)
                probs = out["probs"] if "probs" in out else next(iter(out.values()))
            else:
                out = self._keras.predict_on_batch(x)
                probs = out["probs"] if isinstance(out, dict) else out
            outs.append(np.asarray(probs, np.float64))
        return np.concatenate(outs).reshape(-1, N_CLASSES)

    def predict_images(self, data: StageData, batch: int = 128) -> np.ndarray:
        """(N, 13, 8) stage probabilities of every image of `data`."""
        return self.predict(data.crops, data.bone, batch).reshape(len(data), N_BONES, N_CLASSES)


def export_stage_tflite(keras_path, out_path, margin: float = DEFAULT_MARGIN) -> Path:
    """.keras stage model -> float32 builtin-only .tflite with the crop recipe stored as metadata."""
    from edge_boneage.convert.litert import export_litert
    from edge_boneage.fileutil import write_bytes_atomic
    from edge_boneage.tflite_meta import add_metadata
    from edge_boneage.modelfile import load_model

    model = load_model(keras_path)
    out = export_litert(model, out_path)
    record = {"task": "tw3_stage", "bones": list(BONES), "grades": "B..I (8; ulna 7)",
              "crop": {"margin": float(margin), "resize": "cv2.INTER_AREA", "enhance": "cv2.equalizeHist",
                       "size": int(model.inputs[0].shape[1])}}
    write_bytes_atomic(out, add_metadata(Path(out).read_bytes(), record, TFLITE_META_NAME))
    return Path(out)


# ================================================================================================ scoring


def bone_probs(probs: np.ndarray) -> dict[str, np.ndarray]:
    """(..., 13, 8) model probabilities -> {bone: (..., n_grades)} (the ulna's masked 8th grade dropped, so the
    vectors have the paper's grades-1..n layout that edge_boneage.tw3 expects)."""
    p = np.asarray(probs, np.float64)
    if p.shape[-2:] != (N_BONES, N_CLASSES):
        raise EdgeBoneageError(f"expected stage probabilities (..., {N_BONES}, {N_CLASSES}), got {p.shape}")
    return {b: p[..., i, : tw3.N_GRADES[b]] for i, b in enumerate(BONES)}


def bone_scores(probs, male, method: str = "topn", threshold: float = tw3.DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-bone TW3-C RUS scores (..., 13) from (..., 13, 8) probabilities; `male` bool per image (or scalar)."""
    bp = bone_probs(probs)
    batch = np.asarray(probs).shape[:-2]
    is_male = np.broadcast_to(np.asarray(male, bool), batch)
    cols = []
    for b in BONES:
        sm = tw3.bone_score(bp[b], b, "male", method, threshold)
        sf = tw3.bone_score(bp[b], b, "female", method, threshold)
        cols.append(np.where(is_male, sm, sf))
    return np.stack(cols, axis=-1)


def score_probs(probs, male, method: str = "topn", threshold: float = tw3.DEFAULT_THRESHOLD, curve: str = "tw3c"):
    """(bone scores (..., 13), total RUS score (...), bone age years (...), clamped flags (...))."""
    s = bone_scores(probs, male, method, threshold)
    total = s.sum(axis=-1)
    age, flags = tw3.score_to_age(total, np.broadcast_to(np.asarray(male, bool), total.shape), curve=curve,
                                  return_flags=True)
    return s, total, np.asarray(age), np.asarray(flags)


def _metrics(pred_years, true_years) -> dict:
    err = np.asarray(pred_years, np.float64) - np.asarray(true_years, np.float64)
    n = int(err.size)
    if n == 0:
        return {"n": 0, "mae_years": None, "acc_1y": None, "bias_years": None}
    return {"n": n, "mae_years": float(np.abs(err).mean()), "acc_1y": float((np.abs(err) <= 1.0).mean()),
            "bias_years": float(err.mean())}


def threshold_sweep(probs, true_years, male, thresholds=DEFAULT_THRESHOLDS, curve: str = "tw3c") -> dict:
    """MAE (years) of TopN vs threshold P, per sex and overall; ``best`` = argmin P (the smallest P on ties)."""
    thr = [float(t) for t in thresholds]
    true_years = np.asarray(true_years, np.float64)
    male = np.asarray(male, bool)
    groups = {"male": male, "female": ~male, "all": np.ones_like(male)}
    mae = {g: [] for g in groups}
    for t in thr:
        _, _, age, _ = score_probs(probs, male, "topn", t, curve)
        err = np.abs(age - true_years)
        for g, m in groups.items():
            mae[g].append(float(err[m].mean()) if m.any() else None)
    best = {}
    for g, vals in mae.items():
        ok = [(v, i) for i, v in enumerate(vals) if v is not None]
        if ok:
            v, i = min(ok)
            best[g] = {"threshold": thr[i], "mae_years": v}
    return {"thresholds": thr, "mae_years": mae, "best": best, "n": {g: int(m.sum()) for g, m in groups.items()},
            "curve": curve}


def plot_sweep(sweep: dict, path, title: str = "TopN threshold sweep (validation)") -> None:
    """MAE vs P per sex (the paper's Fig. 2/3) as a PNG, argmin marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    colors = {"male": "tab:blue", "female": "tab:red", "all": "0.4"}
    for g in ("male", "female", "all"):
        vals = sweep["mae_years"].get(g)
        if not vals or all(v is None for v in vals):
            continue
        y = [np.nan if v is None else v for v in vals]
        ax.plot(sweep["thresholds"], y, color=colors[g], lw=1.2 if g != "all" else 0.8,
                ls="-" if g != "all" else "--", label=f"{g} (n={sweep['n'][g]})")
        if g in sweep["best"]:
            b = sweep["best"][g]
            ax.plot([b["threshold"]], [b["mae_years"]], "o", color=colors[g], ms=5)
            if g == "all":
                continue
            ax.annotate(f"P={b['threshold']:.2f}\n{b['mae_years']:.3f} y", (b["threshold"], b["mae_years"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=7, color=colors[g])
    ax.set_xlabel("threshold P")
    ax.set_ylabel("MAE (years)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def method_table(probs, true_years, male, thresholds: dict | float, curve: str = "tw3c") -> dict:
    """Table 4: {method: {sex: {n, mae_years, acc_1y, bias_years}}} for classic, Top2 and TopN (per-sex P)."""
    true_years = np.asarray(true_years, np.float64)
    male = np.asarray(male, bool)
    if not isinstance(thresholds, dict):
        thresholds = {"male": float(thresholds), "female": float(thresholds)}
    table = {}
    for method in tw3.METHODS:
        row = {}
        pred = np.zeros_like(true_years)
        for sex, m in (("male", male), ("female", ~male)):
            if m.any():
                _, _, pred[m], _ = score_probs(probs[m], True if sex == "male" else False, method,
                                               thresholds.get(sex, tw3.DEFAULT_THRESHOLD), curve)
            row[sex] = _metrics(pred[m], true_years[m])
        row["all"] = _metrics(pred, true_years)
        table[method] = row
    return table


def stage_accuracy(probs, grades) -> dict:
    """Per-bone stage accuracy of argmax vs the true grade (stage-A crops excluded): exact and within 1 stage."""
    pred = np.asarray(probs).argmax(-1) + 1  # (N, 13) grades 1..8
    grades = np.asarray(grades)
    out = {}
    for i, b in enumerate(BONES):
        keep = grades[:, i] > 0
        d = np.abs(pred[keep, i] - grades[keep, i])
        out[b] = {"n": int(keep.sum()), "excluded_stage_a": int((~keep).sum()),
                  "acc": float((d == 0).mean()) if keep.any() else None,
                  "acc_pm1": float((d <= 1).mean()) if keep.any() else None}
    keep = grades > 0
    d = np.abs(pred - grades)[keep]
    out["all"] = {"n": int(keep.sum()), "excluded_stage_a": int((~keep).sum()),
                  "acc": float((d == 0).mean()) if d.size else None,
                  "acc_pm1": float((d <= 1).mean()) if d.size else None}
    return out


def oracle_table(grades, true_years, male, curve: str = "tw3c") -> dict:
    """MAE of the TRUE stages (classic scoring of the generator's grades): the floor any stage model can reach."""
    grades = np.asarray(grades)
    male = np.asarray(male, bool)
    total = np.array([tw3.total_score(g, "male" if m else "female") for g, m in zip(grades, male)])
    age = tw3.score_to_age(total, male, curve=curve)
    return {"male": _metrics(age[male], np.asarray(true_years)[male]),
            "female": _metrics(age[~male], np.asarray(true_years)[~male]),
            "all": _metrics(age, true_years)}


# ================================================================================================ reports


def _f(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def report_markdown(report: dict) -> str:
    """Markdown tables: threshold choice, Table-4-style comparison, per-bone stage accuracy."""
    lines = []
    meta = report.get("meta", {})
    if meta.get("model"):
        lines.append(f"Model: `{meta['model']}`" + (f" ({meta.get('arch')})" if meta.get("arch") else ""))
        lines.append("")
    sw = report.get("sweep")
    if sw:
        lines.append(f"Threshold P chosen on VALIDATION (n = {sw['n']['male']} male, {sw['n']['female']} female):")
        lines.append("")
        lines.append("| group | P | validation MAE (years) |")
        lines.append("|---|---|---|")
        for g in ("male", "female", "all"):
            if g in sw["best"]:
                lines.append(f"| {g} | {sw['best'][g]['threshold']:.2f} | {sw['best'][g]['mae_years']:.4f} |")
        lines.append("")
    t4 = report.get("table4")
    if t4:
        lines.append("Bone age on the TEST split (Table-4 style; MAE in years, +-1 y = share within one year):")
        lines.append("")
        lines.append("| method | male MAE | male +-1 y | female MAE | female +-1 y | all MAE | all +-1 y |")
        lines.append("|---|---|---|---|---|---|---|")
        names = {"classic": "TW3-C RUS (classic)", "top2": "Top2 TW3-C RUS", "topn": "TopN TW3-C RUS",
                 "oracle": "true stages (floor)"}
        rows = dict(t4)
        if report.get("oracle"):
            rows["oracle"] = report["oracle"]
        for mth, row in rows.items():
            cells = []
            for g in ("male", "female", "all"):
                r = row.get(g, {})
                cells += [_f(r.get("mae_years")), _f(r.get("acc_1y") and 100 * r["acc_1y"], ".1f") + " %"]
            lines.append(f"| {names.get(mth, mth)} | " + " | ".join(cells) + " |")
        n = t4["classic"]
        lines.append("")
        lines.append(f"n = {n['male']['n']} male, {n['female']['n']} female test images.")
        lines.append("")
    sa = report.get("stage_accuracy")
    if sa:
        lines.append("Stage accuracy per bone on the TEST split (argmax vs true grade; stage-A crops excluded):")
        lines.append("")
        lines.append("| bone | n | exact | within 1 stage |")
        lines.append("|---|---|---|---|")
        for b in (*BONES, "all"):
            r = sa[b]
            lines.append(f"| {b} | {r['n']} | {_f(r['acc'] and 100 * r['acc'], '.1f')} % | "
                         f"{_f(r['acc_pm1'] and 100 * r['acc_pm1'], '.1f')} % |")
        lines.append("")
    return "\n".join(lines)


def evaluate(model, val: StageData, test: StageData, out_dir=None, *, thresholds=DEFAULT_THRESHOLDS,
             curve: str = "tw3c", per_sex: bool = True, meta: dict | None = None, batch: int = 128) -> dict:
    """Sweep P on `val`, then Table 4 + stage accuracy on `test`; writes report.json, report.md, sweep.png."""
    m = model if isinstance(model, StageModel) else StageModel(model)
    t0 = time.time()
    pv = m.predict_images(val, batch)
    pt = m.predict_images(test, batch)
    secs = time.time() - t0
    sweep = threshold_sweep(pv, val.boneage_months / 12.0, val.male, thresholds, curve)
    chosen = ({s: sweep["best"][s]["threshold"] for s in ("male", "female") if s in sweep["best"]} if per_sex
              else {s: sweep["best"]["all"]["threshold"] for s in ("male", "female")})
    report = {"meta": {"model": m.path, "format": m.format, "crop": m.size, "curve": curve, "per_sex_threshold": per_sex,
                       "n_val": len(val), "n_test": len(test), "predict_seconds": secs, **(meta or {})},
              "sweep": sweep, "thresholds_used": chosen,
              "table4": method_table(pt, test.boneage_months / 12.0, test.male, chosen, curve)}
    if test.grades is not None:
        report["stage_accuracy"] = stage_accuracy(pt, test.grades)
        report["oracle"] = oracle_table(test.grades, test.boneage_months / 12.0, test.male, curve)
    if out_dir is not None:
        out = Path(out_dir)
        name = (meta or {}).get("arch") or Path(m.path).name
        plot_sweep(sweep, out / "sweep.png", title=f"TopN threshold sweep on validation ({name})")
        write_text_atomic(out / "report.md", report_markdown(report) + "\n")
        report["files"] = {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
                           "sweep_png": str(out / "sweep.png")}
        write_json_atomic(out / "report.json", report)
    return report


# ================================================================================================ predict


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
    if margin is None:
        margin = float(m.meta.get("crop", {}).get("margin", DEFAULT_MARGIN))
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


# ================================================================================================ training


@dataclass
class StageTrainConfig:
    arch: str = "csp_resnext50_tw3"
    model_args: dict = field(default_factory=dict)
    crop: int = 64
    margin: float = DEFAULT_MARGIN
    image_size: int = 512
    n_train: int = 800
    n_val: int = 200
    n_test: int = 200  # not used for training; recorded so `evaluate --run` finds the test range
    seed: int = 0
    age_range: tuple = DEFAULT_AGE_RANGE
    epochs: int = 10
    batch: int = 32
    lr: float = 1e-3
    jit_compile: bool | str = "auto"  # Keras compile(jit_compile=...); False skips XLA (faster start, tests)
    time_budget_s: float | None = None  # stop after the epoch that would overrun this (per invocation)
    out: str = "runs/tw3"
    resume: bool = False
    verbose: int = 2

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["age_range"] = list(self.age_range)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "StageTrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        c = cls(**{k: v for k, v in d.items() if k in names})
        c.age_range = tuple(c.age_range)
        return c

    def split(self, which: str) -> tuple[int, int]:
        """(start, n) of the synthetic 'train' / 'val' / 'test' image range."""
        return {"train": (0, self.n_train), "val": (self.n_train, self.n_val),
                "test": (self.n_train + self.n_val, self.n_test)}[which]

    def data(self, which: str) -> StageData:
        start, n = self.split(which)
        return synth_stage_data(n, self.image_size, self.crop, self.seed, self.age_range, start, self.margin)


def config_from_run(run_dir) -> StageTrainConfig:
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise EdgeBoneageError(f"{p}: no run.json (not a tw3 training run folder)")
    return StageTrainConfig.from_json(json.loads(p.read_text())["config"])


def _fit_arrays(data: StageData):
    """Model inputs/targets without stage-A crops: ({"image", "bone"}, grade-1)."""
    g = data.crop_grades
    keep = g > 0
    return {"image": data.crops[keep][..., None], "bone": data.bone[keep][:, None]}, (g[keep] - 1).astype(np.int32), int((~keep).sum())


def _batches_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Shuffled batches of in-memory arrays; the order of epoch e is a function of (seed, e) only."""

        def __init__(self, x, y, batch, seed, shuffle=True, epoch=0):
            super().__init__()
            self.x, self.y, self.batch, self.seed, self.shuffle = x, y, int(batch), int(seed), shuffle
            self.set_epoch(epoch)

        def set_epoch(self, epoch):
            n = self.y.shape[0]
            self.order = np.random.default_rng([self.seed, int(epoch)]).permutation(n) if self.shuffle else np.arange(n)

        def __len__(self):
            return math.ceil(self.y.shape[0] / self.batch)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * self.batch : (i + 1) * self.batch])
            return {k: v[idx] for k, v in self.x.items()}, {"probs": self.y[idx]}

    return ArrayBatches


def _checkpointer(out: Path, state: dict, t_start: float, budget: float | None, history: list):
    """Per-epoch commit with the guarantees of edge_boneage.train (checkpoint, fsynced CSV row, state.json as
    the commit point, last/best links), monitoring val_loss; optionally stops before the time budget runs out."""
    import keras

    from edge_boneage.train import _read_csv_rows, save_model_atomic

    class StageCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.state = dict(state)
            self.t_epoch = None
            self.durations = []
            self.stopped_by_budget = False

        def on_epoch_begin(self, epoch, logs=None):
            self.t_epoch = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            ckpt = out / "checkpoints" / f"epoch-{epoch:04d}.keras"
            save_model_atomic(self.model, ckpt)
            log_path = out / "log.csv"
            header, _ = _read_csv_rows(log_path)
            row = {"epoch": epoch, **dict(sorted(logs.items())), "seconds": time.time() - self.t_epoch}
            if not header:
                header = list(row)
            new = not log_path.exists() or log_path.stat().st_size == 0
            with open(log_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
                if new:
                    w.writeheader()
                w.writerow(row)
                f.flush()
                os.fsync(f.fileno())
            val = logs.get("val_loss", logs.get("loss"))
            st = dict(self.state)
            st.update({"epoch": epoch, "checkpoint": ckpt.name, "time": time.time()})
            if val is not None and (st.get("best_val_loss") is None or val < st["best_val_loss"]):
                st["best_val_loss"], st["best_epoch"] = val, epoch
                st["best_val_accuracy"] = logs.get("val_accuracy")
            write_json_atomic(out / "state.json", st)  # <- the commit
            self.state = st
            _after_commit(out, st)
            history.append(row)
            self.durations.append(time.time() - self.t_epoch)
            if budget is not None:
                elapsed = time.time() - t_start
                if elapsed + float(np.mean(self.durations)) > budget:
                    self.model.stop_training = True
                    self.stopped_by_budget = True

    return StageCheckpoint()


def _after_commit(out: Path, st: dict) -> None:
    from edge_boneage.train import _link_atomic

    ckpt = out / "checkpoints" / st["checkpoint"]
    _link_atomic(ckpt, out / "last.keras")
    if st.get("best_epoch") == st["epoch"]:
        _link_atomic(ckpt, out / "best.keras")
    for old in (out / "checkpoints").glob("epoch-*.keras"):
        if old.name != ckpt.name:
            old.unlink(missing_ok=True)


def train_stage_model(config: StageTrainConfig, train_data: StageData | None = None,
                      val_data: StageData | None = None) -> dict:
    """Train (or resume) a TW3 stage classifier on synthetic crops; returns a summary dict (also in run.json).

    Files in ``config.out``: run.json, log.csv, state.json, checkpoints/, last.keras, best.keras (lowest
    validation loss), val_stage_accuracy.json. ``resume=True`` continues from state.json (only ``epochs`` and
    ``time_budget_s`` may change)."""
    t_start = time.time()
    out = Path(config.out)
    state_path = out / "state.json"
    state: dict = {}
    if config.resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        saved = json.loads((out / "run.json").read_text())["config"]
        config = StageTrainConfig.from_json({**saved, "epochs": max(config.epochs, int(saved["epochs"])),
                                             "time_budget_s": config.time_budget_s, "out": str(out), "resume": True,
                                             "verbose": config.verbose})
    elif state_path.is_file():
        raise EdgeBoneageError(f"{out}: already holds a tw3 training run (state.json); pass --resume or another --out")
    if config.batch < 1 or config.epochs < 1 or config.n_train < 1 or config.n_val < 1:
        raise EdgeBoneageError("batch, epochs, n_train and n_val must be >= 1")
    if config.arch not in ("csp_resnext50_tw3", "resnext50_tw3"):
        raise EdgeBoneageError(f"unknown stage model {config.arch!r}: use csp_resnext50_tw3 or resnext50_tw3")
    out.mkdir(parents=True, exist_ok=True)

    import keras

    from edge_boneage.train import _truncate_log, import_custom_objects, load_model
    from keras_models.registry import build_model

    keras.utils.set_random_seed(config.seed)
    t0 = time.time()
    train_data = train_data or config.data("train")
    val_data = val_data or config.data("val")
    data_seconds = time.time() - t0
    xt, yt, drop_t = _fit_arrays(train_data)
    xv, yv, drop_v = _fit_arrays(val_data)

    initial_epoch = 0
    if state:
        model = load_model(out / "checkpoints" / state["checkpoint"])
        initial_epoch = int(state["epoch"]) + 1
        _truncate_log(out / "log.csv", int(state["epoch"]))
        _after_commit(out, state)
    else:
        import_custom_objects()
        model = build_model(config.arch, input_size=config.crop, **config.model_args)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.lr),
                      loss={"probs": keras.losses.SparseCategoricalCrossentropy()},
                      metrics={"probs": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
                      jit_compile=config.jit_compile)
        for stale in ("log.csv", "last.keras", "best.keras"):
            (out / stale).unlink(missing_ok=True)

    run_info = {"config": config.to_json(), "model_params": int(model.count_params()),
                "n_train_crops": int(yt.size), "n_val_crops": int(yv.size),
                "stage_a_crops_dropped": {"train": drop_t, "val": drop_v}, "data_seconds": data_seconds,
                "keras": keras.__version__, "backend": keras.backend.backend(), "started": time.time()}
    if state:
        prev = json.loads((out / "run.json").read_text())
        run_info["resumes"] = prev.get("resumes", []) + [{"at_epoch": initial_epoch, "time": time.time()}]
    write_json_atomic(out / "run.json", run_info)

    Batches = _batches_class()
    tr = Batches(xt, yt, config.batch, config.seed, True, initial_epoch)
    va = Batches(xv, yv, max(config.batch, 64), config.seed, False)

    class _EpochSeed(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            tr.set_epoch(epoch)

    history: list = []
    budget = config.time_budget_s
    cb = _checkpointer(out, state, t_start, budget, history)
    t_fit = time.time()
    if initial_epoch < config.epochs:
        model.fit(tr, validation_data=va, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=[_EpochSeed(), cb], verbose=config.verbose)
    fit_seconds = time.time() - t_fit
    final = json.loads(state_path.read_text()) if state_path.is_file() else {}
    best = out / "best.keras"
    val_acc = None
    if best.is_file():
        sm = StageModel(best)
        val_acc = stage_accuracy(sm.predict_images(val_data), val_data.grades)
        write_json_atomic(out / "val_stage_accuracy.json", val_acc)
    summary = {"out": str(out), "epochs_done": int(final.get("epoch", -1)) + 1, "initial_epoch": initial_epoch,
               "best_epoch": final.get("best_epoch"), "best_val_loss": final.get("best_val_loss"),
               "best_checkpoint": str(best) if best.is_file() else None, "fit_seconds": fit_seconds,
               "data_seconds": data_seconds, "stopped_by_time_budget": cb.stopped_by_budget,
               "val_stage_accuracy": val_acc["all"] if val_acc else None, "history": history}
    run_info.update({"finished": time.time(), "result": {k: v for k, v in summary.items() if k != "history"}})
    write_json_atomic(out / "run.json", run_info)
    return summary


__all__ = ["BONES", "DEFAULT_AGE_RANGE", "DEFAULT_MARGIN", "DEFAULT_THRESHOLDS", "ImageBoxes", "StageData",
           "StageModel", "StageTrainConfig", "bone_probs", "bone_scores", "boxes_for_image", "check_boxes_in_image",
           "config_from_run", "crop_region", "crop_window", "evaluate", "export_stage_tflite", "folder_stage_data",
           "format_prediction", "method_table", "oracle_table", "plot_sweep", "predict_image", "read_boxes",
           "region_crops", "report_markdown", "score_probs", "stage_accuracy", "synth_stage_data",
           "threshold_sweep", "train_stage_model", "years_months"]
