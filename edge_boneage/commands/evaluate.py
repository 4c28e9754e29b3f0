"""`edge-boneage evaluate MODEL`: MAE / ±1-year accuracy / bias per sex and age band, report.json + PNG plots.

A .tflite model runs through edge_boneage.runtime (no TensorFlow/Keras import); a .keras model through Keras.
Both use the same data, preprocessing, batching and metrics code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edge_boneage import EdgeBoneageError
from edge_boneage.commands.train import _set_backend, add_data_args


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a .keras or .tflite age model on labelled images",
                              description="Evaluate an age model. Data: --from-run DIR (that run's validation "
                                          "images), or --data synth|rsna|csv. Writes report.json, predictions.csv "
                                          "and PNG plots into --out and prints a table.")
    p.add_argument("model", help="model file (.keras or .tflite)")
    p.add_argument("--from-run", help="evaluate on the validation images of this training run folder")
    add_data_args(p, default_data=None)
    p.add_argument("--seed", type=int, default=12345,
                   help="seed of the synthetic images (--data synth; default 12345, unlike training's 0)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--skip-bad", action="store_true",
                   help="go on past images that cannot be read, listing each with its CSV row (default: stop there)")
    p.add_argument("--no-gate", action="store_true",
                   help="skip the quality gate (by default every image goes through predict's gate: the report "
                        "counts the flagged ones by reason and gives the accepted images' metrics beside all images')")
    p.add_argument("--backend", choices=("tensorflow", "jax"), help="Keras backend for .keras models")
    p.set_defaults(func=handler)


def handler(args) -> int:
    _set_backend(args.backend)
    from edge_boneage.dataconfig import load_source, run_val_source
    from edge_boneage.evaluation import evaluate_model
    from edge_boneage.metrics import format_table
    from edge_boneage.modelfile import open_model
    from edge_boneage.train_config import TrainConfig

    model = open_model(Path(args.model))
    if args.from_run:
        if args.data:
            raise EdgeBoneageError("give either --from-run or --data, not both")
        source = run_val_source(args.from_run)
        meta = {"data": "run-val", "run": args.from_run}
    else:
        if not args.data:
            raise EdgeBoneageError("no data: give --data synth|rsna|csv or --from-run RUN_DIR")
        spec = model.spec  # the model's own input contract (frame, hand crop, enhancement)
        if args.enhance and (args.enhance if args.enhance != "none" else None) != spec.enhance:
            raise EdgeBoneageError(f"{args.model}: the model was trained with enhance={spec.enhance}; "
                                   f"--enhance {args.enhance} would feed it differently made images")
        cfg = TrainConfig(data=args.data, synth_n=args.synth_n, rsna_dir=args.rsna_dir, labels_csv=args.labels_csv,
                          image_dir=args.image_dir, limit=args.limit, size=model.size,
                          enhance=spec.enhance if spec.version > 1 else args.enhance, frame=spec.frame,
                          crop=spec.crop, source_size=spec.source_size, seed=args.seed)
        source = load_source(cfg)
        if getattr(source, "spec", None) is not None and spec.version > 1:
            source.spec = spec  # file images go through the model's whole contract (crop margin included)
        if args.skip_bad and hasattr(source, "readable"):
            source, bad = source.readable()
            for line in bad:
                print(f"skipped: {line}", file=sys.stderr)
            if bad:
                print(f"evaluate: skipped {len(bad)} unreadable image(s); evaluating the other {len(source)}",
                      file=sys.stderr)
            if len(source) == 0:
                raise EdgeBoneageError("no readable images left to evaluate")
        meta = {"data": args.data, "seed": args.seed if args.data == "synth" else None,
                "rsna_dir": args.rsna_dir, "csv": args.labels_csv, "limit": args.limit}
    report = evaluate_model(model, source, args.out, batch=args.batch, meta=meta, plots=not args.no_plots,
                            gate=not args.no_gate)
    print(f"{args.model} on {len(source)} images ({meta['data']}):")
    print(format_table(report))
    g = report.get("quality_gate")
    if g:
        why = ", ".join(f"{k} {v}" for k, v in g["reasons"].items())
        line = f"quality gate: {g['n_flagged']} of {g['n']} images flagged ({100 * g['flagged_fraction']:.1f} %)"
        if g["n_flagged"]:
            acc = g["accepted_overall"]
            line += f": {why}; listed in predictions.csv"
            if acc and acc["n"]:
                line += f"; accepted images only: MAE {acc['mae_months']:.2f} months (n={acc['n']})"
        print(line)
    print(f"report: {report['files']['report']}")
    return 0
