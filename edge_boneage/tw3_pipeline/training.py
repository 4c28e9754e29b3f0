"""Training a stage classifier on synthetic crops (``train_stage_model``): sparse categorical cross-entropy on
``grade - 1`` (stage-A crops have no class and are left out), per-epoch checkpoints, state commit and resume
through edge_boneage.runfolder (the age trainer's run folder), an optional time budget. The run's configuration:
``run_config.StageTrainConfig``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.fileutil import write_json_atomic
from edge_boneage.runfolder import RunFolder, epoch_commit_callback
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


def _budget_stop(t_start: float, budget: float | None):
    """on_commit hook of the run folder's epoch commit: stop after the epoch that would overrun the time budget."""
    durations: list[float] = []

    def hook(cb, epoch, row):
        durations.append(time.time() - cb.t_epoch)  # the whole epoch, its commit included
        if budget is not None and time.time() - t_start + float(np.mean(durations)) > budget:
            cb.model.stop_training = True
            hook.stopped = True

    hook.stopped = False
    return hook


#: settings a resume may change: the run length, this invocation's time budget, where/how it prints
RESUME_MAY_CHANGE = {"epochs", "time_budget_s", "out", "resume", "verbose"}


def train_stage_model(config: StageTrainConfig, train_data: StageData | None = None,
                      val_data: StageData | None = None, *, explicit=None) -> dict:
    """Train (or resume) a TW3 stage classifier on synthetic crops; returns a summary dict (also in run.json).

    Files in ``config.out``: run.json, log.csv, state.json, checkpoints/, last.keras, best.keras (lowest
    validation loss), val_stage_accuracy.json: an edge_boneage.runfolder run folder, as the age trainer's.
    ``resume=True`` continues from state.json (only ``epochs`` and ``time_budget_s`` may change; `explicit`, the
    settings the user gave, are refused naming each one that differs from the run's). A run that already finished
    its epochs is not touched: the summary says so (``already_finished``)."""
    t_start = time.time()
    out = Path(config.out)
    folder = RunFolder(out, "tw3 training run")
    state = folder.begin(config.resume)
    if state:
        config = folder.resumed_config(StageTrainConfig, config, explicit, RESUME_MAY_CHANGE, keep=("time_budget_s",))
    if config.batch < 1 or config.epochs < 1 or config.n_train < 1 or config.n_val < 1:
        raise EdgeBoneageError("batch, epochs, n_train and n_val must be >= 1")
    if config.arch not in ("csp_resnext50_tw3", "resnext50_tw3"):
        raise EdgeBoneageError(f"unknown stage model {config.arch!r}: use csp_resnext50_tw3 or resnext50_tw3")
    if folder.finished(state, config.epochs):
        return {"out": str(out), "epochs_done": int(state["epoch"]) + 1, "initial_epoch": int(state["epoch"]) + 1,
                "best_epoch": state.get("best_epoch"), "best_val_loss": state.get("best_val_loss"),
                "best_checkpoint": str(folder.best), "fit_seconds": 0.0, "data_seconds": 0.0,
                "stopped_by_time_budget": False, "val_stage_accuracy": None, "history": [], "already_finished": True}
    out.mkdir(parents=True, exist_ok=True)

    import keras

    from edge_boneage.modelfile import import_custom_objects, load_model
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
        model = load_model(folder.checkpoint(state))
        initial_epoch = folder.restore(state)
    else:
        import_custom_objects()
        model = build_model(config.arch, input_size=config.crop, **config.model_args)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.lr),
                      loss={"probs": keras.losses.SparseCategoricalCrossentropy()},
                      metrics={"probs": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
                      jit_compile=config.jit_compile)
        folder.start_fresh()

    run_info = {"config": config.to_json(), "model_params": int(model.count_params()),
                "n_train_crops": int(yt.size), "n_val_crops": int(yv.size),
                "stage_a_crops_dropped": {"train": drop_t, "val": drop_v}, "data_seconds": data_seconds,
                "keras": keras.__version__, "backend": keras.backend.backend(), "started": time.time()}
    folder.write_run_info(run_info, resumed_at=initial_epoch if state else None)

    Batches = _batches_class()
    tr = Batches(xt, yt, config.batch, config.seed, True, initial_epoch)
    va = Batches(xv, yv, max(config.batch, 64), config.seed, False)

    class _EpochSeed(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            tr.set_epoch(epoch)

    history: list = []
    budget = config.time_budget_s
    stop = _budget_stop(t_start, budget)

    def on_commit(cb, epoch, row):
        history.append(row)
        stop(cb, epoch, row)

    cb = epoch_commit_callback(folder, state, monitor="val_loss", fallback="loss", best_key="best_val_loss",
                               best_extra=("val_accuracy",), timed=True, on_commit=on_commit)
    t_fit = time.time()
    if initial_epoch < config.epochs:
        model.fit(tr, validation_data=va, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=[_EpochSeed(), cb], verbose=config.verbose)
    fit_seconds = time.time() - t_fit
    final = folder.final_state()
    best = folder.best
    val_acc = None
    if best.is_file():
        sm = StageModel(best)
        val_acc = stage_accuracy(sm.predict_images(val_data), val_data.grades)
        write_json_atomic(out / "val_stage_accuracy.json", val_acc)
    summary = {"out": str(out), "epochs_done": int(final.get("epoch", -1)) + 1, "initial_epoch": initial_epoch,
               "best_epoch": final.get("best_epoch"), "best_val_loss": final.get("best_val_loss"),
               "best_checkpoint": str(best) if best.is_file() else None, "fit_seconds": fit_seconds,
               "data_seconds": data_seconds, "stopped_by_time_budget": stop.stopped,
               "val_stage_accuracy": val_acc["all"] if val_acc else None, "history": history,
               "already_finished": False}
    run_info.update({"finished": time.time(), "result": {k: v for k, v in summary.items() if k != "history"}})
    write_json_atomic(out / "run.json", run_info)
    return summary


__all__ = ["train_stage_model"]
