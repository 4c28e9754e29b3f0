"""IoU of the hand localiser's tight box with boxes drawn by hand (benchmarks/data/hand_boxes.json).

    python -m benchmarks.hand_iou --rsna-dir ../shared/data/rsna [--model M.tflite | --native]

The boxes were drawn by eye on grid renders, independently of the localiser (see the file's "about"). The
localiser runs on each image as a model's contract frames it (default: the packaged model's; with source_size the
box is found on the reduced frame and reported in image pixels); --native runs it on the image as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BOXES = Path(__file__).resolve().parent / "data" / "hand_boxes.json"


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def measure(rsna_dir: Path, boxes: Path = BOXES, spec=None) -> dict[str, list[tuple[str, float]]]:
    """{set: [(id, IoU)]}; spec: a PreprocessSpec with crop "hand" (its frame and source_size apply), else the
    localiser on the image itself."""
    from edge_boneage.handcrop import locate_hand
    from edge_boneage.io import read_image

    out: dict[str, list[tuple[str, float]]] = {}
    for it in json.loads(boxes.read_text())["images"]:
        img, _ = read_image(rsna_dir / ("fullres" if it["set"] == "fullres" else "img100") / f"{it['id']}.png")
        if spec is not None:
            b = spec.apply_with_box(img)[1]
            tight = (b["hand_x0"], b["hand_y0"], b["hand_x1"], b["hand_y1"])
        else:
            hb = locate_hand(img)
            tight = (hb.hand_x0, hb.hand_y0, hb.hand_x1, hb.hand_y1)
        out.setdefault(it["set"], []).append((it["id"], iou(tight, it["box"])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--model", type=Path, help="whose contract frames the images (default: the packaged model)")
    ap.add_argument("--native", action="store_true", help="run the localiser on each image as it is")
    a = ap.parse_args(argv)
    spec = None
    if not a.native:
        from edge_boneage.modelfile import open_model

        path = a.model or Path(__file__).resolve().parents[1] / "edge_boneage" / "pretrained" / "boneage_age.tflite"
        spec = open_model(path).spec
        if spec.crop != "hand":
            raise SystemExit(f"{path}: its contract has no hand crop")
        print(f"contract of {path.name}: frame {spec.frame}, source_size {spec.source_size}")
    res = measure(a.rsna_dir, spec=spec)
    print(f"{'set':<8} {'n':>3} {'median IoU':>10} {'mean':>6} {'min':>6} {'IoU>=0.8':>8}  worst")
    for st, v in res.items():
        x = np.array([i for _, i in v])
        worst = ", ".join(f"{k} {i:.2f}" for k, i in sorted(v, key=lambda t: t[1])[:3])
        print(f"{st:<8} {len(x):>3} {np.median(x):>10.3f} {x.mean():>6.3f} {x.min():>6.3f} {(x >= 0.8).mean():>7.0%}  {worst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
