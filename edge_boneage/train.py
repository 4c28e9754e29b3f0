"""Train an age model: data -> Keras fit -> checkpoints (atomic, resumable) -> validation report.

`train(TrainConfig(...)) -> TrainResult`. Everything a run produces goes into `config.out`:

=====================  ==========================================================================================
``run.json``           configuration, environment (backend, Keras version, devices, distribution), result
``log.csv``            one row per finished epoch (``epoch`` 0-based, then every Keras log value)
``state.json``         the commit point of an epoch: ``{"epoch", "checkpoint", "best_epoch", "best_val_mae"}``
``checkpoints/``       ``epoch-NNNN.keras`` of the last committed epoch (older ones are deleted after the commit)
``last.keras``         hard link (or copy) of the last committed epoch's checkpoint (model + optimizer state)
``best.keras``         the checkpoint with the lowest validation MAE (months) so far (training MAE without
                       validation data)
``val/``               the validation report of ``best.keras`` (edge_boneage.metrics: report.json + PNGs)
=====================  ==========================================================================================

Loss (Guo et al. 2022, seed 003, trains the 19-way softmax whose expectation is the age, "optimised by MAE")::

    loss = CCE(probs, target_probs) + lambda * MAE_years(age)    with MAE_years = |age - true| / 12

``target_probs`` is one-hot over the 19 one-year bins (optionally label-smoothed, or Gaussian soft labels
with ``sigma_years``: see edge_boneage.sources). ``lambda`` is ``age_loss_weight`` (default 1.0); it is applied
as a Keras loss weight of lambda/12 on the month-valued MAE of the ``age`` output. Adam, lr 1e-4, batch 8
(the paper's settings) are the defaults.

Resume, exactly once per epoch: the run folder (run.json, the state.json commit after each epoch's checkpoint and
fsynced log row, last/best links, resume refusals) is edge_boneage.runfolder's, shared with the TW3 stage trainer.
``resume=True`` continues from the committed epoch with ``initial_epoch = e + 1``; the data pipeline's
shuffling/augmentation is seeded by (seed, epoch), so the resumed epochs see the same batches an uninterrupted run
would (dropout masks are not restored, so the weights are not bit-identical to an uninterrupted run's). A resumed
run takes its configuration from the saved ``run.json``; only ``epochs`` may be raised to train longer, and a
setting given explicitly (``explicit``) that differs from the run's is refused, naming it.

Several devices (JAX backend): with more than one device visible, training is data-parallel through
``keras.distribution.DataParallel`` (batch split over devices; batch must be a multiple of the device count).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.fileutil import write_json_atomic
# the one model handle and .keras loader live in edge_boneage.modelfile (inference never imports this module)
from edge_boneage.modelfile import (  # noqa: F401  (re-exported for callers of the training API)
    KerasModelFile,
    TFLiteModelFile,
    import_custom_objects,
    load_model,
    model_input_names,
    model_input_size,
)
from edge_boneage.modelfile import open_model as open_age_model  # noqa: F401
# the data config -> source + split (edge_boneage.dataconfig), the run's configuration (edge_boneage.train_config),
# Keras compile / optimizer / devices (edge_boneage.fitsetup) and evaluation (edge_boneage.evaluation) have their own
# modules; their names stay importable from here for callers of the training API
from edge_boneage.dataconfig import (  # noqa: F401
    PROTOCOL_DOC,
    _file_samples,
    _split_indices,
    _synth_source,
    common_square_size,
    load_source,
    load_split,
    protocol_split,
    resolve_source_size,
    run_val_source,
)
from edge_boneage.evaluation import evaluate_model, predict_source  # noqa: F401
from edge_boneage.fitsetup import (  # noqa: F401
    _builder_params,
    _devices,
    _has_gpu,
    _setup_distribution,
    compile_model,
    make_optimizer,
    set_bn_momentum,
)
# the run folder (state commit, log, last/best, resume checks) is edge_boneage.runfolder's, shared with tw3 training
from edge_boneage.runfolder import (  # noqa: F401  (re-exported: committed_epoch, save_model_atomic)
    RunFolder,
    committed_epoch,
    epoch_commit_callback,
    save_model_atomic,
)
from edge_boneage.runfolder import truncate_log as _truncate_log  # noqa: F401
from edge_boneage.train_config import RECIPES, TrainConfig, config_from_run  # noqa: F401

MONITOR = "val_age_mae"  # validation MAE of the "age" output, months


@dataclass
class TrainResult:
    out: str
    epochs_done: int  # total committed epochs (including those before a resume)
    initial_epoch: int  # epoch this invocation started at
    best_epoch: int | None
    best_val_mae_months: float | None
    last_checkpoint: str
    best_checkpoint: str | None
    val_report: dict | None
    history: list[dict]
    seconds: float
    already_finished: bool = False  # a resume of a run that had already trained all its epochs: nothing was done


# ----------------------------------------------------------------------------------------------- train


def _environment() -> dict:
    import keras

    env = {"python": sys.version.split()[0], "keras": keras.__version__, "backend": keras.backend.backend(),
           "numpy": np.__version__, "argv": sys.argv}
    try:
        import subprocess

        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
    except Exception:
        env["git_commit"] = None
    return env


#: settings a resume may change: the run length and where/how it prints
RESUME_MAY_CHANGE = {"epochs", "out", "resume", "verbose", "backend_note"}


def train(config: TrainConfig, source=None, *, explicit=None) -> TrainResult:
    """Train (or resume) a registered age model; see the module docstring for files, loss and resume.

    `source`: optional in-memory data (edge_boneage.sources.ArrayImages / SampleImages) used instead of the
    config's data source (then pass the same source again when resuming). `explicit`: the settings the user gave
    (the CLI's non-default flags); resuming with any of them different from the run's own is refused, naming them.
    A run that already finished its epochs is not touched: the result says so (``already_finished``).
    """
    t0 = time.time()
    out = Path(config.out)
    if not 0.0 <= config.balance_ages <= 1.0:  # before the run folder is touched
        raise EdgeBoneageError(f"--balance-ages {config.balance_ages:g}: expected a power in [0, 1]")
    folder = RunFolder(out, "training run")
    state = folder.begin(config.resume)
    if state:
        config = folder.resumed_config(TrainConfig, config, explicit, RESUME_MAY_CHANGE)
    if config.batch < 1 or config.epochs < 1:
        raise EdgeBoneageError("batch and epochs must be >= 1")
    config = resolve_source_size(config)
    if folder.finished(state, config.epochs):
        return TrainResult(out=str(out), epochs_done=int(state["epoch"]) + 1, initial_epoch=int(state["epoch"]) + 1,
                           best_epoch=state.get("best_epoch"), best_val_mae_months=state.get("best_val_mae"),
                           last_checkpoint=str(folder.last), best_checkpoint=str(folder.best), val_report=None,
                           history=[], seconds=time.time() - t0, already_finished=True)
    out.mkdir(parents=True, exist_ok=True)

    import keras

    from keras_models.registry import build_model, get_entry

    keras.utils.set_random_seed(config.seed)
    dist = _setup_distribution(config)
    mp = None
    if config.mixed_precision:
        if _has_gpu():
            keras.mixed_precision.set_global_policy("mixed_float16")
            mp = "mixed_float16"
        else:
            print("train: --mixed-precision ignored (no GPU visible)", file=sys.stderr)

    from edge_boneage import sources

    train_src, val_src = load_split(config, source)
    if len(train_src) < config.batch:
        raise EdgeBoneageError(f"only {len(train_src)} training images for batch {config.batch}")

    initial_epoch = 0
    if state:
        ckpt = folder.checkpoint(state)
        model = load_model(ckpt)
        if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
            raise EdgeBoneageError(f"{ckpt}: checkpoint has no optimizer state; cannot resume")
        initial_epoch = folder.restore(state)
    else:
        import_custom_objects()
        try:
            get_entry(config.model)
        except KeyError as exc:
            raise EdgeBoneageError(str(exc).strip("'\"")) from exc
        margs = dict(config.model_args)
        if "preprocess" in _builder_params(config.model):
            margs["preprocess"] = config.preprocess_spec().to_dict()
        try:
            model = build_model(config.model, input_size=config.size, **margs)
        except (TypeError, ValueError) as exc:  # a bad --model-arg / --size: a usage error, not a traceback
            msg = str(exc).replace("build_", "").replace("()", "")
            raise EdgeBoneageError(f"model {config.model} with --size {config.size} "
                                   f"{' '.join(f'--model-arg {k}={v}' for k, v in config.model_args.items())}: "
                                   f"{msg} (edge-boneage models lists each model's knobs)".replace("  ", " ")) from exc
        if config.pretrained == "imagenet":
            from edge_boneage import imagenet

            n_init = imagenet.load_backbone_weights(model)
            print(f"train: {n_init} backbone layers initialised from ImageNet (EfficientNet-Lite0)", file=sys.stderr)
        elif config.pretrained:
            raise EdgeBoneageError(f"unknown pretrained weights {config.pretrained!r}; use imagenet")
        if config.init_from:
            init = load_model(config.init_from)
            # by weight path, so a packaged model works too: its feature check (extra weights) is dropped and its
            # bias correction (folded into the class centres, a config, not a weight) is not carried over
            have = {w.path: w for w in init.weights}
            missing = [w.path for w in model.weights
                       if w.path not in have or tuple(have[w.path].shape) != tuple(w.shape)]
            if missing:
                raise EdgeBoneageError(f"{config.init_from}: not the same architecture as --model {config.model} "
                                       f"with these --model-arg / --size ({len(missing)} weights differ, "
                                       f"e.g. {missing[0]})")
            for w in model.weights:
                w.assign(have[w.path])
            print(f"train: weights initialised from {config.init_from}", file=sys.stderr)
        if config.bn_momentum is not None:
            set_bn_momentum(model, config.bn_momentum)
        compile_model(model, config, steps_per_epoch=len(train_src) // config.batch)
        folder.start_fresh()

    run_info = {"config": config.to_json(), "environment": _environment(), "distribution": dist,
                "mixed_precision": mp, "model_params": int(model.count_params()),
                "n_train": len(train_src), "n_val": len(val_src) if val_src is not None else 0,
                "val_ids": list(val_src.ids) if val_src is not None else [], "started": time.time()}
    folder.write_run_info(run_info, resumed_at=initial_epoch if state else None)

    names = set(model_input_names(model))
    kw = dict(label_smoothing=config.label_smoothing, sigma_years=config.sigma_years)
    aug = (sources.Augment(rot_deg=config.aug_rot_deg, scale_range=config.aug_scale, gamma=config.aug_gamma,
                           blur=config.aug_blur)
           if config.augment else None)
    train_ds = sources.make_dataset(train_src, config.batch, shuffle=True, augment=aug, seed=config.seed,
                                    epoch=initial_epoch, drop_remainder=True, inputs=names,
                                    balance=config.balance_ages, **kw)
    val_ds = (sources.make_dataset(val_src, config.batch, inputs=names, **kw) if val_src is not None else None)

    history: list[dict] = []
    cb = epoch_commit_callback(folder, state, monitor=MONITOR, fallback="age_mae", best_key="best_val_mae",
                               on_commit=lambda _cb, e, row: history.append(row))
    if initial_epoch < config.epochs:
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=[train_ds.epoch_callback(), cb], verbose=config.verbose, shuffle=False)
    final_state = folder.final_state()

    val_report = None
    best_path = out / "best.keras"
    if val_src is not None and best_path.is_file():
        val_report = evaluate_model(best_path, val_src, out / "val", batch=max(config.batch, 16),
                                    meta={"subset": "val", "data": config.data, "best_epoch": final_state.get("best_epoch")},
                                    gate=False)  # the ages only: the gate is evaluate's
    result = TrainResult(
        out=str(out), epochs_done=int(final_state.get("epoch", -1)) + 1, initial_epoch=initial_epoch,
        best_epoch=final_state.get("best_epoch"), best_val_mae_months=final_state.get("best_val_mae"),
        last_checkpoint=str(out / "last.keras"), best_checkpoint=str(best_path) if best_path.is_file() else None,
        val_report=val_report, history=history, seconds=time.time() - t0)
    run_info.update({"finished": time.time(), "result": {k: v for k, v in dataclasses.asdict(result).items()
                                                         if k not in ("val_report", "history")}})
    if val_report is not None:
        run_info["result"]["val_overall"] = val_report["overall"]
    write_json_atomic(out / "run.json", run_info)
    return result


