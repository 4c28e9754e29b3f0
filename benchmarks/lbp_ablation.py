"""Seed 003's Table 2 LBP ablation, re-run at CPU scale: RIL-MobileNetV3-L with lbp none / default / ror (+ plain).

    python -m benchmarks.lbp_ablation --rsna-dir ../shared/data/rsna --root ~/runs/lbp_ablation [--epochs 12]

Each variant trains with the identical recipe (the CPU recipe of edge_boneage.train_config.RECIPES, from random weights:
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

import numpy as np

PAPER_TABLE2_MAE_YEARS = {"plain MobileNetV3-L": 0.887, "LBP (default)": 0.569, "circular LBP": 0.475,
                          "rotation-invariant LBP (ror)": 0.395}
VARIANTS = (("none", "no LBP (grey)"), ("default", "LBP (default)"), ("ror", "rotation-invariant LBP (ror)"),
            ("plain", "plain MobileNetV3-L (no RIL head)"))


FAMILIES = {  # plain model, RIL model, extra train arguments
    "mobilenetv3": ("mobilenetv3_large", "ril_mobilenetv3_large", ["--pretrained", "none"]),
    "efficientnet_lite0": ("efficientnet_lite0", "ril_efficientnet_lite0", ["--pretrained", "imagenet"]),
}


def train_cmd(lbp: str, a, out: Path) -> list[str]:
    plain, ril, extra = FAMILIES[a.family]
    model = ["--model", plain] if lbp == "plain" else ["--model", ril, "--model-arg", f"lbp={lbp}"]
    if a.family == "mobilenetv3":
        model += ["--model-arg", f"alpha={a.alpha}"]
    cmd = [sys.executable, "-m", "edge_boneage.cli", "train", *model, "--data", "rsna",
           "--rsna-dir", str(a.rsna_dir), "--split", "protocol", "--size", str(a.size), "--epochs", str(a.epochs),
           *(["--lr", str(a.lr)] if a.lr is not None else []), "--bn-momentum", "0.99", *extra, "--out", str(out),
           "--verbose", "2"]
    if (out / "state.json").is_file():
        cmd.append("--resume")
    return cmd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True, help="folder for the three run folders")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--alpha", type=float, default=0.35, help="MobileNetV3 width (family mobilenetv3)")
    ap.add_argument("--family", choices=tuple(FAMILIES), default="mobilenetv3",
                    help="mobilenetv3 (the paper's backbone, random init: no offline ImageNet weights) or "
                         "efficientnet_lite0 (ImageNet init): the RIL head vs the plain network on that backbone")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--lr", type=float, help="default: 1e-3 for mobilenetv3, the CPU recipe's for efficientnet_lite0")
    ap.add_argument("--only", choices=[v for v, _ in VARIANTS], action="append")
    ap.add_argument("--eval-only", action="store_true", help="score the existing runs, train nothing")
    a = ap.parse_args(argv)
    if a.lr is None and a.family == "mobilenetv3":
        a.lr = 1e-3
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
        if a.family != "mobilenetv3":
            label = label.replace("MobileNetV3-L", "EfficientNet-Lite0")
        rows.append((label, state["epoch"] + 1, state["best_epoch"], state["best_val_mae"], r))
    init = "from random weights" if a.family == "mobilenetv3" else "from ImageNet weights"
    width = f"alpha {a.alpha}, " if a.family == "mobilenetv3" else ""
    print(f"{FAMILIES[a.family][1]} vs {FAMILIES[a.family][0]}, {width}{a.size} px, CPU recipe {init}, lr {a.lr}, "
          f"up to {a.epochs} epochs (identical for every row); test = protocol test split")
    if a.lr is None:
        print("(lr: the CPU recipe's default)")
    print(f"{'variant':<32} {'epochs':>6} {'best ep':>7} {'val MAE mo':>10} {'test MAE mo':>11} {'95% CI':>16} "
          f"{'test MAE y':>10}")
    for label, ep, best, val, r in rows:
        print(f"{label:<32} {ep:>6} {best:>7} {val:>10.2f} {r['mae']:>11.2f} {'[%.2f, %.2f]' % tuple(r['mae_ci']):>16} "
              f"{r['mae'] / 12:>10.3f}")
    # context: a constant prediction (the training split's mean age) on the same test split
    from edge_boneage import datasets
    from edge_boneage.dataconfig import protocol_split

    samples = list(datasets.load_rsna_csv(a.rsna_dir / "labels.csv", a.rsna_dir / "img100").samples)
    tr, _va, te = protocol_split(samples, a.rsna_dir)
    mean = float(np.mean([s.boneage_months for s in tr]))
    err = np.abs(np.array([s.boneage_months for s in te]) - mean)
    from benchmarks.age_protocol import bootstrap_ci

    print(f"{'constant: training-split mean age':<32} {'-':>6} {'-':>7} {'-':>10} {err.mean():>11.2f} "
          f"{'[%.2f, %.2f]' % bootstrap_ci(err):>16} {err.mean() / 12:>10.3f}")
    print("\nseed 003 Table 2 (their RSNA split, 224 px, 80 epochs on a GPU), MAE in years:")
    for k, v in PAPER_TABLE2_MAE_YEARS.items():
        print(f"  {k:<32} {v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
