"""Parameter counts and float32 sizes of every registered network at full size, next to the papers' figures.

Builds each model from keras_models.registry (random weights; sizes do not depend on them) and prints a markdown
table. Counts are ``model.count_params()``: all weights including BatchNorm moving mean/variance, like a PyTorch
state dict, which is what the paper's "MB" figures measure (88.07 MB for ResNeXt50 = 23.09 M float32 values of
2^20-byte MiB). float32 MiB = params * 4 / 2^20. For the TW3 stage classifiers it lists the shared-backbone
variants (one network for all 13 bones: bone id selects one of 13 heads, or a bone embedding) against the
per-bone variant (13 separate networks; 13 x the one-bone network, whose architecture is the same for every bone).

    .venv/bin/python -m benchmarks.model_sizes                         # all registered models at 224
    .venv/bin/python -m benchmarks.model_sizes --models csp_resnext50_tw3 --out sizes.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MIB = 2**20

# Figures stated in the papers (seeds in ../shared/seeds), in float32 MiB where the paper gives a size.
PAPER_MIB = {
    "resnext50_tw3": (88.07, "seed 000: ResNeXt50 88.07 MB"),
    "csp_resnext50_tw3": (46.28, "seed 000: CSP-ResNeXt50 46.28 MB"),
}
PAPER_NOTE = {
    "ril_mobilenetv3_large": "seed 003 gives no size",
    "mobilenetv3_large": "seed 003 gives no size (ImageNet MobileNetV3-L, 1000 classes: 5.4 M, Howard et al. 2019)",
}


def _sizes(model) -> tuple[int, int]:
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable


def _row(name, task, variant, params, trainable, paper=None, note=""):
    mib = params * 4 / MIB
    if paper is not None:
        ref = f"{paper:.2f} MiB ({(mib - paper) / paper * 100:+.1f} %)"
        note = note or ""
    else:
        ref = "-"
    return f"| {name} | {task} | {variant} | {params:,} | {trainable:,} | {mib:.2f} | {ref} | {note} |"


def measure(names: list[str] | None = None, input_size: int = 224) -> list[str]:
    """Build the models and return the markdown table lines."""
    import keras

    from keras_models.registry import get_entry, list_models

    entries = [get_entry(n) for n in names] if names else list_models()
    lines = [
        f"Input {input_size}x{input_size}; params = all weights incl. BatchNorm moving statistics; "
        "MiB = params x 4 bytes / 2^20.",
        "",
        "| model | task | variant | params | trainable | float32 MiB | paper (diff) | note |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for e in entries:
        paper, paper_note = PAPER_MIB.get(e.name, (None, PAPER_NOTE.get(e.name, "")))
        if e.task == "tw3_stage":
            variants = [
                ("shared backbone, bone id selects 1 of 13 heads (default)", {}),
                ("shared backbone, bone embedding", {"bone_conditioning": "embedding"}),
                ("one bone, 8-grade head (= paper's network)", {"bone": "radius"}),
            ]
            single = None
            for label, kw in variants:
                t0 = time.perf_counter()
                model = e.builder(input_size=input_size, **kw)
                p, t = _sizes(model)
                print(f"built {e.name} [{label}] in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                is_single = "bone" in kw
                lines.append(_row(e.name, e.task, label, p, t, paper if is_single else None,
                                  paper_note if is_single else ""))
                if is_single:
                    single = (p, t)
                del model
                keras.backend.clear_session()
            p1, t1 = single
            lines.append(_row(e.name, e.task, "13 per-bone networks (13 x one bone)", 13 * p1, 13 * t1))
            # the same networks fed 3-channel (RGB-replicated) input as in the paper
            model = e.builder(input_size=input_size, bone="radius", channels=3)
            p, t = _sizes(model)
            lines.append(_row(e.name, e.task, "one bone, 3-channel input (paper's 224x224x3)", p, t, paper,
                              paper_note))
            del model
            keras.backend.clear_session()
        else:
            t0 = time.perf_counter()
            model = e.builder(input_size=input_size)
            p, t = _sizes(model)
            print(f"built {e.name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            lines.append(_row(e.name, e.task, "default", p, t, paper, paper_note))
            del model
            keras.backend.clear_session()
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="registered model names (default: all)")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--out", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    text = "\n".join(measure(args.models, args.input_size)) + "\n"
    print(text, end="")
    if args.out:
        from edge_boneage.fileutil import write_text_atomic

        write_text_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
