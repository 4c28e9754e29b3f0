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

import csv
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
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
# the run folder (state commit, log, last/best, resume checks) is edge_boneage.runfolder's, shared with tw3 training
from edge_boneage.runfolder import (  # noqa: F401  (re-exported: committed_epoch, save_model_atomic)
    RunFolder,
    committed_epoch,
    config_differences,
    epoch_commit_callback,
    save_model_atomic,
)
from edge_boneage.runfolder import truncate_log as _truncate_log  # noqa: F401

MONITOR = "val_age_mae"  # validation MAE of the "age" output, months


@dataclass
class TrainConfig:
    model: str = "ril_mobilenetv3_large"
    model_args: dict = field(default_factory=dict)
    # data
    data: str = "synth"  # "synth" | "rsna" | "csv"
    synth_n: int = 512  # synthetic images (data="synth")
    rsna_dir: str | None = None  # folder with labels.csv + img100/ (data="rsna")
    labels_csv: str | None = None  # RSNA labels CSV (default <rsna_dir>/labels.csv) / generic CSV (data="csv")
    image_dir: str | None = None  # where the CSV's images live (default: loader's choice)
    limit: int | None = None  # use only the first N samples (quick runs)
    size: int = 224
    enhance: str | None = None  # preprocess enhancement (None = the preprocessing spec's default)
    frame: str = "letterbox"  # preprocess frame rule: "letterbox" | "squeeze" (how the RSNA 100x100 set was made)
    crop: str | None = None  # None | "hand" (edge_boneage.handcrop)
    # the square the frame is first resized to (contract source_size): N, None, or "auto" = the images' own size when
    # every image of a file source is the same N x N (RSNA img100: 100), resolved and recorded when the run starts
    source_size: int | str | None = None
    val_fraction: float = 0.1
    # "random": val_fraction of the data, stratified; "protocol": the fixed RSNA protocol (PROTOCOL_DOC): 80/10/10
    # train/val/test stratified by age band and sex, after setting aside every id of <rsna_dir>/fullres.csv
    split: str = "random"
    # optimisation
    epochs: int = 10
    batch: int = 8
    lr: float = 1e-4
    augment: bool = True
    age_loss_weight: float = 1.0  # lambda on MAE in years
    probs_loss_weight: float = 1.0  # weight of the class cross-entropy
    optimizer: str = "adam"  # "adam" | "adamw"
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    schedule: str = "constant"  # "constant" | "cosine" (linear warmup, then cosine to 0)
    warmup_epochs: float = 0.0
    ema: float = 0.0  # > 0: EMA of the weights with this momentum, copied into the model at each epoch's end
    aug_scale: tuple[float, float] | None = None  # log-uniform scale augmentation range, e.g. (0.75, 1.33)
    aug_gamma: float = 0.0  # gamma augmentation: exponent exp(U(-g, g))
    aug_rot_deg: float = 10.0
    pretrained: str | None = None  # "imagenet": backbone from edge_boneage.imagenet (EfficientNet-Lite models)
    init_from: str | None = None  # a .keras of the same architecture whose weights start this run (a fine-tune stage)
    recipe: str | None = None  # the RECIPES preset the CLI started from (recorded only)
    label_smoothing: float = 0.0
    sigma_years: float = 0.0  # > 0: Gaussian soft class targets
    bn_momentum: float | None = None  # override every BatchNormalization momentum (None: the builder's)
    seed: int = 0
    # run
    out: str = "runs/train"
    resume: bool = False
    mixed_precision: bool = False  # only applied when a GPU is present
    backend_note: str = ""  # free text recorded in run.json
    verbose: int = 1  # Keras progress: 0 silent, 1 bar, 2 one line per epoch

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("aug_scale") is not None:
            kw["aug_scale"] = tuple(kw["aug_scale"])
        return cls(**kw)

    def preprocess_spec(self):
        """The input contract this run trains with (edge_boneage.preprocess.PreprocessSpec)."""
        from edge_boneage.preprocess import PreprocessSpec

        if isinstance(self.source_size, str):
            raise EdgeBoneageError(f"source_size {self.source_size!r} is not resolved yet (resolve_source_size)")
        return PreprocessSpec(input_size=self.size, enhance=self.enhance, frame=self.frame, crop=self.crop,
                              source_size=self.source_size)


