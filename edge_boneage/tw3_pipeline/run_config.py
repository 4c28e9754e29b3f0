"""A tw3 training run's configuration (``StageTrainConfig``, recorded in the run folder's run.json) and what later
steps read back from it: the data splits (``config_from_run``) and the crop margin a stage model was trained with
(``trained_margin``: ``tw3 export`` writes it into the .tflite, StageModel crops a .keras's regions with it).

Synthetic splits come from one seed and disjoint image-index ranges: train ``[0, n_train)``, validation
``[n_train, n_train + n_val)``, test ``[n_train + n_val, n_train + n_val + n_test)``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_boneage import EdgeBoneageError
from edge_boneage.tw3_pipeline.constants import DEFAULT_AGE_RANGE, DEFAULT_MARGIN
from edge_boneage.tw3_pipeline.data import StageData, synth_stage_data

_RUN_KEYS = {"arch", "crop", "margin"}  # what every StageTrainConfig.to_json() holds (an age run's has none)


@dataclass
class StageTrainConfig:
    arch: str = "csp_resnext50_tw3"
    model_args: dict = field(default_factory=dict)
    crop: int = 64
    margin: float = DEFAULT_MARGIN
    image_size: int = 512
    n_train: int = 800
    n_val: int = 200
    n_test: int = 200  # not used for training; recorded so `evaluate --run` finds the test range
    seed: int = 0
    age_range: tuple = DEFAULT_AGE_RANGE
    epochs: int = 10
    batch: int = 32
    lr: float = 1e-3
    jit_compile: bool | str = "auto"  # Keras compile(jit_compile=...); False skips XLA (faster start, tests)
    time_budget_s: float | None = None  # stop after the epoch that would overrun this (per invocation)
    out: str = "runs/tw3"
    resume: bool = False
    verbose: int = 2

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["age_range"] = list(self.age_range)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "StageTrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        c = cls(**{k: v for k, v in d.items() if k in names})
        c.age_range = tuple(c.age_range)
        return c

    def split(self, which: str) -> tuple[int, int]:
        """(start, n) of the synthetic 'train' / 'val' / 'test' image range."""
        return {"train": (0, self.n_train), "val": (self.n_train, self.n_val),
                "test": (self.n_train + self.n_val, self.n_test)}[which]

    def data(self, which: str) -> StageData:
        start, n = self.split(which)
        return synth_stage_data(n, self.image_size, self.crop, self.seed, self.age_range, start, self.margin)


def _run_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        msg = f"{path}: unreadable run.json ({type(exc).__name__}: {exc})"
        raise EdgeBoneageError(msg.replace("\n", " ")) from None
    return cfg if isinstance(cfg, dict) else {}


def config_from_run(run_dir) -> StageTrainConfig:
    """The StageTrainConfig a tw3 training run recorded in its run.json; one-line errors naming the file."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise EdgeBoneageError(f"{p}: no run.json (not a tw3 training run folder)")
    cfg = _run_config(p)
    if not _RUN_KEYS <= set(cfg):
        raise EdgeBoneageError(f"{p}: not a tw3 training run (its config records no arch / crop / margin)")
    return StageTrainConfig.from_json(cfg)


def trained_margin(model_path, crop_size: int) -> tuple[float, Path] | None:
    """(crop margin, run.json) recorded by the tw3 training run a .keras of input size `crop_size` belongs to: the
    run.json in its folder, or above it for a file in checkpoints/. None when there is none or it is not a tw3
    run's; a run whose crops have another size than the model's raises (it is not this model's run)."""
    path = Path(model_path)
    folders = [path.parent] + ([path.parent.parent] if path.parent.name == "checkpoints" else [])
    for folder in folders:
        p = folder / "run.json"
        if p.is_file():
            cfg = _run_config(p)
            if not _RUN_KEYS <= set(cfg):
                return None
            c = StageTrainConfig.from_json(cfg)
            if int(c.crop) != int(crop_size):
                raise EdgeBoneageError(f"{p}: run crops are {c.crop} px but {path.name} takes {crop_size} px "
                                       "(not this model's training run)")
            return float(c.margin), p
    return None


__all__ = ["StageTrainConfig", "config_from_run", "trained_margin"]
