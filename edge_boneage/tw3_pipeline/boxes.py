"""RUS region boxes: the ``ImageBoxes`` record, the Pascal VOC / COCO / CSV / small-JSON readers and their checks.

Bone keys: ``edge_boneage.tw3.BONES`` (case-insensitive). Every problem is one ``EdgeBoneageError`` line naming
the file and the row / object / annotation: unknown bone, bad number, empty box, box outside the image (more than
``BOX_TOLERANCE_PX`` beyond an edge), duplicate bone, missing bones.
"""

from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.tw3_pipeline.constants import BONES

BOX_TOLERANCE_PX = 1.0

_BONE_LOOKUP = {b.lower(): b for b in BONES}


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


def parse_number(value, what: str, where: str) -> float:
    """`value` as a finite float, else one EdgeBoneageError line: "<where>: <what> ... is not a number"."""
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
        w = int(parse_number(size.findtext("width"), "width", f"{path}: <size>"))
        h = int(parse_number(size.findtext("height"), "height", f"{path}: <size>"))
    entry = ImageBoxes(name, {}, w, h, str(path))
    for k, obj in enumerate(root.findall("object"), 1):
        where = f"{path}: object {k}"
        bone = _bone_key(obj.findtext("name", ""), where)
        bb = obj.find("bndbox")
        if bb is None:
            raise EdgeBoneageError(f"{where} ({bone}): no <bndbox>")
        box = [parse_number(bb.findtext(t), t, f"{where} ({bone})") for t in ("xmin", "ymin", "xmax", "ymax")]
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
        x, y, w, h = (parse_number(v, n, f"{where} ({bone})") for v, n in zip(bb, ("x", "y", "width", "height")))
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
            _add_box(entry, bone, [parse_number(v, "coordinate", bw) for v in box], bw)
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
        box = [parse_number(row[col[k]], k, where) for k in ("x0", "y0", "x1", "y1")]
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


__all__ = ["BOX_TOLERANCE_PX", "ImageBoxes", "boxes_for_image", "check_boxes_in_image", "parse_number", "read_boxes"]
