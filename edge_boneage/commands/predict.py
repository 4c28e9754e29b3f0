"""`edge-boneage predict IMAGE... [--model M] [--sex M|F] [--json] [--strict]`: bone age for radiographs (PNG/JPEG/DICOM).

Exit status: 0; 1 when an image could not be read or run; 2 with --strict when the quality gate
(edge_boneage.quality) did not accept an image as a hand radiograph (its age is still printed, marked).
"""

from __future__ import annotations

import json
import sys

from edge_boneage import EdgeBoneageError


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict bone age for radiographs (PNG/JPEG/DICOM)",
                              description="Predict bone age. A .tflite model runs without TensorFlow/Keras; "
                                          "a .keras model needs the [train] extra. Default model: the packaged "
                                          "pretrained one (edge_boneage/pretrained/).")
    p.add_argument("images", nargs="+", help="radiograph files")
    p.add_argument("--model", help="model file (.tflite or .keras); default: the packaged pretrained model")
    p.add_argument("--sex", help="patient sex, M or F (default: the DICOM PatientSex; without any, both are reported)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: mean over 3 hand-crop margins (hand-crop models; 3x the inference)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image (JSON lines)")
    p.add_argument("--top", type=int, default=5, help="how many class probabilities to print (default 5)")
    p.add_argument("--no-orient", dest="orient", action="store_false",
                   help="do not estimate the orientation (by default a rotated or mirrored hand is turned to an "
                        "upright left hand first, and an unclear orientation is flagged)")
    p.add_argument("--strict", action="store_true",
                   help="exit 2 when an image is not accepted as a hand radiograph by the quality gate "
                        "(edge_boneage.quality); the age is still printed, marked")
    p.set_defaults(func=handler)


def _print_human(pred, top: int) -> None:
    print(pred.summary())
    warning = pred.quality_warning()
    if warning:
        print(f"    {warning}")
    if pred.probs:
        order = sorted(range(len(pred.probs)), key=lambda k: -pred.probs[k])[:top]
        for k in order:
            print(f"    class {k:2d} ({k:2d}-{k + 1:2d} y): p={pred.probs[k]:.3f}")
    if pred.hand_box:
        b = pred.hand_box
        found = "" if b.get("found") else " (no hand found: whole image)"
        print(f"    hand box x {b['hand_x0']:.0f}-{b['hand_x1']:.0f}, y {b['hand_y0']:.0f}-{b['hand_y1']:.0f} px{found}; "
              f"crop x {b['x0']:.0f}-{b['x1']:.0f}, y {b['y0']:.0f}-{b['y1']:.0f}")
    print(f"    model {pred.model} ({pred.input_size}x{pred.input_size}), {pred.latency_ms:.1f} ms")


def handler(args) -> int:
    from edge_boneage.predict import AgePredictor, parse_sex, predict_image
    from edge_boneage.pretrained import default_model_path

    parse_sex(args.sex)  # fail early on a bad --sex
    predictor = AgePredictor(args.model or default_model_path())
    failed = rejected = 0
    for image in args.images:
        try:
            pred = predict_image(predictor, image, args.sex, tta=args.tta, orient=args.orient)
        except EdgeBoneageError as exc:
            failed += 1
            if args.json:
                print(json.dumps({"image": image, "error": str(exc)}))
            else:
                print(f"edge-boneage predict: error: {exc}", file=sys.stderr)
            continue
        rejected += not pred.quality_ok
        if args.json:
            print(json.dumps(pred.to_dict()))
        else:
            _print_human(pred, args.top)
    if failed:
        return 1
    return 2 if args.strict and rejected else 0
