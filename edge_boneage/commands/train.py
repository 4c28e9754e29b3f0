"""`edge-boneage train`: train (or resume) a registered age model; see edge_boneage.train for files and loss."""

from __future__ import annotations

import argparse
import json
import os
import sys

from edge_boneage import EdgeBoneageError


def parse_model_args(pairs: list[str]) -> dict:
    """The one `--model-arg K=V` parser (train and tw3 train): ['alpha=0.5', 'use_sex=false', 'lbp=ror',
    'depths=[1,1,1,1]'] -> {'alpha': 0.5, 'use_sex': False, 'lbp': 'ror', 'depths': [1, 1, 1, 1]} (true / false /
    null in any case, then JSON values, else the text itself: "none" stays a string)."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise EdgeBoneageError(f"--model-arg {p!r}: expected key=value (value as JSON, e.g. depths=[1,1,1,1])")
        k, v = p.split("=", 1)
        low = v.strip().lower()
        if low in ("true", "false"):
            out[k.strip()] = low == "true"
        elif low == "null":  # "none" stays a string: it is a legitimate value (e.g. lbp=none)
            out[k.strip()] = None
        else:
            try:
                out[k.strip()] = json.loads(v)
            except json.JSONDecodeError:
                out[k.strip()] = v
    return out


def add_data_args(p: argparse.ArgumentParser, *, default_data: str | None = "synth") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=("synth", "rsna", "csv"), default=default_data,
                   help=f"data source (default: {default_data})")
    g.add_argument("--rsna-dir", help="folder with labels.csv and img100/ (--data rsna)")
    g.add_argument("--csv", dest="labels_csv", help="labels CSV (--data csv; or a different RSNA labels file)")
    g.add_argument("--image-dir", help="folder the CSV's image paths are relative to")
    g.add_argument("--synth-n", type=int, default=512, help="number of synthetic images (--data synth; default 512)")
    g.add_argument("--limit", type=int, help="use only the first N samples")
    g.add_argument("--enhance", choices=("none", "clahe", "hist"),
                   help="preprocessing enhancement (default: none; evaluate: the model's own)")


def _set_backend(name: str | None) -> None:
    if not name:
        return
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") != name:
        raise EdgeBoneageError(f"--backend {name}: Keras is already imported with another backend")
    os.environ["KERAS_BACKEND"] = name


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train an age model (default data: synthetic hands)",
                              description="Train a registered age model. Writes run.json, log.csv, last.keras, "
                                          "best.keras and a validation report into --out. --resume continues an "
                                          "interrupted run with no lost or repeated epoch.")
    p.add_argument("--model", default="ril_mobilenetv3_large", help="registered model name (edge-boneage models)")
    p.add_argument("--model-arg", action="append", default=[], metavar="K=V",
                   help="builder keyword, repeatable (e.g. --model-arg alpha=0.5 --model-arg use_sex=false)")
    add_data_args(p)
    p.add_argument("--recipe", choices=("cpu", "paper"), default="cpu",
                   help="training recipe the flags below override (default cpu: AdamW, warmup + cosine, EMA, soft "
                        "labels, scale 0.75-1.33 + gamma augmentation, squeezed frame with hand crop; paper: the seed "
                        "paper's Adam 1e-4, batch 8, 80 epochs, 224 px)")
    p.add_argument("--size", type=int, help="input size S (default 224)")
    p.add_argument("--frame", choices=("letterbox", "squeeze"), help="frame rule before resizing (recipe's)")
    p.add_argument("--crop", choices=("none", "hand"), help="crop to the located hand (recipe's)")
    p.add_argument("--source-size", metavar="N|auto|none",
                   help="the square larger images are first reduced to (contract source_size); auto (cpu recipe): "
                        "the data's own size when every image is N x N, e.g. 100 for the RSNA 100x100 set")
    p.add_argument("--split", choices=("random", "protocol"), default="random",
                   help="random: --val-fraction stratified; protocol: fixed RSNA 80/10/10 train/val/test, full-res ids "
                        "set aside (edge_boneage.dataconfig.PROTOCOL_DOC)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share (default 0.1)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=("adam", "adamw"))
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=("constant", "cosine"))
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--ema", type=float, help="EMA momentum of the weights (0: off)")
    p.add_argument("--pretrained", choices=("none", "imagenet"), help="backbone initialisation (EfficientNet-Lite)")
    p.add_argument("--init-from", metavar="MODEL.keras",
                   help="start from this model's weights (same --model / --model-arg / --size): a new fine-tune stage")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random rotation/shift/scale/brightness/contrast, never flips (default on)")
    p.add_argument("--aug-blur", type=float, metavar="SIGMA",
                   help="resampling jitter: blur or unsharp-mask each training image with sigma U(0, SIGMA) px "
                        "(default 0: off)")
    p.add_argument("--balance-ages", type=float, metavar="P",
                   help="draw training images age-balanced: probability ~ (count of their one-year bin) ** -P, "
                        "P in [0, 1] (default 0: as the data come; 1: every year equally often)")
    p.add_argument("--age-loss-weight", type=float, help="lambda on MAE in years (default 1.0)")
    p.add_argument("--probs-loss-weight", type=float, help="weight of the class cross-entropy")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--sigma-years", type=float, help="> 0: Gaussian soft class targets")
    p.add_argument("--bn-momentum", type=float,
                   help="override BatchNorm momentum (MobileNetV3 uses 0.999: use 0.99 for short runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last committed epoch")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (only when a GPU is present)")
    p.add_argument("--backend", choices=("tensorflow", "jax"), help="Keras backend (default: $KERAS_BACKEND)")
    p.add_argument("--note", default="", help="free text stored in run.json")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress (1 = bar)")
    p.set_defaults(func=handler)
    p.set_defaults(parser_defaults={a.dest: a.default for a in p._actions})


def handler(args) -> int:
    _set_backend(args.backend)
    from edge_boneage.runfolder import explicit_settings, finished_message, interrupted_message, sigterm_as_interrupt
    from edge_boneage.train import train
    from edge_boneage.train_config import RECIPES, TrainConfig

    kw = dict(RECIPES[args.recipe])
    for name in ("size", "frame", "crop", "source_size", "epochs", "batch", "lr", "optimizer", "weight_decay", "schedule",
                 "warmup_epochs", "ema", "pretrained", "aug_blur", "balance_ages", "age_loss_weight", "probs_loss_weight", "sigma_years"):
        v = getattr(args, name)
        if v is not None:
            kw[name] = None if v == "none" and name in ("crop", "pretrained") else v
    cfg = TrainConfig(
        model=args.model, model_args=parse_model_args(args.model_arg), data=args.data, synth_n=args.synth_n,
        rsna_dir=args.rsna_dir, labels_csv=args.labels_csv, image_dir=args.image_dir, limit=args.limit,
        enhance=args.enhance, val_fraction=args.val_fraction, split=args.split, augment=args.augment,
        init_from=args.init_from,
        label_smoothing=args.label_smoothing, bn_momentum=args.bn_momentum, seed=args.seed, out=args.out,
        resume=args.resume, mixed_precision=args.mixed_precision, backend_note=args.note, verbose=args.verbose,
        **{"recipe": args.recipe, **kw})
    explicit = (explicit_settings(args, args.parser_defaults, {"model_arg": "model_args", "note": "backend_note"})
                if args.resume else None)
    if explicit is not None and args.recipe != "cpu":
        explicit |= set(RECIPES[args.recipe])
    try:
        with sigterm_as_interrupt():  # SIGTERM stops like Ctrl-C: the last committed epoch stays
            r = train(cfg, explicit=explicit)
    except KeyboardInterrupt:
        print(interrupted_message("train", cfg.out), file=sys.stderr)
        return 130
    if r.already_finished:
        print(finished_message(cfg.out, r.epochs_done))
        return 0
    print(f"trained {cfg.model}: epochs {r.initial_epoch}..{r.epochs_done - 1} this run, {r.epochs_done} in total, "
          f"{r.seconds:.1f} s")
    if r.best_epoch is not None:
        print(f"best epoch {r.best_epoch}: val MAE {r.best_val_mae_months:.2f} months -> {r.best_checkpoint}")
    print(f"last checkpoint: {r.last_checkpoint}")
    if r.val_report is not None:
        from edge_boneage.metrics import format_table

        print(format_table(r.val_report))
        print(f"validation report: {r.val_report['files']['report']}")
    return 0
