"""Kill a real `edge-boneage train` run with SIGKILL in the middle of an epoch, resume it, and show its log.

    .venv/bin/python -m benchmarks.kill_resume [--data rsna|synth] [--epochs 5] [--kill-after 1] [--out DIR]

Starts the training CLI in a child process, waits until epoch --kill-after is committed (state.json) and the next
epoch has run for a moment, sends SIGKILL, prints what the run folder holds, runs the same command with --resume
and prints log.csv and run.json's "resumes". Exits 1 unless log.csv lists every epoch exactly once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_boneage.runfolder import committed_epoch  # noqa: E402  (no TensorFlow import at module level)


def _epochs(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(r["epoch"]) for r in csv.DictReader(open(log, newline="")) if r.get("epoch", "").isdigit()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("rsna", "synth"), default="rsna")
    ap.add_argument("--rsna-dir", default=str(ROOT.parent / "shared" / "data" / "rsna"))
    ap.add_argument("--limit", type=int, default=1500, help="RSNA images used (speed)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--kill-after", type=int, default=1, help="kill once this epoch (0-based) is committed")
    ap.add_argument("--out", type=Path, help="run folder (default: a temporary one)")
    a = ap.parse_args(argv)
    if not 1 <= a.kill_after < a.epochs - 1:
        ap.error("--kill-after must be >= 1 (an epoch to time) and leave at least one epoch to run after it")

    with tempfile.TemporaryDirectory() as tmp:
        out = a.out or Path(tmp) / "run"
        cmd = [sys.executable, "-m", "edge_boneage.cli", "train", "--model", "mobilenetv3_large",
               "--model-arg", "alpha=0.35", "--size", "64", "--epochs", str(a.epochs), "--batch", "32",
               "--bn-momentum", "0.99", "--verbose", "0", "--out", str(out)]
        cmd += (["--data", "rsna", "--rsna-dir", a.rsna_dir, "--limit", str(a.limit)] if a.data == "rsna"
                else ["--data", "synth", "--synth-n", "512"])
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        print(f"$ {shlex.join(cmd)}", flush=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = {}  # committed epoch -> when it was first seen
        while committed_epoch(out) < a.kill_after and proc.poll() is None:
            seen.setdefault(committed_epoch(out), time.time())
            time.sleep(0.02)
        if proc.poll() is not None:
            print(f"training ended before the kill (exit {proc.returncode}): {proc.stderr.read()[-1500:]}")
            return 1
        now = time.time()
        epoch_s = now - seen.get(a.kill_after - 1, t0)  # duration of the last committed epoch
        # let the next epoch get under way (about 40 % of an epoch), so the kill lands mid-epoch
        while time.time() - now < 0.4 * epoch_s and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"SIGKILL after {time.time() - t0:.1f} s; committed epoch in state.json: {committed_epoch(out)}; "
              f"log.csv epochs: {_epochs(out / 'log.csv')}; files: {sorted(p.name for p in out.iterdir())}")
        print(f"$ {shlex.join(cmd + ['--resume'])}", flush=True)
        r = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"resume failed ({r.returncode}): {r.stderr[-1500:]}")
            return 1
        print("\nlog.csv after the resume:")
        print((out / "log.csv").read_text().rstrip())
        run = json.loads((out / "run.json").read_text())
        print(f"\nrun.json resumes: {json.dumps([{'at_epoch': x['at_epoch']} for x in run.get('resumes', [])])}")
        got = _epochs(out / "log.csv")
        ok = got == list(range(a.epochs))
        print(f"epochs in log.csv: {got} -> {'every epoch exactly once' if ok else 'NOT exactly once'}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
