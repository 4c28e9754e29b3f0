"""Seed 003's Table 2 LBP ablation, re-run at CPU scale: RIL-MobileNetV3-L with lbp none / default / ror (+ plain).

    python -m benchmarks.lbp_ablation --rsna-dir ../shared/data/rsna --root ~/runs/lbp_ablation [--epochs 12]

Each variant trains with the identical recipe (the CPU recipe of edge_boneage.train.RECIPES, from random weights:
MobileNetV3 has no offline ImageNet weights here; --lr, --epochs, alpha and size as given, same seed) on the
protocol's training split, validation picks the epoch, and the best checkpoint is scored on the protocol's test
split (benchmarks.age_protocol: bootstrap 95 % intervals). Runs resume: a killed ablation continues where it
stopped (each run with ``train --resume``; a finished run is only re-evaluated). Printed next to the paper's rows.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

PAPER_TABLE2_MAE_YEARS = {"plain MobileNetV3-L": 0.887, "LBP (default)": 0.569, "circular LBP": 0.475,
                          "rotation-invariant LBP (ror)": 0.395}
VARIANTS = (("none", "no LBP (grey)"), ("default", "LBP (default)"), ("ror", "rotation-invariant LBP (ror)"),
            ("plain", "plain MobileNetV3-L (no RIL head)"))


def train_cmd(lbp: str, a, out: Path) -> list[str]:
    model = ["--model", "mobilenetv3_large"] if lbp == "plain" else ["--model", "ril_mobilenetv3_large",
                                                                     "--model-arg", f"lbp={lbp}"]
    cmd = [sys.executable, "-m", "edge_boneage.cli", "train", *model, "--model-arg", f"alpha={a.alpha}", "--data", "rsna",
           "--rsna-dir", str(a.rsna_dir), "--split", "protocol", "--size", str(a.size), "--epochs", str(a.epochs),
           "--lr", str(a.lr), "--bn-momentum", "0.99", "--pretrained", "none", "--out", str(out), "--verbose", "2"]
    if (out / "state.json").is_file():
        cmd.append("--resume")
    return cmd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True, help="folder for the three run folders")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--only", choices=[v for v, _ in VARIANTS], action="append")
    ap.add_argument("--eval-only", action="store_true", help="score the existing runs, train nothing")
    a = ap.parse_args(argv)
    from benchmarks.age_protocol import evaluate

    rows = []
    for lbp, label in VARIANTS:
        if a.only and lbp not in a.only:
            continue
        out = a.root / ("plain" if lbp == "plain" else f"ril_lbp_{lbp}")
        if not a.eval_only:
            rc = subprocess.call(train_cmd(lbp, a, out))
            if rc != 0:
                print(f"lbp={lbp}: training exited {rc}", file=sys.stderr)
                return rc
        if not (out / "best.keras").is_file():
            print(f"lbp={lbp}: no best.keras in {out}", file=sys.stderr)
            continue
        import json

        state = json.loads((out / "state.json").read_text())
        r = evaluate(out / "best.keras", a.rsna_dir, do_zoom=False)["test"]["summary"]["overall"]
        rows.append((label, state["epoch"] + 1, state["best_epoch"], state["best_val_mae"], r))
    print(f"RIL-MobileNetV3-L alpha {a.alpha}, {a.size} px, CPU recipe from random weights, lr {a.lr}, "
          f"up to {a.epochs} epochs (identical for every row); test = protocol test split")
    print(f"{'variant':<32} {'epochs':>6} {'best ep':>7} {'val MAE mo':>10} {'test MAE mo':>11} {'95% CI':>16} "
          f"{'test MAE y':>10}")
    for label, ep, best, val, r in rows:
        print(f"{label:<32} {ep:>6} {best:>7} {val:>10.2f} {r['mae']:>11.2f} {'[%.2f, %.2f]' % tuple(r['mae_ci']):>16} "
              f"{r['mae'] / 12:>10.3f}")
    print("\nseed 003 Table 2 (their RSNA split, 224 px, 80 epochs on a GPU), MAE in years:")
    for k, v in PAPER_TABLE2_MAE_YEARS.items():
        print(f"  {k:<32} {v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
