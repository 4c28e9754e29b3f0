"""The configuration of an age-training run (``TrainConfig``, recorded in run.json) and its presets (``RECIPES``).

Its data fields (data, synth_n, rsna_dir, labels_csv, image_dir, limit, size, enhance, frame, crop, source_size,
val_fraction, split, seed) are the data config edge_boneage.dataconfig turns into a source and a split.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_boneage import EdgeBoneageError


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
    balance_ages: float = 0.0  # > 0: draw training images with probability ~ (age-bin count) ** -p (sources.age_balance_probs)
    aug_blur: float = 0.0  # resampling jitter: Gaussian blur / unsharp mask of sigma U(0, b) px (sources.Augment)
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


def config_from_run(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in a run folder's run.json."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise EdgeBoneageError(f"{p}: no run.json (not a training run folder)")
    return TrainConfig.from_json(json.loads(p.read_text())["config"])


__all__ = ["RECIPES", "TrainConfig", "config_from_run"]
