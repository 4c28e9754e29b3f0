"""Training a stage classifier on synthetic crops (``train_stage_model``): sparse categorical cross-entropy on
``grade - 1`` (stage-A crops have no class and are left out), per-epoch checkpoints with the commit guarantees of
edge_boneage.train, resume, an optional time budget. The run's configuration: ``run_config.StageTrainConfig``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.fileutil import write_json_atomic
from edge_boneage.tw3_pipeline.data import StageData
from edge_boneage.tw3_pipeline.model import StageModel
from edge_boneage.tw3_pipeline.run_config import StageTrainConfig
from edge_boneage.tw3_pipeline.scoring import stage_accuracy


def _fit_arrays(data: StageData):
    """Model inputs/targets without stage-A crops: ({"image", "bone"}, grade-1)."""
    g = data.crop_grades
    keep = g > 0
    return {"image": data.crops[keep][..., None], "bone": data.bone[keep][:, None]}, (g[keep] - 1).astype(np.int32), int((~keep).sum())


def _batches_class():
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        """Shuffled batches of in-memory arrays; the order of epoch e is a function of (seed, e) only."""

        def __init__(self, x, y, batch, seed, shuffle=True, epoch=0):
            super().__init__()
            self.x, self.y, self.batch, self.seed, self.shuffle = x, y, int(batch), int(seed), shuffle
            self.set_epoch(epoch)

        def set_epoch(self, epoch):
            n = self.y.shape[0]
            self.order = np.random.default_rng([self.seed, int(epoch)]).permutation(n) if self.shuffle else np.arange(n)

        def __len__(self):
            return math.ceil(self.y.shape[0] / self.batch)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * self.batch : (i + 1) * self.batch])
            return {k: v[idx] for k, v in self.x.items()}, {"probs": self.y[idx]}

    return ArrayBatches


def _checkpointer(out: Path, state: dict, t_start: float, budget: float | None, history: list):
    """Per-epoch commit with the guarantees of edge_boneage.train (checkpoint, fsynced CSV row, state.json as
    the commit point, last/best links), monitoring val_loss; optionally stops before the time budget runs out."""
    import keras

    from edge_boneage.train import _read_csv_rows, save_model_atomic

    class StageCheckpoint(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.state = dict(state)
            self.t_epoch = None
            self.durations = []
            self.stopped_by_budget = False

        def on_epoch_begin(self, epoch, logs=None):
            self.t_epoch = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            ckpt = out / "checkpoints" / f"epoch-{epoch:04d}.keras"
            save_model_atomic(self.model, ckpt)
            log_path = out / "log.csv"
            header, _ = _read_csv_rows(log_path)
            row = {"epoch": epoch, **dict(sorted(logs.items())), "seconds": time.time() - self.t_epoch}
            if not header:
                header = list(row)
            new = not log_path.exists() or log_path.stat().st_size == 0
            with open(log_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
                if new:
                    w.writeheader()
                w.writerow(row)
                f.flush()
                os.fsync(f.fileno())
            val = logs.get("val_loss", logs.get("loss"))
            st = dict(self.state)
            st.update({"epoch": epoch, "checkpoint": ckpt.name, "time": time.time()})
            if val is not None and (st.get("best_val_loss") is None or val < st["best_val_loss"]):
                st["best_val_loss"], st["best_epoch"] = val, epoch
                st["best_val_accuracy"] = logs.get("val_accuracy")
            write_json_atomic(out / "state.json", st)  # <- the commit
            self.state = st
            _after_commit(out, st)
            history.append(row)
            self.durations.append(time.time() - self.t_epoch)
            if budget is not None:
                elapsed = time.time() - t_start
                if elapsed + float(np.mean(self.durations)) > budget:
                    self.model.stop_training = True
                    self.stopped_by_budget = True

    return StageCheckpoint()


def _after_commit(out: Path, st: dict) -> None:
    from edge_boneage.train import _link_atomic

    ckpt = out / "checkpoints" / st["checkpoint"]
    _link_atomic(ckpt, out / "last.keras")
    if st.get("best_epoch") == st["epoch"]:
        _link_atomic(ckpt, out / "best.keras")
    for old in (out / "checkpoints").glob("epoch-*.keras"):
        if old.name != ckpt.name:
            old.unlink(missing_ok=True)


def train_stage_model(config: StageTrainConfig, train_data: StageData | None = None,
                      val_data: StageData | None = None) -> dict:
    """Train (or resume) a TW3 stage classifier on synthetic crops; returns a summary dict (also in run.json).

    Files in ``config.out``: run.json, log.csv, state.json, checkpoints/, last.keras, best.keras (lowest
    validation loss), val_stage_accuracy.json. ``resume=True`` continues from state.json (only ``epochs`` and
    ``time_budget_s`` may change)."""
    t_start = time.time()
    out = Path(config.out)
    state_path = out / "state.json"
    state: dict = {}
    if config.resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        saved = json.loads((out / "run.json").read_text())["config"]
        config = StageTrainConfig.from_json({**saved, "epochs": max(config.epochs, int(saved["epochs"])),
                                             "time_budget_s": config.time_budget_s, "out": str(out), "resume": True,
                                             "verbose": config.verbose})
    elif state_path.is_file():
        raise EdgeBoneageError(f"{out}: already holds a tw3 training run (state.json); pass --resume or another --out")
    if config.batch < 1 or config.epochs < 1 or config.n_train < 1 or config.n_val < 1:
        raise EdgeBoneageError("batch, epochs, n_train and n_val must be >= 1")
    if config.arch not in ("csp_resnext50_tw3", "resnext50_tw3"):
        raise EdgeBoneageError(f"unknown stage model {config.arch!r}: use csp_resnext50_tw3 or resnext50_tw3")
    out.mkdir(parents=True, exist_ok=True)

    import keras

    from edge_boneage.train import _truncate_log, import_custom_objects, load_model
    from keras_models.registry import build_model

    keras.utils.set_random_seed(config.seed)
    t0 = time.time()
    train_data = train_data or config.data("train")
    val_data = val_data or config.data("val")
    data_seconds = time.time() - t0
    xt, yt, drop_t = _fit_arrays(train_data)
    xv, yv, drop_v = _fit_arrays(val_data)

    initial_epoch = 0
    if state:
        model = load_model(out / "checkpoints" / state["checkpoint"])
        initial_epoch = int(state["epoch"]) + 1
        _truncate_log(out / "log.csv", int(state["epoch"]))
        _after_commit(out, state)
    else:
        import_custom_objects()
        model = build_model(config.arch, input_size=config.crop, **config.model_args)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.lr),
                      loss={"probs": keras.losses.SparseCategoricalCrossentropy()},
                      metrics={"probs": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
                      jit_compile=config.jit_compile)
        for stale in ("log.csv", "last.keras", "best.keras"):
            (out / stale).unlink(missing_ok=True)

    run_info = {"config": config.to_json(), "model_params": int(model.count_params()),
                "n_train_crops": int(yt.size), "n_val_crops": int(yv.size),
                "stage_a_crops_dropped": {"train": drop_t, "val": drop_v}, "data_seconds": data_seconds,
                "keras": keras.__version__, "backend": keras.backend.backend(), "started": time.time()}
    if state:
        prev = json.loads((out / "run.json").read_text())
        run_info["resumes"] = prev.get("resumes", []) + [{"at_epoch": initial_epoch, "time": time.time()}]
    write_json_atomic(out / "run.json", run_info)

    Batches = _batches_class()
    tr = Batches(xt, yt, config.batch, config.seed, True, initial_epoch)
    va = Batches(xv, yv, max(config.batch, 64), config.seed, False)

    class _EpochSeed(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            tr.set_epoch(epoch)

    history: list = []
    budget = config.time_budget_s
    cb = _checkpointer(out, state, t_start, budget, history)
    t_fit = time.time()
    if initial_epoch < config.epochs:
        model.fit(tr, validation_data=va, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=[_EpochSeed(), cb], verbose=config.verbose)
    fit_seconds = time.time() - t_fit
    final = json.loads(state_path.read_text()) if state_path.is_file() else {}
    best = out / "best.keras"
    val_acc = None
    if best.is_file():
        sm = StageModel(best)
        val_acc = stage_accuracy(sm.predict_images(val_data), val_data.grades)
        write_json_atomic(out / "val_stage_accuracy.json", val_acc)
    summary = {"out": str(out), "epochs_done": int(final.get("epoch", -1)) + 1, "initial_epoch": initial_epoch,
               "best_epoch": final.get("best_epoch"), "best_val_loss": final.get("best_val_loss"),
               "best_checkpoint": str(best) if best.is_file() else None, "fit_seconds": fit_seconds,
               "data_seconds": data_seconds, "stopped_by_time_budget": cb.stopped_by_budget,
               "val_stage_accuracy": val_acc["all"] if val_acc else None, "history": history}
    run_info.update({"finished": time.time(), "result": {k: v for k, v in summary.items() if k != "history"}})
    write_json_atomic(out / "run.json", run_info)
    return summary


__all__ = ["train_stage_model"]