#: The CPU recipe (train's --recipe cpu) and the seed paper's GPU settings (--recipe paper); fields of TrainConfig.
RECIPES = {
    "cpu": dict(optimizer="adamw", lr=5e-4, weight_decay=1e-4, schedule="cosine", warmup_epochs=1.0, batch=32,
                ema=0.99, sigma_years=1.0, probs_loss_weight=0.1, age_loss_weight=1.0, aug_scale=(0.75, 1.33),
                aug_gamma=0.3, aug_rot_deg=15.0, frame="squeeze", crop="hand", source_size="auto"),
    "paper": dict(optimizer="adam", lr=1e-4, weight_decay=0.0, schedule="constant", warmup_epochs=0.0, batch=8,
                  ema=0.0, sigma_years=0.0, probs_loss_weight=1.0, age_loss_weight=1.0, aug_scale=None,
                  aug_gamma=0.0, aug_rot_deg=10.0, epochs=80, size=224),
}

PROTOCOL_DOC = ("RSNA protocol v1: every id listed in <rsna_dir>/fullres.csv is set aside (reported separately at "
                "full resolution); the rest is split 80/10/10 train/val/test by edge_boneage.datasets."
                "stratified_split (12-month age band x sex, seed 0). Validation picks epochs and recipes; the test "
                "split and the full-resolution films only report.")


def protocol_split(samples, rsna_dir, seed: int = 0):
    """(train, val, test) samples of the RSNA protocol (PROTOCOL_DOC)."""
    from edge_boneage import datasets

    held = set()
    fr = Path(rsna_dir) / "fullres.csv" if rsna_dir else None
    if fr is not None and fr.is_file():
        with open(fr, newline="") as f:
            held = {str(r["id"]).strip() for r in csv.DictReader(f)}
    rest = [s for s in samples if str(s.id) not in held]
    return datasets.stratified_split(rest, (0.8, 0.1, 0.1), seed=seed)


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


# ----------------------------------------------------------------------------------------------- data


