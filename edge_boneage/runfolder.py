"""One resumable training-run folder, shared by the age trainer (edge_boneage.train) and the TW3 stage trainer
(edge_boneage.tw3_pipeline.training).

=====================  ==========================================================================================
``run.json``           ``{"config": ..., ...}``: the run's configuration (what a resume takes), environment, result;
                       ``resumes``: one ``{"at_epoch", "time"}`` per resume
``log.csv``            one row per committed epoch (``epoch`` 0-based, then every Keras log value)
``state.json``         the commit point of an epoch: ``{"epoch", "checkpoint", "best_epoch", <best value>}``
``checkpoints/``       ``epoch-NNNN.keras`` of the last committed epoch (older ones are deleted after the commit)
``last.keras``         hard link (or copy) of the last committed epoch's checkpoint (model + optimizer state)
``best.keras``         the checkpoint with the best monitored value so far
=====================  ==========================================================================================

The commit, at the end of epoch e (``epoch_commit_callback``), in this order: save ``checkpoints/epoch-e.keras``
(temp file + rename), append row e to ``log.csv`` (flushed + fsynced), write ``state.json`` (temp + rename: THE
commit), then link ``last.keras`` / ``best.keras`` to it and delete older epoch files. A resume (``RunFolder.begin``
with resume=True) reads ``state.json``; ``RunFolder.restore`` drops ``log.csv`` rows after the committed epoch and
re-links last/best; the trainer continues with ``initial_epoch = e + 1``.

What a resume may change is the trainer's choice (``may_change``, e.g. the number of epochs); any other setting the
user gives that differs from the saved run's is refused with one line naming each difference
(``RunFolder.refuse_changes``). A run that already committed all its epochs is not touched (``RunFolder.finished``).
The CLI texts of the three resume cases are here too (``finished_message``, ``interrupted_message``) with the
SIGTERM-as-Ctrl-C context (``sigterm_as_interrupt``), so both trainers say the same things.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

from edge_boneage import EdgeBoneageError
from edge_boneage.fileutil import write_json_atomic, write_text_atomic


def committed_epoch(run_dir: str | os.PathLike) -> int:
    """The last epoch a run has committed (its state.json, replaced atomically, never torn); -1 before the first."""
    try:
        return int(json.loads((Path(run_dir) / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """model.save to a temp `.keras` beside `path`, then rename (Keras insists on the .keras suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def link_atomic(src: Path, dst: Path) -> None:
    """dst := src (hard link when possible, else copy), replacing dst atomically."""
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.link.keras")
    if tmp.exists():
        tmp.unlink()
    try:
        if dst.exists() and os.path.samefile(src, dst):
            return  # already that file (rename onto a hard link of itself would leave tmp behind)
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    try:
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def truncate_log(path: Path, last_epoch: int) -> None:
    """Rewrite log.csv with one complete row per committed epoch 0..last_epoch (rows of epochs that never
    committed, half-written rows and duplicates are dropped; the last complete row of an epoch wins)."""
    header, rows = read_csv_rows(path)
    if not header:
        return
    by_epoch: dict[int, dict] = {}
    for r in rows:
        if any(r.get(k) in (None, "") for k in header) or None in r:
            continue
        try:
            e = int(r["epoch"])
        except ValueError:
            continue
        if e <= last_epoch:
            by_epoch[e] = r
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(by_epoch[e] for e in sorted(by_epoch))
    write_text_atomic(path, buf.getvalue())


def append_log_row(path: Path, row: dict) -> None:
    """Append one row to log.csv (header from the file, or from this first row), flushed and fsynced."""
    header, _ = read_csv_rows(path)
    if not header:
        header = list(row)
    new_file = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        if new_file:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def after_commit(out: Path, st: dict) -> None:
    """last.keras (and best.keras when this epoch is the best) := the committed checkpoint; older epochs deleted."""
    ckpt = out / "checkpoints" / st["checkpoint"]
    link_atomic(ckpt, out / "last.keras")
    if st.get("best_epoch") == st["epoch"]:
        link_atomic(ckpt, out / "best.keras")
    for old in (out / "checkpoints").glob("epoch-*.keras"):
        if old.name != ckpt.name:
            old.unlink(missing_ok=True)


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def config_differences(config, saved_config, explicit, may_change) -> list[str]:
    """'name old -> new' for every explicitly given setting (not in `may_change`) where `config` (the command's)
    differs from `saved_config` (the run's own, same dataclass)."""
    diffs = []
    for name in sorted(set(explicit) - set(may_change)):
        if not hasattr(config, name):
            continue
        new, old = _plain(getattr(config, name)), _plain(getattr(saved_config, name))
        if new != old:
            diffs.append(f"{name} {old!r} -> {new!r}")
    return diffs


class RunFolder:
    """The files of one run folder (see the module docstring); `what` names the run kind in messages."""

    def __init__(self, out: str | os.PathLike, what: str = "training run"):
        self.out = Path(out)
        self.what = what
        self.state_path = self.out / "state.json"
        self.run_json = self.out / "run.json"
        self.log = self.out / "log.csv"
        self.best = self.out / "best.keras"
        self.last = self.out / "last.keras"

    def begin(self, resume: bool) -> dict:
        """The committed state to resume from ({} for a new run); a folder holding a run needs resume=True."""
        if self.state_path.is_file():
            if not resume:
                raise EdgeBoneageError(f"{self.out}: already holds a {self.what} (state.json); pass --resume or "
                                       "another --out")
            try:
                return json.loads(self.state_path.read_text())
            except (OSError, ValueError) as exc:
                raise EdgeBoneageError(f"{self.state_path}: unreadable ({type(exc).__name__}: {exc})") from None
        return {}

    def saved_run(self) -> dict:
        try:
            run = json.loads(self.run_json.read_text())
        except FileNotFoundError:
            raise EdgeBoneageError(f"{self.run_json}: missing (state.json without run.json: not a resumable "
                                   f"{self.what})") from None
        except (OSError, ValueError) as exc:
            raise EdgeBoneageError(f"{self.run_json}: unreadable ({type(exc).__name__}: {exc})") from None
        return run

    def saved_config(self) -> dict:
        cfg = self.saved_run().get("config")
        if not isinstance(cfg, dict):
            raise EdgeBoneageError(f"{self.run_json}: records no config")
        return cfg

    def refuse_changes(self, config, saved_config, explicit, may_change) -> None:
        """One-line refusal naming every explicitly given setting that differs from the saved run's."""
        if explicit is None:
            return
        diffs = config_differences(config, saved_config, explicit, may_change)
        if diffs:
            raise EdgeBoneageError(f"{self.out}: --resume keeps the run's own settings, but this command changes "
                                   f"{'; '.join(diffs)} (drop those flags, or start a new run with another --out)")

    def resumed_config(self, cls, config, explicit, may_change, keep=()):
        """The config a resume runs with: the saved run's (a `cls`, e.g. TrainConfig), after refusing any explicit
        change outside `may_change`; `epochs` is the larger of the two, `out` / `verbose` and the fields in `keep`
        come from this invocation."""
        saved = self.saved_config()
        self.refuse_changes(config, cls.from_json(saved), explicit, may_change)
        now = {k: getattr(config, k) for k in ("verbose", *keep)}
        return cls.from_json({**saved, "epochs": max(int(config.epochs), int(saved.get("epochs", 0))),
                              "out": str(self.out), "resume": True, **now})

    def finished(self, state: dict, epochs: int) -> bool:
        """The run committed all of its `epochs` already (and has its best model)."""
        return bool(state) and int(state["epoch"]) + 1 >= int(epochs) and self.best.is_file()

    def checkpoint(self, state: dict) -> Path:
        return self.out / "checkpoints" / state["checkpoint"]

    def restore(self, state: dict) -> int:
        """Prepare a resume from `state`: log rows of uncommitted epochs dropped, last/best re-linked; returns
        the first epoch to train."""
        truncate_log(self.log, int(state["epoch"]))
        after_commit(self.out, state)
        return int(state["epoch"]) + 1

    def start_fresh(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in (self.log, self.last, self.best):
            stale.unlink(missing_ok=True)

    def write_run_info(self, run_info: dict, *, resumed_at: int | None = None) -> None:
        """run.json := run_info (atomic); a resume appends to the previous run.json's ``resumes``."""
        if resumed_at is not None:
            prev = self.saved_run()
            run_info["resumes"] = prev.get("resumes", []) + [{"at_epoch": resumed_at, "time": time.time()}]
        write_json_atomic(self.run_json, run_info)

    def final_state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}


def epoch_commit_callback(folder: RunFolder, state: dict, *, monitor: str, fallback: str, best_key: str,
                          best_extra: tuple[str, ...] = (), timed: bool = False, on_commit=None):
    """The per-epoch commit (module docstring) as a Keras callback. The best epoch is the lowest ``logs[monitor]``
    (``logs[fallback]`` without validation), stored in state as `best_key` (plus `best_extra` log values of that
    epoch); `timed` adds the epoch's ``seconds`` to its log row. ``on_commit(callback, epoch, row)`` runs after
    each commit (e.g. to stop on a time budget through ``callback.model.stop_training``)."""
    import keras

    out = folder.out

    class EpochCommit(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.state = dict(state)
            self.t_epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self.t_epoch = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            ckpt = out / "checkpoints" / f"epoch-{epoch:04d}.keras"
            save_model_atomic(self.model, ckpt)
            row = {"epoch": epoch, **dict(sorted(logs.items()))}
            if timed:
                row["seconds"] = time.time() - (self.t_epoch or time.time())
            append_log_row(folder.log, row)
            val = logs.get(monitor, logs.get(fallback))
            st = dict(self.state)
            st.update({"epoch": epoch, "checkpoint": ckpt.name, "time": time.time()})
            if val is not None and (st.get(best_key) is None or val < st[best_key]):
                st[best_key], st["best_epoch"] = val, epoch
                for k in best_extra:
                    st[f"best_{k}"] = logs.get(k)
            write_json_atomic(folder.state_path, st)  # <- the commit
            self.state = st
            after_commit(out, st)
            if on_commit:
                on_commit(self, epoch, row)

    return EpochCommit()


def finished_message(out, epochs_done: int) -> str:
    return (f"{out}: this run already finished its {epochs_done} epochs; nothing to do "
            f"(pass --resume --epochs N with N > {epochs_done} to train longer)")


def interrupted_message(command: str, out) -> str:
    return (f"edge-boneage {command}: interrupted; the last committed epoch is kept: continue with "
            f"edge-boneage {command} --resume --out {out}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt (stops like Ctrl-C: the last committed epoch stays) inside the block."""

    def _term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def explicit_settings(args, defaults: dict, rename: dict | None = None) -> set[str]:
    """The CLI settings given with a non-default value, as config field names (`rename`: flag dest -> field)."""
    rename = rename or {}
    return {rename.get(k, k) for k, v in vars(args).items() if k != "parser_defaults" and v != defaults.get(k)}


__all__ = ["RunFolder", "after_commit", "append_log_row", "committed_epoch", "config_differences",
           "epoch_commit_callback", "explicit_settings", "finished_message", "interrupted_message", "link_atomic",
           "read_csv_rows", "save_model_atomic", "sigterm_as_interrupt", "truncate_log"]
