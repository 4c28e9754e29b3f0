"""Training curves of runs: training and validation MAE (months) by epoch, from each run's log.csv.

    python -m benchmarks.plot_curves RUN [RUN ...] --out docs/results/curves.png [--label NAME ...]

Also prints each run's table (epoch, train MAE, validation MAE) so the figure's numbers are in the record.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return [{"epoch": int(r["epoch"]), "train": float(r["age_mae"]), "val": float(r["val_age_mae"])}
                for r in csv.DictReader(f)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--label", action="append")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = a.label or [r.name for r in a.runs]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, label in zip(a.runs, labels):
        rows = read_log(run)
        print(f"{label} ({run}):")
        print("  epoch  train MAE  val MAE")
        for r in rows:
            print(f"  {r['epoch']:>5}  {r['train']:>9.2f}  {r['val']:>7.2f}")
        e = [r["epoch"] + 1 for r in rows]
        line, = ax.plot(e, [r["val"] for r in rows], marker="o", ms=3, label=f"{label} (validation)")
        ax.plot(e, [r["train"] for r in rows], ls="--", color=line.get_color(), alpha=0.6, label=f"{label} (training)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE (months)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(f".{a.out.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