def _split_indices(n: int, val_fraction: float, seed: int, months=None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (seeded) train/val index split with round(n * val_fraction) validation images.

    With ages given it is stratified on age: images are sorted by age (random tie-break), cut into k equal
    consecutive blocks, and one random image of each block goes to validation, so every age range is represented.
    """
    if n < 2 or val_fraction <= 0:
        return np.arange(n), np.arange(0, dtype=np.int64)
    if not 0 < val_fraction < 1:
        raise EdgeBoneageError(f"val fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng([seed, 7919])
    key = rng.random(n)
    order = np.lexsort((key, np.zeros(n) if months is None else np.asarray(months, np.float64)))
    if months is None:
        order = rng.permutation(n)
    k = min(n - 1, max(1, int(round(n * val_fraction))))
    edges = np.floor(np.arange(k + 1) * n / k).astype(np.int64)  # k consecutive age blocks, one pick in each
    pos = edges[:-1] + np.floor(rng.random(k) * (edges[1:] - edges[:-1])).astype(np.int64)
    val = np.sort(order[pos])
    return np.setdiff1d(np.arange(n), val), val


def _synth_source(n: int, size: int, seed: int, spec=None):
    """n synthetic hands (edge_boneage.synth.generate) as an ArrayImages at size S.

    The generator draws square images of at least 64 px. With `spec` (the run's input contract) each one goes
    through it like any radiograph (frame, hand crop, resize, enhancement), so the model learns what its contract
    says; without it, images are only resized with cv2.INTER_AREA.
    """
    from edge_boneage import sources
    from edge_boneage.synth import generate

    batch = generate(int(n), size=max(int(size), 64), seed=int(seed))
    images = batch.images
    if spec is not None and (spec.crop or spec.enhance or images.shape[1] != size):
        images = np.stack([spec.apply(im) for im in images])
    elif images.shape[1] != size:
        import cv2

        images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    return sources.ArrayImages(images, batch.boneage, batch.male.astype(np.float32),
                               ids=[f"synth{seed}-{int(i):06d}" for i in batch.ids])


def _file_samples(config: TrainConfig) -> list:
    """Samples of a file-based source via edge_boneage.datasets (rows validated there, strict)."""
    from edge_boneage import datasets

    if config.data == "rsna":
        if not config.rsna_dir and not config.labels_csv:
            raise EdgeBoneageError("--data rsna needs --rsna-dir (a folder with labels.csv and img100/)")
        base = Path(config.rsna_dir) if config.rsna_dir else Path(config.labels_csv).parent
        csv_path = Path(config.labels_csv) if config.labels_csv else base / "labels.csv"
        image_dir = Path(config.image_dir) if config.image_dir else base / "img100"
        result = datasets.load_rsna_csv(csv_path, image_dir)
    elif config.data == "csv":
        if not config.labels_csv:
            raise EdgeBoneageError("--data csv needs --csv FILE (path,boneage_months,sex or an RSNA-format CSV)")
        result = datasets.load_csv(config.labels_csv, config.image_dir)
    else:
        raise EdgeBoneageError(f"unknown data source {config.data!r}; use synth, rsna or csv")
    samples = list(getattr(result, "samples", result))
    if not samples:
        raise EdgeBoneageError(f"{config.labels_csv or config.rsna_dir}: no usable samples")
    return samples


def common_square_size(samples) -> int | None:
    """N when every sample's image file is N x N (read from the headers, no decode), else None."""
    from PIL import Image

    from edge_boneage.sources import _field

    sizes = set()
    for s in samples:
        try:
            with Image.open(_field(s, "path")) as im:
                sizes.add(im.size)
        except OSError:
            return None  # an unreadable file is reported by the data loader, not here
        if len(sizes) > 1:
            return None
    (w, h), = sizes or {(0, 1)}
    return int(w) if w == h else None


def resolve_source_size(config: TrainConfig) -> TrainConfig:
    """config with source_size "auto" replaced by the file images' common square size (None for synthetic data
    drawn at model size, or mixed sizes); "none" -> None."""
    v = config.source_size
    if v in (None, "none"):
        return dataclasses.replace(config, source_size=None)
    if v == "auto":
        n = None if config.data == "synth" else common_square_size(_file_samples(config)[: config.limit or None])
        if n:
            print(f"train: every image of the data is {n}x{n}: the model's contract records source_size {n} "
                  f"(larger images are reduced to {n}x{n} first, as these were)", file=sys.stderr)
        return dataclasses.replace(config, source_size=n)
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise EdgeBoneageError(f"--source-size {v!r}: expected a number of pixels, auto or none") from None
    if n < 16:
        raise EdgeBoneageError(f"--source-size {n}: must be >= 16 pixels")
    return dataclasses.replace(config, source_size=n)


def load_source(config: TrainConfig):
    """The whole data source of a config (ArrayImages or SampleImages), before any split."""
    from edge_boneage import sources

    if config.data == "synth":
        src = _synth_source(config.limit or config.synth_n, config.size, config.seed, config.preprocess_spec())
    else:
        samples = _file_samples(config)
        if config.limit:
            samples = samples[: config.limit]
        spec = config.preprocess_spec()
        src = sources.SampleImages(samples, config.size, enhance=config.enhance, spec=spec)
    return src


def load_split(config: TrainConfig, source=None):
    """(train_source, val_source): the deterministic split of `load_source(config)` (or of `source`, an
    ArrayImages/SampleImages given directly). File samples use edge_boneage.datasets.stratified_split (age band
    x sex); in-memory arrays (synthetic) use `_split_indices` (age-stratified)."""
    src = load_source(config) if source is None else source
    samples = getattr(src, "samples", None)
    if config.split == "protocol":
        if samples is None or config.data != "rsna":
            raise EdgeBoneageError("--split protocol needs --data rsna")
        tr_s, va_s, _te = protocol_split(samples, config.rsna_dir or Path(config.labels_csv).parent, config.seed)
        pos = {s.id: i for i, s in enumerate(samples)}
        return (src.subset(np.array([pos[s.id] for s in tr_s], np.int64)),
                src.subset(np.array([pos[s.id] for s in va_s], np.int64)))
    if config.split != "random":
        raise EdgeBoneageError(f"unknown split {config.split!r}; use random or protocol")
    if samples is not None and config.val_fraction > 0 and all(hasattr(s, "id") for s in samples):
        # file data: edge_boneage.datasets' split (stratified by age band and sex, stable by id)
        from edge_boneage import datasets

        try:
            _, val = datasets.stratified_split(samples, val_fraction=config.val_fraction, seed=config.seed)
        except ValueError as exc:
            raise EdgeBoneageError(f"cannot split {config.labels_csv or config.rsna_dir}: {exc}") from exc
        val_ids = {s.id for s in val}
        va = np.array([i for i, s in enumerate(samples) if s.id in val_ids], np.int64)
        tr = np.array([i for i, s in enumerate(samples) if s.id not in val_ids], np.int64)
    else:
        tr, va = _split_indices(len(src), config.val_fraction, config.seed, src.months)
    return src.subset(tr), (src.subset(va) if len(va) else None)


# ----------------------------------------------------------------------------------------------- keras helpers


def _builder_params(name: str) -> set[str]:
    import inspect

    from keras_models.registry import get_entry

    return set(inspect.signature(get_entry(name).builder).parameters)


def set_bn_momentum(model, momentum: float) -> int:
    """Set the moving-statistics momentum of every BatchNormalization layer (nested models included).

    keras.applications' MobileNetV3 uses 0.999: its inference-mode statistics need thousands of steps to
    follow the weights, so short runs validate far worse than they train; 0.99 (or 0.9) fixes that.
    Returns the number of layers changed (saved in the .keras config, so it survives resume)."""
    import keras

    if not 0.0 <= momentum < 1.0:
        raise EdgeBoneageError(f"BatchNorm momentum must be in [0, 1), got {momentum}")
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            n += 1
    return n


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """Adam / AdamW with a constant or warmup + cosine learning rate, optional EMA (see TrainConfig)."""
    import keras

    lr = config.lr
    if config.schedule == "cosine":
        total = max(1, int(config.epochs * steps_per_epoch))
        warm = int(round(config.warmup_epochs * steps_per_epoch))
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warm else config.lr, decay_steps=max(1, total - warm), alpha=0.0,
            warmup_target=config.lr if warm else None, warmup_steps=warm)
    elif config.schedule != "constant":
        raise EdgeBoneageError(f"unknown schedule {config.schedule!r}; use constant or cosine")
    ema = dict(use_ema=True, ema_momentum=float(config.ema), ema_overwrite_frequency=int(steps_per_epoch)) \
        if config.ema and config.ema > 0 else {}
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **ema)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **ema)
    raise EdgeBoneageError(f"unknown optimizer {config.optimizer!r}; use adam or adamw")


