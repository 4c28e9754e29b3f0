"""What `--resume` prints in each case a user hits, for the age trainer and the TW3 stage trainer (issue 11).

    python -m benchmarks.resume_cases [--keep DIR]

Each case runs the installed CLI (`python -m edge_boneage.cli`) in a child process on tiny synthetic data inside a
fresh folder: a finished run resumed, a resume with changed settings, SIGTERM mid-run then --resume. It prints the
exit code, the last line the command wrote (stderr, else stdout) and the files the run folder holds afterwards
(hidden files included, so a left-over `.PID.link` or temporary shows). A case FAILS (exit 1 at the end) when its
exit code or phrase differs from what is written beside it, or when the output holds a Python traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "edge_boneage.cli"]

AGE = ["train", "--model", "mobilenetv3_large", "--model-arg", "alpha=0.35", "--data", "synth", "--synth-n", "24",
       "--size", "32", "--batch", "8", "--crop", "none", "--frame", "letterbox", "--verbose", "0"]
TW3 = ["tw3", "train", "--arch", "csp_resnext50_tw3", "--model-arg", "width_mult=0.25", "--model-arg", "depths=[1,1,1,1]",
       "--model-arg", "cardinality=8", "--crop", "32", "--image-size", "256", "--n-train", "16", "--n-val", "8",
       "--batch", "8", "--verbose", "0"]


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "tensorflow")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _last_line(proc_out: str, proc_err: str) -> str:
    lines = [ln for ln in (proc_err or "").splitlines() if ln.strip() and not ln.startswith(("I0000", "WARNING: All"))]
    if not lines:
        lines = [ln for ln in (proc_out or "").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _files(d: Path) -> str:
    return ", ".join(sorted(p.name for p in d.iterdir())) if d.is_dir() else "(no folder)"


def run(argv, timeout=900):
    p = subprocess.run(CLI + argv, capture_output=True, text=True, env=_env(), timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def sigterm_then_resume(argv, out: Path, epochs_flag: list[str]):
    """Start a long run, SIGTERM it once an epoch is committed; returns (rc, stdout, stderr) of the stopped run."""
    from edge_boneage.train import committed_epoch

    proc = subprocess.Popen(CLI + argv + epochs_flag + ["--out", str(out)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and committed_epoch(out) < 0 \
            and not (out / "state.json").is_file():
        time.sleep(0.5)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    o, e = proc.communicate(timeout=300)
    return proc.returncode, o, e


def cases(root: Path):
    """Yield (trainer, case, command shown, expected rc, phrase, thunk -> (rc, out, err), folder)."""
    for name, base, changed in (("age train", AGE, ["--lr", "0.01", "--batch", "4"]),
                                ("tw3 train", TW3, ["--lr", "0.01", "--batch", "4"])):
        out = root / name.replace(" ", "_")
        first = base + ["--epochs", "1", "--out", str(out)]
        yield name, "first run, 1 epoch", first, 0, None, lambda a=first: run(a), out
        yield name, "--resume a finished run", first + ["--resume"], 0, "already finished", \
            lambda a=first: run(a + ["--resume"]), out
        yield name, "--resume with changed --lr and --batch", first + ["--resume"] + changed, 1, "0.01", \
            lambda a=first + ["--resume"] + changed: run(a), out
        out2 = root / (name.replace(" ", "_") + "_term")
        yield name, "SIGTERM mid-run", base + ["--epochs", "40", "--out", str(out2)], 130, "--resume", \
            lambda b=base, o=out2: sigterm_then_resume(b, o, ["--epochs", "40"]), out2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="keep the run folders here (default: a temporary folder)")
    a = ap.parse_args(argv)
    tmp = None
    if a.keep:
        root = a.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="resume_cases_")
        root = Path(tmp.name)
    failed = 0
    print("| trainer | case | exit | expected | what it printed (last line) | run folder afterwards |")
    print("|---|---|---|---|---|---|")
    for trainer, case, _cmd, want_rc, phrase, thunk, folder in cases(root):
        rc, o, e = thunk()
        line = _last_line(o, e)
        ok = rc == want_rc and (phrase is None or phrase in (o + e)) and "Traceback" not in (o + e)
        failed += not ok
        shown = line.replace(str(root) + "/", "").replace("|", "\\|")
        print(f"| {trainer} | {case} | {rc} | {want_rc}{'' if ok else ' FAIL'} | `{shown[:220]}` | {_files(folder)} |",
              flush=True)
    print(f"\ncommands: `edge-boneage {' '.join(AGE)} --epochs 1 --out age_train` and "
          f"`edge-boneage {' '.join(TW3)} --epochs 1 --out tw3_train`, then the same with --resume as listed")
    if tmp:
        tmp.cleanup()
    print(f"{failed} case(s) failed" if failed else "all cases as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
