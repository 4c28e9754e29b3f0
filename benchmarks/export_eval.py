"""Export a trained age model to every LiteRT variant and evaluate each on its training run's held-out images.

    .venv/bin/python -m benchmarks.export_eval RUN_DIR [--calib rsna|synth] [--out DIR]

For RUN_DIR/best.keras (an `edge-boneage train` run; or --keras FILE): `edge-boneage export` to float32, fp16, dynamic and int8
(calibrated on --calib data; the parity gate decides), then `edge-boneage evaluate --from-run RUN_DIR` on the Keras
model and on every written file, i.e. the same held-out validation images the run never trained on. Prints a
markdown table: variant, size, parity gate, MAE (months), ±1-year accuracy, and each variant's MAE minus float32's.
Uses only the CLI, as a user would; every command is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [("float32", ["--float32"]), ("fp16", ["--fp16"]), ("dynamic", ["--dynamic"]),
            ("int8 (int8 I/O)", ["--int8"]), ("int8 (float I/O)", ["--int8", "--io", "float32"])]


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edge_boneage.cli", *args]
    print(f"$ edge-boneage {shlex.join(args)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow"))


def _evaluate(model: Path, run: Path, out: Path) -> dict:
    r = _cli(["evaluate", str(model), "--from-run", str(run), "--out", str(out), "--no-plots", "--no-gate"])
    if r.returncode != 0:
        raise SystemExit(f"evaluate failed: {r.stderr.strip()[-800:]}")
    return json.loads((out / "report.json").read_text())["overall"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="training run folder (best.keras, run.json)")
    ap.add_argument("--calib", choices=("rsna", "synth"), default="rsna", help="int8 calibration data")
    ap.add_argument("--rsna-dir", default=str(ROOT.parent / "shared" / "data" / "rsna"))
    ap.add_argument("--out", type=Path, help="folder for the .tflite files and reports (default RUN/variants)")
    ap.add_argument("--keras", type=Path, help="the .keras to export (default RUN/best.keras)")
    a = ap.parse_args(argv)
    run = a.run.resolve()
    src = (a.keras or run / "best.keras").resolve()
    if not src.is_file():
        raise SystemExit(f"{src}: no such file (train first)")
    out = (a.out or run / "variants").resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = [("Keras (.keras)", src.stat().st_size, "-", _evaluate(src, run, out / "eval_keras"))]
    for name, flags in VARIANTS:
        f = out / f"{src.stem}_{name.split()[0]}{'_fio' if 'float I/O' in name else ''}.tflite"
        f.unlink(missing_ok=True)
        extra = ["--calib", a.calib, "--rsna-dir", a.rsna_dir] if "--int8" in flags and a.calib == "rsna" else []
        r = _cli(["export", str(src), *flags, *extra, "--out", str(f)])
        if r.returncode != 0 or not f.is_file():
            reason = (r.stderr.strip().splitlines() or ["?"])[-1]
            rows.append((name, None, f"refused: {reason}", None))
            continue
        gate = next((ln.strip() for ln in r.stdout.splitlines() if ln.startswith("parity:")), "parity: ?")
        gate = gate.removeprefix("parity: ").rsplit(" (", 1)[0].replace(" - ", ": ", 1)  # "PASSED: <rule>"
        rows.append((name, f.stat().st_size, gate, _evaluate(f, run, out / f"eval_{f.stem}")))
    ref = next((m["mae_months"] for n, _, _, m in rows if n == "float32" and m), None)
    print(f"\nheld-out images of {run.name}: {rows[0][3]['n']} (the run's validation split, never trained on)\n")
    print("| variant | MiB | parity gate (export) | MAE (months) | ±1 y | MAE - float32 MAE (months) |")
    print("|---|---|---|---|---|---|")
    for name, size, gate, m in rows:
        if m is None:
            print(f"| {name} | - | {gate.replace('|', '/')} | - | - | - |")
            continue
        d = "-" if ref is None or name == "float32" else f"{m['mae_months'] - ref:+.3f}"
        print(f"| {name} | {size / 2**20:.2f} | {gate.replace('|', '/')} | {m['mae_months']:.3f} | "
              f"{100 * m['acc_1y']:.1f} % | {d} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
