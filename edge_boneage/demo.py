"""The main job on the embedded default data, end to end, in a few minutes on a laptop CPU:

synthetic hands -> train a small RIL-MobileNetV3-Large -> evaluate -> export LiteRT float32 and full int8
(parity-gated, metadata inside) -> evaluate the .tflite files through the runtime -> predict one radiograph.

Every step is a library call that the CLI verbs also use; this module only chains them and summarises.
The model is deliberately small (CPU, minutes): its accuracy says nothing about what the architecture can do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_boneage.fileutil import write_json_atomic

QUICK = dict(size=96, synth_n=480, epochs=4, batch=16, lr=1e-3,
             bn_momentum=0.9,  # MobileNetV3's 0.999 leaves validation flat in short runs (edge_boneage.train)
             model_args=dict(alpha=0.35, minimalistic=True, region_dim=64))


def run_demo(out: str | Path, *, size: int = QUICK["size"], synth_n: int = QUICK["synth_n"],
             epochs: int = QUICK["epochs"], seed: int = 0, log=print) -> dict:
    from edge_boneage.convert.export import export
    from edge_boneage import train as T
    from edge_boneage.dataconfig import run_val_source
    from edge_boneage.evaluation import evaluate_model
    from edge_boneage.train_config import TrainConfig
    from edge_boneage.predict import predict_file
    from edge_boneage.synth import write_dataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    summary: dict = {"steps": {}}

    def step(name, t0, **info):
        summary["steps"][name] = {"seconds": round(time.time() - t0, 1), **info}
        log(f"[demo] {name}: done in {time.time() - t0:.1f} s {json.dumps(info) if info else ''}")

    t0 = time.time()
    synth_dir = out / "synth"
    write_dataset(synth_dir, 24, size=256, seed=seed + 999, overwrite=True)
    step("synth", t0, folder=str(synth_dir), images=24)

    t0 = time.time()
    cfg = TrainConfig(model="ril_mobilenetv3_large", model_args=dict(QUICK["model_args"]), data="synth",
                      synth_n=synth_n, size=size, epochs=epochs, batch=QUICK["batch"], lr=QUICK["lr"],
                      bn_momentum=QUICK["bn_momentum"], seed=seed, out=str(out / "run"),
                      resume=(out / "run" / "state.json").is_file(), verbose=2)
    result = T.train(cfg)
    step("train", t0, best_val_mae_months=result.best_val_mae_months, epochs=result.epochs_done)

    best = Path(result.best_checkpoint or result.last_checkpoint)
    val = run_val_source(out / "run")
    rows = []
    for quant in ("float32", "int8"):
        t0 = time.time()
        target = out / f"model_{quant}.tflite"
        res = export(best, target, quantization=quant, io="uint8" if quant == "int8" else "int8",
                     calib="synth", calib_n=64, check_n=32, log=lambda *a, **k: None)
        rep = evaluate_model(target, val, out / f"eval_{quant}", plots=quant == "float32", gate=False)
        size_kb = target.stat().st_size / 1024
        rows.append({"variant": quant, "file": str(target), "size_kib": round(size_kb, 1),
                     "val_mae_months": rep["overall"]["mae_months"], "parity": res.message})
        step(f"export+evaluate {quant}", t0, size_kib=round(size_kb, 1), val_mae_months=rep["overall"]["mae_months"])

    t0 = time.time()
    image = sorted((synth_dir / "images").glob("*.png"))[0]
    import csv

    with open(synth_dir / "labels.csv", newline="") as f:  # the sample's own label: true sex and true age
        label = next(r for r in csv.DictReader(f) if r["id"] == image.stem)
    sex = "M" if label["male"].strip().lower() == "true" else "F"
    pred = predict_file(out / "model_int8.tflite", image, sex=sex)
    step("predict", t0, image=str(image), age_months=round(pred.age_months, 1), true_months=float(label["boneage"]))

    summary.update(rows=rows, prediction=pred.to_dict(), true_age_months=float(label["boneage"]),
                   seconds=round(time.time() - t_all, 1))
    write_json_atomic(out / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    lines = ["| variant | size (KiB) | validation MAE (months) | parity |", "|---|---:|---:|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['variant']} | {r['size_kib']} | {r['val_mae_months']:.2f} | {r['parity']} |")
    p = summary["prediction"]
    lines.append("")
    true = summary.get("true_age_months")
    truth = f"; true age {true:.1f} months (error {p['age_months'] - true:+.1f})" if true is not None else ""
    lines.append(f"predict {p['image']} ({p['sex']}) with {p['model']}: {p['age_months']:.1f} months "
                 f"({p['years']} y {p['months']} m){truth}, {p['latency_ms']:.1f} ms")
    lines.append(f"total {summary['seconds']} s")
    return "\n".join(lines)