def compile_model(model, config: TrainConfig, steps_per_epoch: int = 1) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss={"probs": keras.losses.CategoricalCrossentropy(), "age": keras.losses.MeanAbsoluteError()},
        loss_weights={"probs": config.probs_loss_weight, "age": config.age_loss_weight / 12.0},
        metrics={"age": [keras.metrics.MeanAbsoluteError(name="mae")]},
    )


def _devices() -> list[str]:
    import keras

    try:
        return list(keras.distribution.list_devices())
    except Exception:  # backend without the distribution API (tensorflow)
        return []


def _setup_distribution(config: TrainConfig) -> dict:
    import keras

    info = {"backend": keras.backend.backend(), "devices": [], "distribution": None}
    if keras.backend.backend() != "jax":
        return info
    devices = _devices()
    info["devices"] = [str(d) for d in devices]
    if len(devices) > 1:
        if config.batch % len(devices):
            raise EdgeBoneageError(
                f"batch {config.batch} is not a multiple of the {len(devices)} visible devices (data parallel)")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        info["distribution"] = f"DataParallel over {len(devices)} devices"
    return info


def _has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "jax":
        return any("gpu" in str(d).lower() or "cuda" in str(d).lower() for d in _devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


# ----------------------------------------------------------------------------------------------- evaluation


def predict_source(age_model, source, batch: int = 32) -> np.ndarray:
    """Predicted ages (months) over a source: the same batching/preprocessing code for .keras and .tflite."""
    from edge_boneage.sources import BatchMaker

    maker = BatchMaker(source, batch)
    return np.concatenate([age_model.predict(maker.batch(b)[0]) for b in range(len(maker))]).astype(np.float64)


def evaluate_model(model_path, source, out_dir, *, batch: int = 32, meta: dict | None = None, plots: bool = True) -> dict:
    """Evaluate a .keras/.tflite age model (path, or an `open_age_model` result) on a source; writes
    report.json, predictions.csv and PNGs to out_dir and returns the report."""
    from edge_boneage import metrics

    m = model_path if isinstance(model_path, (KerasModelFile, TFLiteModelFile)) else open_age_model(model_path)
    model_path = m.path
    if m.size != source.size:
        raise EdgeBoneageError(f"{model_path}: model input is {m.size}x{m.size} but the data is {source.size}x{source.size}")
    t0 = time.time()
    pred = predict_source(m, source, batch)
    secs = time.time() - t0
    info = {"model": str(model_path), "format": Path(model_path).suffix[1:], "size": m.size,
            "predict_seconds": secs, **(meta or {})}
    return metrics.write_report(out_dir, source.months, pred, source.male, ids=source.ids, meta=info, plots=plots)


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


def resume_differences(config: TrainConfig, saved: dict, explicit) -> list[str]:
    """'name old -> new' for every explicitly given setting that differs from the saved run's."""
    return config_differences(config, TrainConfig.from_json(saved), explicit, RESUME_MAY_CHANGE)


def train(config: TrainConfig, source=None, *, explicit=None) -> TrainResult:
    """Train (or resume) a registered age model; see the module docstring for files, loss and resume.

    `source`: optional in-memory data (edge_boneage.sources.ArrayImages / SampleImages) used instead of the
    config's data source (then pass the same source again when resuming). `explicit`: the settings the user gave
    (the CLI's non-default flags); resuming with any of them different from the run's own is refused, naming them.
    A run that already finished its epochs is not touched: the result says so (``already_finished``).
    """
    t0 = time.time()
    out = Path(config.out)
    folder = RunFolder(out, "training run")
    state = folder.begin(config.resume)
    if state:
        saved = folder.saved_config()
        folder.refuse_changes(config, TrainConfig.from_json(saved), explicit, RESUME_MAY_CHANGE)
        epochs = max(config.epochs, int(saved.get("epochs", 0)))
        config = TrainConfig.from_json({**saved, "epochs": epochs, "out": str(out), "resume": True,
                                        "verbose": config.verbose})
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
            shapes = [tuple(w.shape) for w in model.weights], [tuple(w.shape) for w in init.weights]
            if shapes[0] != shapes[1]:
                raise EdgeBoneageError(f"{config.init_from}: not the same architecture as --model {config.model} "
                                       f"with these --model-arg / --size")
            model.set_weights(init.get_weights())
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
    aug = (sources.Augment(rot_deg=config.aug_rot_deg, scale_range=config.aug_scale, gamma=config.aug_gamma)
           if config.augment else None)
    train_ds = sources.make_dataset(train_src, config.batch, shuffle=True, augment=aug, seed=config.seed,
                                    epoch=initial_epoch, drop_remainder=True, inputs=names, **kw)
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
                                    meta={"subset": "val", "data": config.data, "best_epoch": final_state.get("best_epoch")})
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


def run_val_source(run_dir: str | os.PathLike):
    """The validation images of a finished/interrupted run (its config's data, subset to run.json's val_ids)."""
    cfg = config_from_run(run_dir)
    ids = json.loads((Path(run_dir) / "run.json").read_text()).get("val_ids") or []
    if not ids:
        raise EdgeBoneageError(f"{Path(run_dir) / 'run.json'}: the run has no validation images")
    src = load_source(cfg)
    where = {i: k for k, i in enumerate(src.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise EdgeBoneageError(f"{run_dir}: {len(missing)} validation ids (e.g. {missing[0]}) are not in the data any more")
    return src.subset([where[i] for i in ids])


def config_from_run(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in a run folder's run.json."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise EdgeBoneageError(f"{p}: no run.json (not a training run folder)")
    return TrainConfig.from_json(json.loads(p.read_text())["config"])
