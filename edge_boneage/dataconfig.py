"""Data assembly: one data config (the data fields of a ``TrainConfig``) -> the source and its split.

``load_source(config)`` gives the whole source (synthetic hands through the run's contract, or RSNA / generic CSV
files via edge_boneage.datasets), ``load_split(config)`` its deterministic train / validation split (random
stratified, or the fixed RSNA protocol: ``protocol_split``, ``PROTOCOL_DOC``), ``resolve_source_size`` the contract's
source_size ("auto": the files' common square), ``run_val_source(run)`` a run's own validation images. Train,
evaluate, calibrate and export calibration all take their data from here.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.train_config import TrainConfig, config_from_run

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


def header_sizes(samples):
    """Yield (path, (width, height)) per sample from its image file's header (no decode); an unreadable file yields
    (path, the OSError)."""
    from PIL import Image

    from edge_boneage.sources import _field

    for s in samples:
        path = _field(s, "path")
        try:
            with Image.open(path) as im:
                yield path, im.size
        except OSError as exc:
            yield path, exc


def common_square_size(samples) -> int | None:
    """N when every sample's image file is N x N (read from the headers, no decode), else None."""
    sizes = set()
    for _path, size in header_sizes(samples):
        if isinstance(size, OSError):
            return None  # an unreadable file is reported by the data loader, not here
        sizes.add(size)
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


split_indices = _split_indices
synth_source = _synth_source
file_samples = _file_samples

__all__ = ["PROTOCOL_DOC", "common_square_size", "file_samples", "load_source", "load_split", "protocol_split",
           "resolve_source_size", "run_val_source", "split_indices", "synth_source"]
