"""`edge-boneage demo`: the main job end to end on the embedded synthetic data (see edge_boneage.demo)."""

from __future__ import annotations

import os


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="end-to-end run on synthetic hands: train, export f32/int8, evaluate, predict",
                              description="Synthetic hands -> small RIL-MobileNetV3-L -> LiteRT float32 + int8 "
                                          "(parity-gated) -> evaluation through the runtime -> one prediction. "
                                          "A few minutes on a CPU; the tiny model's accuracy is not the point.")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the quick setting)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=handler)


def handler(args) -> int:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # LiteRT export needs the TensorFlow backend
    from edge_boneage.demo import QUICK, format_summary, run_demo

    summary = run_demo(args.out, epochs=args.epochs or QUICK["epochs"], seed=args.seed)
    print(format_summary(summary))
    print(f"summary: {os.path.join(args.out, 'summary.json')}")
    return 0
