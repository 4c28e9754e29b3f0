"""Choosing the orientation classifier's "unclear" threshold: real validation radiographs vs the development non-hand
suite, predict's whole gate at each threshold.

An image is flagged "orientation unclear" when the classifier's top probability is below a threshold
(the classifier file's metadata "unclear_threshold", else edge_boneage.orientation.MIN_CONFIDENCE). The threshold
trades the two errors: a lower one flags fewer real radiographs, a higher one catches more non-hand pictures. This sweep uses only what calibration may use: the
protocol's VALIDATION split (real films, img100) and the development non-hand suite of benchmarks.quality_gate
(make_nonhand_suite). Never the test split, the full-resolution films or the held-out non-hand suite: those report,
in benchmarks.quality_gate --as-predict, after the choice.

Rule (fixed before the sweep): the lowest threshold at which no development non-hand picture passes predict's whole
gate (statistics + orientation + the model's feature check).

    python -m benchmarks.orient_confidence --rsna-dir ../shared/data/rsna --model edge_boneage/pretrained/boneage_age.tflite
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

THRESHOLDS = (0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)


def verdicts(predictor, paths) -> list[tuple[bool, float]]:
    """[(flagged by something other than the orientation, orientation top probability)] per file, as predict sees
    it; an unreadable file counts as flagged with probability 0."""
    from edge_boneage import EdgeBoneageError
    from edge_boneage.predict import predict_image

    out = []
    for p in paths:
        try:
            r = predict_image(predictor, p, "M")
        except (EdgeBoneageError, ValueError):
            out.append((True, 0.0))
            continue
        other = [x for x in r.quality_reasons if not x.startswith("orientation unclear")]
        out.append((bool(other), float(r.orientation["prob"]) if r.orientation else 1.0))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, default=Path("../shared/data/rsna"))
    ap.add_argument("--model", type=Path, default=Path("edge_boneage/pretrained/boneage_age.tflite"))
    ap.add_argument("--orienter", type=Path, help="a candidate orientation .tflite instead of the packaged one")
    ap.add_argument("--write", type=Path, metavar="OUT.tflite",
                    help="write a copy of the orienter with the chosen threshold in its metadata (unclear_threshold)")
    a = ap.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    from benchmarks.quality_gate import make_nonhand_suite
    from edge_boneage import datasets, orientation
    from edge_boneage.dataconfig import protocol_split
    from edge_boneage.predict import AgePredictor

    predictor = AgePredictor(a.model)
    if a.orienter:  # predict_image takes the packaged classifier from default_orienter(): put the candidate there
        orientation._DEFAULT = orientation.Orienter(a.orienter)
    current = orientation.default_orienter().unclear_threshold
    samples = datasets.load_rsna_csv(a.rsna_dir / "labels.csv", a.rsna_dir / "img100").samples
    _tr, val, test = protocol_split(samples, a.rsna_dir)
    real = verdicts(predictor, [s.path for s in val])
    with tempfile.TemporaryDirectory() as tmp:
        items = make_nonhand_suite(Path(tmp) / "nonhand", test)  # the same suite benchmarks.quality_gate reports
        fake = verdicts(predictor, [p for _s, _n, p in items])
    print(f"model {a.model.name}; orienter {a.orienter or 'packaged'}; validation split n={len(real)} real "
          f"radiographs (img100); development non-hand suite n={len(fake)} pictures; its threshold now {current}\n")
    print("| threshold | real flagged (any reason) | real flagged by orientation only | non-hand passed |")
    print("|---|---|---|---|")
    chosen = None
    for t in THRESHOLDS:
        rf = sum(o or p < t for o, p in real)
        ro = sum((not o) and p < t for o, p in real)
        fp = sum((not o) and p >= t for o, p in fake)
        if chosen is None and fp == 0:
            chosen = t
        print(f"| {t:.2f} | {rf} ({100 * rf / len(real):.2f} %) | {ro} | {fp} |")
    other = sum(o for o, _p in real)
    print(f"\nreal radiographs flagged by the other checks alone: {other}; non-hand pictures caught only by the "
          f"orientation at {current}: {sum((not o) and p < current for o, p in fake)}")
    print(f"rule: the lowest threshold with no development non-hand picture passing -> {chosen}")
    if a.write:
        if chosen is None:
            raise SystemExit("no threshold lets no development non-hand picture pass: nothing written")
        from edge_boneage.fileutil import write_bytes_atomic
        from edge_boneage.tflite_meta import add_metadata, read_metadata

        src = Path(orientation.default_orienter().path)
        meta = dict(read_metadata(src) or {})
        meta.pop("schema_version", None)
        meta["orientation"] = {**meta.get("orientation", {}), "unclear_threshold": chosen,
                               "unclear_threshold_chosen_by": "benchmarks/orient_confidence.py: validation split + "
                                                              "development non-hand suite, with " + a.model.name}
        write_bytes_atomic(a.write, add_metadata(src.read_bytes(), meta))
        print(f"wrote {a.write} (unclear_threshold {chosen})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
