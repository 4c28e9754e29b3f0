"""IoU of the hand localiser's tight box with boxes drawn by hand (benchmarks/data/hand_boxes.json).

    python -m benchmarks.hand_iou --rsna-dir ../shared/data/rsna

The boxes were drawn by eye on grid renders, independently of the localiser (see the file's "about"). The
localiser runs on each image as the packaged model's contract frames it (squeezed: the image itself).
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


def measure(rsna_dir: Path, boxes: Path = BOXES) -> dict[str, list[tuple[str, float]]]:
    from edge_boneage.handcrop import locate_hand
    from edge_boneage.io import read_image

    out: dict[str, list[tuple[str, float]]] = {}
    for it in json.loads(boxes.read_text())["images"]:
        img, _ = read_image(rsna_dir / ("fullres" if it["set"] == "fullres" else "img100") / f"{it['id']}.png")
        hb = locate_hand(img)
        out.setdefault(it["set"], []).append((it["id"], iou((hb.hand_x0, hb.hand_y0, hb.hand_x1, hb.hand_y1),
                                                            it["box"])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    a = ap.parse_args(argv)
    res = measure(a.rsna_dir)
    print(f"{'set':<8} {'n':>3} {'median IoU':>10} {'mean':>6} {'min':>6} {'IoU>=0.8':>8}  worst")
    for st, v in res.items():
        x = np.array([i for _, i in v])
        worst = ", ".join(f"{k} {i:.2f}" for k, i in sorted(v, key=lambda t: t[1])[:3])
        print(f"{st:<8} {len(x):>3} {np.median(x):>10.3f} {x.mean():>6.3f} {x.min():>6.3f} {(x >= 0.8).mean():>7.0%}  {worst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
