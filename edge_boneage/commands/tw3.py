"""`edge-boneage tw3 train|evaluate|sweep|predict|export`: the TW3 RUS stage-classifier pipeline (seed 000).

See docs/TW3.md. Library: the edge_boneage.tw3_pipeline package (this module only parses arguments and prints).
"""

from __future__ import annotations

import json
import sys

from edge_boneage import EdgeBoneageError

ARCHS = ("csp_resnext50_tw3", "resnext50_tw3")


def _data_args(p, defaults: bool = True) -> None:
    p.add_argument("--run", help="tw3 training run folder: take seed, image size, age range and the val/test "
                                 "image ranges from its run.json")
    p.add_argument("--data", help="data folder instead of synthetic images: images/, labels.csv, boxes.csv "
                                  "(+ stages.csv); see --val-data")
    p.add_argument("--val-data", help="folder for the VALIDATION split when --data is the test folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=512, help="synthetic radiograph side (default 512)")
    p.add_argument("--age-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="synthetic bone-age range in years (default 6 15, the paper's)")
    p.add_argument("--val-start", type=int, default=None, help="first synthetic validation image (default: n_train)")
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--test-start", type=int, default=None, help="first synthetic test image (default: after val)")
    p.add_argument("--n-test", type=int, default=200)


def register(subparsers) -> None:
    p = subparsers.add_parser("tw3", help="TW3 RUS pipeline: stage classifier training, TopN scoring, prediction",
                              description="TW3-C RUS bone age from 13 RUS region crops (Gu, Sun, Zhang 2023): "
                                          "train a (CSP-)ResNeXt50 stage classifier on synthetic crops, pick the TopN "
                                          "threshold on validation data, compare classic/Top2/TopN on test data, "
                                          "predict one radiograph from user-provided boxes.")
    sub = p.add_subparsers(dest="tw3_command", metavar="SUBCOMMAND")

    t = sub.add_parser("train", help="train a stage classifier on synthetic RUS crops (checkpoints, resume)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--arch", choices=ARCHS, default="csp_resnext50_tw3")
    t.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="builder knob, e.g. width_mult=0.25, depths=[1,1,1,1], cardinality=8 (repeatable)")
    t.add_argument("--crop", type=int, default=64, help="crop / model input size (default 64)")
    t.add_argument("--margin", type=float, default=None, help="crop margin, fraction of the box side per edge (default 0.1)")
    t.add_argument("--image-size", type=int, default=512)
    t.add_argument("--n-train", type=int, default=800)
    t.add_argument("--n-val", type=int, default=200)
    t.add_argument("--n-test", type=int, default=200, help="recorded for `evaluate --run` (test images follow val)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--age-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"))
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop after the epoch that would overrun MIN minutes of training")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--verbose", type=int, default=2)
    t.set_defaults(func=handle_train)
    t.set_defaults(parser_defaults={a.dest: a.default for a in t._actions})

    for name, helptext in (("evaluate", "sweep P on validation, then classic/Top2/TopN + stage accuracy on test"),
                           ("sweep", "only the threshold sweep on validation data (MAE vs P plot)")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--model", required=True, help="stage model (.keras or .tflite)")
        e.add_argument("--out", required=True, help="report folder (report.json, report.md, sweep.png)")
        e.add_argument("--curve", choices=("tw3c", "uk"), default="tw3c")
        e.add_argument("--global-threshold", action="store_true", help="one P for both sexes (default: per sex)")
        e.add_argument("--margin", type=float, default=None)
        _data_args(e)
        e.set_defaults(func=handle_evaluate, sweep_only=name == "sweep")

    pr = sub.add_parser("predict", help="stages, scores and bone age of one radiograph from its RUS boxes")
    pr.add_argument("image", help="radiograph (PNG/JPEG/DICOM)")
    pr.add_argument("--model", required=True, help="stage model (.keras or .tflite)")
    pr.add_argument("--boxes", required=True, help="RUS boxes: VOC .xml, COCO .json, .csv (image,bone,x0,y0,x1,y1; "
                                                   "the boxes.csv of `edge-boneage synth` works) or boxes .json")
    pr.add_argument("--sex", required=True, help="M or F")
    pr.add_argument("--method", choices=("topn", "top2", "classic"), default="topn")
    pr.add_argument("--threshold", type=float, default=None, help="TopN threshold P (default 0.61, the paper's)")
    pr.add_argument("--report", help="take P from an evaluate report.json (the validation argmin for --sex)")
    pr.add_argument("--curve", choices=("tw3c", "uk"), default="tw3c")
    pr.add_argument("--margin", type=float, default=None,
                    help="crop margin (default: the model's training margin, from .tflite metadata or the .keras's "
                         "run.json, else 0.1)")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.set_defaults(func=handle_predict)

    x = sub.add_parser("export", help="export a .keras stage model to a float32 builtin-only .tflite (parity-gated, "
                                      "the training crop margin in its metadata)")
    x.add_argument("--model", required=True)
    x.add_argument("--out", required=True, help=".tflite path")
    x.add_argument("--margin", type=float, default=None,
                   help="crop margin the model was trained with; needed only when no tw3 run.json next to the model "
                        "records it (and must agree with one that does)")
    x.set_defaults(func=handle_export)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def handle_train(args) -> int:
    from edge_boneage.tw3_pipeline.constants import DEFAULT_AGE_RANGE, DEFAULT_MARGIN
    from edge_boneage.tw3_pipeline.run_config import StageTrainConfig
    from edge_boneage.commands.train import parse_model_args
    from edge_boneage.runfolder import explicit_settings, finished_message, interrupted_message, sigterm_as_interrupt
    from edge_boneage.tw3_pipeline.training import train_stage_model

    cfg = StageTrainConfig(
        arch=args.arch, model_args=parse_model_args(args.model_arg), crop=args.crop,
        margin=DEFAULT_MARGIN if args.margin is None else args.margin, image_size=args.image_size,
        n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
        age_range=tuple(args.age_range or DEFAULT_AGE_RANGE), epochs=args.epochs, batch=args.batch, lr=args.lr,
        time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget, out=args.out,
        resume=args.resume, verbose=args.verbose)
    explicit = (explicit_settings(args, args.parser_defaults, {"model_arg": "model_args", "time_budget": "time_budget_s"})
                if args.resume else None)
    try:
        with sigterm_as_interrupt():
            s = train_stage_model(cfg, explicit=explicit)
    except KeyboardInterrupt:
        print(interrupted_message("tw3 train", cfg.out), file=sys.stderr)
        return 130
    if s["already_finished"]:
        print(finished_message(cfg.out, s["epochs_done"]))
        return 0
    acc = s["val_stage_accuracy"]
    print(f"tw3 train: {s['epochs_done']} epochs ({s['fit_seconds']:.0f} s fit, {s['data_seconds']:.0f} s data)"
          + (" - stopped by the time budget" if s["stopped_by_time_budget"] else ""))
    print(f"  best epoch {s['best_epoch']} val_loss {s['best_val_loss']:.4f}; val stage accuracy "
          f"{100 * acc['acc']:.1f} % exact, {100 * acc['acc_pm1']:.1f} % within 1 stage" if acc else "  no best model")
    print(f"  best model: {s['best_checkpoint']}")
    return 0


def _splits(args):
    from edge_boneage.tw3_pipeline.constants import DEFAULT_AGE_RANGE
    from edge_boneage.tw3_pipeline.data import folder_stage_data, synth_stage_data
    from edge_boneage.tw3_pipeline.run_config import config_from_run

    if args.data:
        test = folder_stage_data(args.data, args._crop, args._margin)
        val = folder_stage_data(args.val_data, args._crop, args._margin) if args.val_data else None
        if val is None:
            raise EdgeBoneageError("--data needs --val-data (the threshold is chosen on validation, never on test)")
        return val, test, {"data": args.data, "val_data": args.val_data}
    if args.run:
        cfg = config_from_run(args.run)
        if cfg.crop != args._crop:
            raise EdgeBoneageError(f"{args.run}: run crops are {cfg.crop} px but the model takes {args._crop} px")
        cfg.margin = args._margin if args.margin is not None else cfg.margin
        return cfg.data("val"), cfg.data("test"), {"run": args.run, "val": cfg.split("val"), "test": cfg.split("test"),
                                                   "seed": cfg.seed, "age_range": list(cfg.age_range)}
    age = tuple(args.age_range or DEFAULT_AGE_RANGE)
    vs = args.val_start if args.val_start is not None else 100_000
    ts = args.test_start if args.test_start is not None else vs + args.n_val
    if ts < vs + args.n_val and ts + args.n_test > vs:
        raise EdgeBoneageError("validation and test image ranges overlap")
    mk = lambda s, n: synth_stage_data(n, args.image_size, args._crop, args.seed, age, s, args._margin)  # noqa: E731
    return mk(vs, args.n_val), mk(ts, args.n_test), {"seed": args.seed, "age_range": list(age), "val": [vs, args.n_val],
                                                     "test": [ts, args.n_test]}


def handle_evaluate(args) -> int:
    from edge_boneage.tw3_pipeline.constants import DEFAULT_MARGIN
    from edge_boneage.tw3_pipeline.model import StageModel
    from edge_boneage.tw3_pipeline.reports import evaluate, plot_sweep, report_markdown
    from edge_boneage.tw3_pipeline.scoring import threshold_sweep

    model = StageModel(args.model)
    args._crop = model.size
    args._margin = args.margin if args.margin is not None else (model.margin if model.margin is not None
                                                                else DEFAULT_MARGIN)
    val, test, info = _splits(args)
    if args.sweep_only:
        from pathlib import Path

        from edge_boneage.fileutil import write_json_atomic

        probs = model.predict_images(val)
        sw = threshold_sweep(probs, val.boneage_months / 12.0, val.male, curve=args.curve)
        plot_sweep(sw, Path(args.out) / "sweep.png", title=f"TopN threshold sweep on validation ({Path(args.model).name})")
        write_json_atomic(Path(args.out) / "sweep.json", {"model": args.model, **info, **sw})
        for g, b in sw["best"].items():
            print(f"{g:6s}: P = {b['threshold']:.2f}  validation MAE {b['mae_years']:.4f} y (n = {sw['n'][g]})")
        print(f"wrote {Path(args.out) / 'sweep.png'} and sweep.json")
        return 0
    rep = evaluate(model, val, test, args.out, curve=args.curve, per_sex=not args.global_threshold,
                   meta={"data": info})
    print(report_markdown(rep))
    print(f"wrote {rep['files']['json']}, {rep['files']['markdown']}, {rep['files']['sweep_png']}")
    return 0


def handle_predict(args) -> int:
    from edge_boneage import tw3
    from edge_boneage.tw3_pipeline.prediction import format_prediction, predict_image

    sex = tw3.normalise_sex(args.sex)
    threshold = args.threshold
    if args.report:
        from pathlib import Path

        try:
            rep = json.loads(Path(args.report).read_text())
            threshold = rep["thresholds_used"][sex]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise EdgeBoneageError(f"{args.report}: no thresholds_used.{sex} in this report ({exc})") from None
    pred = predict_image(args.image, args.model, args.boxes, sex, method=args.method,
                         threshold=tw3.DEFAULT_THRESHOLD if threshold is None else threshold, curve=args.curve,
                         margin=args.margin)
    if args.json:
        print(json.dumps(pred))
    else:
        print(format_prediction(pred))
    return 0


def handle_export(args) -> int:
    from edge_boneage.convert.export import format_parity
    from edge_boneage.tw3_pipeline.constants import TFLITE_META_NAME
    from edge_boneage.tw3_pipeline.export import export_stage_tflite

    res = export_stage_tflite(args.model, args.out, args.margin)
    crop = res.extra_metadata[TFLITE_META_NAME]["crop"]
    print(f"wrote {res.path}: float32, {res.path.stat().st_size / 2**20:.2f} MiB, {crop['size']} px crops, "
          f"margin {crop['margin']:g} (from {crop['margin_from']})")
    print(format_parity(res.parity))
    return 0
