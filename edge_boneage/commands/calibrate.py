"""`edge-boneage calibrate RUN_DIR`: fit the linear bias correction and a conformal prediction interval on the run's
validation images, and store both inside the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="bias-correct a trained age model on its run's validation images",
                              description="Fit age' = a * pred + b on the validation images of a training run "
                                          "(never its test split) and fold it into the model's class centres "
                                          "(edge_boneage.calibrate). Writes a new .keras; the source is not changed.")
    p.add_argument("run", help="training run folder (its best.keras and validation ids)")
    p.add_argument("--model", help="model to correct (default: RUN/best.keras)")
    p.add_argument("--out", required=True, help="output .keras")
    p.add_argument("--coverage", type=float, default=0.9, help="prediction interval coverage (default 0.9)")
    p.add_argument("--source-size", type=int, metavar="N",
                   help="also state in the model's input contract that its training images were N x N (the RSNA "
                        "100x100 set: 100), so full-resolution films are first reduced to N x N as those were "
                        "(contract field source_size); checked on every image of the run's data")
    p.add_argument("--method", choices=("ols", "inverse"), default="ols",
                   help="ols: least squares of true on pred (default); inverse: regress pred on true and invert, as "
                        "Deeplasia does (undoes the pull to the middle age: young and old bands lose their bias)")
    p.set_defaults(func=handler)


def handler(args) -> int:

    from edge_boneage import calibrate
    from edge_boneage.dataconfig import run_val_source
    from edge_boneage.evaluation import predict_source
    from edge_boneage.modelfile import open_model
    from edge_boneage.runfolder import save_model_atomic

    run = Path(args.run)
    src = Path(args.model) if args.model else run / "best.keras"
    out = Path(args.out)
    if out.suffix != ".keras":
        raise EdgeBoneageError(f"{out}: the output must be a .keras file")
    if out.resolve() == src.resolve():
        raise EdgeBoneageError(f"{out}: would overwrite the source model; choose another --out")
    val = run_val_source(run)
    age_model = open_model(src)
    pred = predict_source(age_model, val)
    true = np.asarray(val.months, np.float64)
    a, b = calibrate.fit_linear(pred, true, args.method)
    import keras

    config = age_model.model.get_config()
    if args.source_size:
        check_source_size(run, args.source_size)
        set_source_size(config, args.source_size)
    model = keras.Model.from_config(config)  # same graph and config, no optimizer (shippable)
    model.set_weights(age_model.model.get_weights())
    after = a * pred + b
    rec = calibrate.apply_linear(model, a, b, n=len(true), fitted_on=f"{run.name}: validation ids of run.json "
                                                                   f"({args.method})",
                                 val_mae_months=float(np.abs(after - true).mean()))
    interval = calibrate.fit_intervals(after, true, coverage=args.coverage)
    calibrate.set_interval(model, interval)
    save_model_atomic(model, out)
    print(f"fitted ({args.method}) on {len(true)} validation images of {run}: age' = {a:.4f} * age {b:+.2f} months")
    for lo, hi in calibrate.INTERVAL_BANDS_YEARS:
        m = (true >= 12 * lo) & (true < 12 * hi)
        if m.any():
            print(f"  true age {lo}-{min(hi, 19)} y (n={int(m.sum())}): bias {np.mean(pred[m] - true[m]):+.2f} -> "
                  f"{np.mean(after[m] - true[m]):+.2f} months, MAE {np.abs(pred[m] - true[m]).mean():.2f} -> "
                  f"{np.abs(after[m] - true[m]).mean():.2f}")
    print(f"validation (in-sample for the fit) MAE {np.abs(pred - true).mean():.2f} -> {np.abs(after - true).mean():.2f} "
          f"months, bias {np.mean(pred - true):+.2f} -> {np.mean(after - true):+.2f}")
    print(f"{100 * args.coverage:.0f} % interval half-widths (months) by predicted age: " + ", ".join(
        f"{b['pred_from_months'] / 12:.0f}-{min(b['pred_to_months'] / 12, 19):.0f} y +-{b['half_width_months']:.1f} "
        f"(n={b['n']})" for b in interval["bands"]))
    print(f"wrote {out} ({rec})")
    return 0


def check_source_size(run: Path, n: int) -> None:
    """Every image of the run's data source is n x n (read from the file headers), else a one-line error."""
    from edge_boneage.dataconfig import header_sizes, load_source
    from edge_boneage.train_config import config_from_run

    src = load_source(config_from_run(run))
    if not hasattr(src, "samples"):  # drawn in memory (synthetic): the arrays' own size
        sizes = {tuple(np.asarray(src.images).shape[1:3])}
        bad = [] if sizes == {(n, n)} else [f"synthetic images are {sizes}"]
    else:
        bad = []
        for path, size in header_sizes(src.samples):
            if isinstance(size, OSError):
                bad.append(f"{path}: {size}")
            elif size != (n, n):
                bad.append(f"{path} is {size[0]}x{size[1]}")
            if len(bad) >= 3:
                break
    if bad:
        raise EdgeBoneageError(f"--source-size {n}: the run's images are not all {n}x{n} ({'; '.join(bad)})")


def set_source_size(config: dict, n: int) -> None:
    """Write source_size n (contract version 3) into the model config's input contract (the layer holding
    `preprocess`), checked by PreprocessSpec."""
    from edge_boneage.preprocess import PreprocessSpec

    hits = [lay["config"] for lay in config.get("layers", []) if isinstance(lay.get("config", {}).get("preprocess"), dict)]
    if len(hits) != 1:
        raise EdgeBoneageError(f"--source-size: the model has {len(hits)} input contracts (expected 1)")
    d = {**hits[0]["preprocess"], "source_size": int(n), "version": 3}
    hits[0]["preprocess"] = PreprocessSpec.from_dict(d).to_dict()
