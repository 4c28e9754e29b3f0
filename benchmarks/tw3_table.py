"""TW3 RUS pipeline on synthetic hands: CPU-sized CSP-ResNeXt50 and ResNeXt50 stage classifiers, the TopN threshold
sweep on validation images and the Table-4-style comparison (classic / Top2 / TopN, by sex) on test images.

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.tw3_table --out runs/tw3_bench

Defaults: 1,500 synthetic hands at 512 px, ages 6-15 y (the paper's range), seed 0: images 0-999 train,
1000-1249 validation (checkpoint choice + threshold P), 1250-1499 test. Crops 64 px. Both networks use the SAME
reduced knobs (input_size=64, depths=[1,1,1,1], width_mult=0.25, cardinality=8, base_width=4; the paper's are
224, [3,4,6,3], 1.0, 32, 4), Adam lr 1e-3, batch 32, at most --budget-min minutes of training each.
Writes OUT/<arch>/ (training run + eval/report.json, report.md, sweep.png) and OUT/summary.json / summary.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

KNOBS = {"depths": [1, 1, 1, 1], "width_mult": 0.25, "cardinality": 8, "base_width": 4}


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.node()} | {cpu} | {os.cpu_count()} logical CPUs | load avg {load:.1f} at start | Python {platform.python_version()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/tw3_bench")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-val", type=int, default=250)
    ap.add_argument("--n-test", type=int, default=250)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40, help="upper bound; the time budget usually stops first")
    ap.add_argument("--budget-min", type=float, default=12.0, help="training minutes per model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--archs", nargs="+", default=["csp_resnext50_tw3", "resnext50_tw3"])
    args = ap.parse_args(argv)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from edge_boneage.fileutil import write_json_atomic, write_text_atomic
    from edge_boneage.tw3_pipeline.constants import DEFAULT_AGE_RANGE, DEFAULT_MARGIN
    from edge_boneage.tw3_pipeline.reports import evaluate, report_markdown
    from edge_boneage.tw3_pipeline.run_config import StageTrainConfig
    from edge_boneage.tw3_pipeline.training import train_stage_model

    started = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out)
    header = [f"command: {' '.join([Path(sys.executable).name, '-m', 'benchmarks.tw3_table', *(argv or sys.argv[1:])])}",
              f"date: {started.isoformat(timespec='seconds')}", f"machine: {_machine()}",
              f"keras {keras.__version__} ({keras.backend.backend()}), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
              f"data: synthetic, {args.image_size} px, ages {DEFAULT_AGE_RANGE[0]:g}-{DEFAULT_AGE_RANGE[1]:g} y, "
              f"seed {args.seed}; train {args.n_train} / val {args.n_val} / test {args.n_test} hands; crops {args.crop} px, "
              f"margin {DEFAULT_MARGIN}", f"model knobs (both): input_size={args.crop}, {KNOBS}; Adam lr {args.lr}, "
              f"batch {args.batch}, <= {args.budget_min:g} min training each"]
    print("\n".join(header), flush=True)

    base = StageTrainConfig(crop=args.crop, image_size=args.image_size, n_train=args.n_train, n_val=args.n_val,
                            n_test=args.n_test, seed=args.seed, epochs=args.epochs, batch=args.batch, lr=args.lr,
                            time_budget_s=60.0 * args.budget_min, model_args=dict(KNOBS), verbose=0)
    t0 = time.time()
    data = {k: base.data(k) for k in ("train", "val", "test")}
    data_s = time.time() - t0
    print(f"generated + cropped {sum(len(d) for d in data.values())} hands in {data_s:.0f} s", flush=True)

    results = {}
    for arch in args.archs:
        cfg = StageTrainConfig.from_json({**base.to_json(), "arch": arch, "out": str(out / arch)})
        s = train_stage_model(cfg, data["train"], data["val"])
        rep = evaluate(s["best_checkpoint"], data["val"], data["test"], out / arch / "eval",
                       meta={"arch": arch, "knobs": KNOBS})
        params = json.loads((out / arch / "run.json").read_text())["model_params"]
        results[arch] = {"params": params, "float32_mib": params * 4 / 2**20, "epochs": s["epochs_done"],
                         "best_epoch": s["best_epoch"], "fit_seconds": s["fit_seconds"],
                         "stopped_by_time_budget": s["stopped_by_time_budget"], "report": rep}
        print(f"\n## {arch}: {params:,} parameters ({params * 4 / 2**20:.2f} MiB float32), {s['epochs_done']} epochs "
              f"in {s['fit_seconds'] / 60:.1f} min (best epoch {s['best_epoch']})\n", flush=True)
        print(report_markdown(rep), flush=True)

    lines = ["| network | params | epochs | TopN P (m/f) | classic MAE m/f | Top2 MAE m/f | TopN MAE m/f | "
             "TopN +-1 y m/f | stage acc (exact / +-1) |", "|---|---|---|---|---|---|---|---|---|"]
    for arch, r in results.items():
        t4, rep = r["report"]["table4"], r["report"]
        mf = lambda m, k="mae_years", f=".3f": f"{format(t4[m]['male'][k], f)} / {format(t4[m]['female'][k], f)}"  # noqa: E731
        sa = rep["stage_accuracy"]["all"]
        lines.append(f"| {arch} | {r['params']:,} | {r['epochs']} | {rep['thresholds_used']['male']:.2f} / "
                     f"{rep['thresholds_used']['female']:.2f} | {mf('classic')} | {mf('top2')} | {mf('topn')} | "
                     f"{100 * t4['topn']['male']['acc_1y']:.1f} / {100 * t4['topn']['female']['acc_1y']:.1f} % | "
                     f"{100 * sa['acc']:.1f} / {100 * sa['acc_pm1']:.1f} % |")
    oracle = next(iter(results.values()))["report"].get("oracle") if results else None
    if oracle:
        lines.append(f"\nTrue stages through the same curve (the synthetic labels' own floor): MAE "
                     f"{oracle['male']['mae_years']:.3f} / {oracle['female']['mae_years']:.3f} y (male / female).")
    summary_md = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n"
    print("\n## Summary (test split; MAE in years)\n\n" + "\n".join(lines), flush=True)
    write_text_atomic(out / "summary.md", summary_md)
    write_json_atomic(out / "summary.json", {"header": header, "data_seconds": data_s, "results": results})
    print(f"\nwrote {out / 'summary.md'} (total {(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
