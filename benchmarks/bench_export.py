"""Export benchmark: RIL-MobileNetV3-L (age) and CSP-ResNeXt50 (TW3 stages), trained briefly on synthetic data,
exported float32 / fp16 / dynamic / int8 through `convert.export.export` (parity gate in a child process), then:
size, max output error vs Keras, age MAE (months) on the same held-out images (CSP: stage accuracy and TW3 age vs
Keras), LiteRT latency (1 thread, XNNPACK, batch 1, median), and the int8 op profile (op types, QUANTIZE /
DEQUANTIZE, XNNPACK delegate partitions, latency without XNNPACK). Also shows the exporter refusing a broken file
(full int8 with the sampler and LBP quantised). Prints a markdown table.

    .venv/bin/python benchmarks/bench_export.py            # 64 px (RIL) / 48 px crops (CSP): CPU-time bound
    .venv/bin/python benchmarks/bench_export.py --quick    # smoke run, tiny
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def latency_ms(path, feed, runs=40, delegate=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {} if delegate else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_path=str(path), num_threads=1, **kw)
    runner = it.get_signature_runner()
    det = runner.get_input_details()
    from edge_boneage.runtime import quantize

    x = {k: quantize(v, det[k]) for k, v in feed.items()}
    for _ in range(3):
        runner(**x)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        runner(**x)
        ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts))


def partitions(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ops = Counter(o["op_name"] for o in it._get_ops_details())
    return ops.pop("DELEGATE", 0), ops


def _fast_bn(model, momentum=0.9):
    """BatchNorm moving statistics that follow a short training run (Keras' 0.99 would lag far behind)."""
    import keras

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def train_ril(size, n_train, epochs, batch, seed=0):
    import keras

    from edge_boneage.synth import generate
    from keras_models.registry import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("ril_mobilenetv3_large", input_size=size, region_dim=128, dropout=0.0)
    _fast_bn(model)
    b = generate(n_train, max(size, 64), seed=101)
    imgs = b.images if b.images.shape[1] == size else _resize(b.images, size)
    x = {"image": imgs[..., None], "sex": b.male[:, None].astype(np.float32)}
    y = {"age": b.boneage[:, None].astype(np.float32),
         "probs": np.clip(b.boneage // 12, 0, 18).astype(np.int32)}
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss={"age": "mae", "probs": "sparse_categorical_crossentropy"}, loss_weights={"age": 0.02, "probs": 1.0})
    t = time.time()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    # validation MAE on other synthetic images (seed 555): recorded in run.json next to the .keras -> metadata
    v = generate(128, max(size, 64), seed=555)
    vi = v.images if v.images.shape[1] == size else _resize(v.images, size)
    pred = model.predict({"image": vi[..., None], "sex": v.male[:, None].astype(np.float32)}, verbose=0)["age"][:, 0]
    val_mae = float(np.mean(np.abs(pred - v.boneage)))
    return model, {"train_images": n_train, "epochs": epochs, "batch": batch,
                   "steps": epochs * (n_train // batch), "seconds": round(time.time() - t),
                   "val_mae_months": round(val_mae, 2), "val_pred_std_months": round(float(pred.std()), 2)}


def train_csp(size, n_train, epochs, batch, seed=0, knobs=None):
    import keras

    from edge_boneage.synth import iter_bone_crops
    from keras_models.registry import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("csp_resnext50_tw3", input_size=size, **(knobs or {}))
    _fast_bn(model)
    n_img = max(1, n_train // 13)
    crops, grades, bones = [], [], []
    for c, g, bidx, _ in iter_bone_crops(n_img, size=256, crop=size, seed=202):
        crops.append(c), grades.append(g), bones.append(bidx)
    x = {"image": np.concatenate(crops)[..., None], "bone": np.concatenate(bones).astype(np.int32)[:, None]}
    y = np.clip(np.concatenate(grades) - 1, 0, 7).astype(np.int32)  # classes B..I; stage A -> B
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t = time.time()
    h = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    return model, {"train_crops": len(y), "epochs": epochs, "batch": batch, "steps": epochs * (len(y) // batch),
                   "seconds": round(time.time() - t), "train_acc": round(float(h.history["accuracy"][-1]), 3)}


def _resize(images, size):
    import cv2

    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


VARIANTS = [  # (label, quantization, io, extra export kwargs)
    ("float32", "float32", "float32", {}),
    ("fp16", "fp16", "float32", {}),
    ("dynamic", "dynamic", "float32", {}),
    ("int8 (int8 I/O)", "int8", "int8", {}),
    ("int8 (float I/O)", "int8", "float32", {}),
]


def bench_model(name, model, keras_path, out_dir, *, calib_n, check_n, runs):
    from edge_boneage.convert import export as E

    rows, files = [], {}
    for label, quant, io, kw in VARIANTS:
        out = out_dir / f"{name}_{label.split()[0]}{'' if io != 'float32' or quant != 'int8' else '_fio'}.tflite"
        t = time.time()
        try:
            res = E.export(keras_path, out, quantization=quant, io=io, calib_n=calib_n, check_n=check_n, model=model,
                           log=lambda *_: None, **kw)
        except Exception as exc:  # report the refusal, go on
            rows.append({"variant": label, "error": str(exc)[:200]})
            continue
        p = res.parity
        check = E.make_data(model, "synth", 1, seed=E.CHECK_SEED)
        feed = {k: v[:1] for k, v in check.inputs.items()}
        lat = latency_ms(out, feed, runs)
        nparts, _ = partitions(out)
        q = res.metadata["quantization"]
        rows.append({"variant": label, "mib": out.stat().st_size / 2**20,
                     "max_err": max(v for k, v in p.items() if k.startswith("max_abs_diff")),
                     "max_err_age": p.get("max_abs_diff_age"),
                     "mae_labels": p.get("age_mae_vs_labels_months"), "mae_keras": p.get("age_mae_vs_keras_months"),
                     "keras_mae": p.get("keras_age_mae_vs_labels_months"),
                     "stage_acc": p.get("stage_accuracy"), "keras_stage_acc": p.get("keras_stage_accuracy"),
                     "grade_agree": p.get("grade_agreement"), "tw3_mae_keras": p.get("tw3_age_mae_vs_keras_months"),
                     "lat": lat, "partitions": nparts, "status": p["status"], "kept": list(q["kept_float_layers"]),
                     "export_s": time.time() - t, "ops": q.get("ops")})
        files[label] = out
    return rows, files


def op_profile(name, model, keras_path, out_dir, files, *, calib_n, check_n, runs):
    """float vs int8: op types, Q/DQ, XNNPACK partitions, latency with/without XNNPACK; int8 with HARD_SWISH kept."""
    from edge_boneage.convert import export as E
    from edge_boneage.convert.quantize import _op_table

    check = E.make_data(model, "synth", 1, seed=E.CHECK_SEED)
    feed = {k: v[:1] for k, v in check.inputs.items()}
    lines = []
    cand = dict(files)
    if "int8 (int8 I/O)" in files:
        # the same int8 export with the converter's fused HARD_SWISH kept (before the fix)
        from edge_boneage.convert import quantize as Q

        out = out_dir / f"{name}_int8_hardswish.tflite"
        orig = Q.convert_model

        def no_decompose(*a, **kw):
            kw["xnnpack_hard_swish"] = False
            return orig(*a, **kw)

        Q.convert_model = no_decompose
        try:
            E.export(keras_path, out, quantization="int8", io="int8", calib_n=calib_n, check_n=check_n, model=model,
                     log=lambda *_: None)
            cand["int8, HARD_SWISH op kept (no fix)"] = out
        except Exception as exc:
            lines.append(f"int8 with HARD_SWISH kept: refused ({exc})")
        finally:
            Q.convert_model = orig
    lines.append(f"| {name} variant | ms XNNPACK | ms no delegate | XNNPACK partitions | ops | int8 ops | float ops "
                 "| QUANTIZE | DEQUANTIZE | op types (count) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for label, path in cand.items():
        nparts, _ = partitions(path)
        rows = _op_table(Path(path).read_bytes())
        types = Counter(r["op"] for r in rows)
        s = Counter()
        for r in rows:
            d = set(r["in_dtypes"]) | set(r["out_dtypes"])
            s["int8"] += bool(d & {"int8", "uint8"}) and r["op"] not in ("CAST", "QUANTIZE", "DEQUANTIZE")
            s["float"] += not (d & {"int8", "uint8"}) and "float32" in r["out_dtypes"]
        top = ", ".join(f"{k} {v}" for k, v in types.most_common(9))
        lines.append(f"| {label} | {latency_ms(path, feed, runs):.2f} | {latency_ms(path, feed, max(5, runs // 4), False):.2f} "
                     f"| {nparts} | {len(rows)} | {s['int8']} | {s['float']} | {types.get('QUANTIZE', 0)} "
                     f"| {types.get('DEQUANTIZE', 0)} | {top} |")
    return lines


def full_size_latency(small_model, size, out_dir, *, calib_n, check_n, runs):
    """The trained RIL weights at another input size (all weights are size-independent: convolutions + GAP):
    float32 vs int8 (with and without the hard-swish rewrite) latency, partitions, parity, at e.g. 224 px."""
    from edge_boneage.convert import export as E
    from edge_boneage.convert import quantize as Q
    from keras_models.registry import build_model

    big = build_model("ril_mobilenetv3_large", input_size=size, region_dim=128, dropout=0.0)
    big.set_weights(small_model.get_weights())
    path = out_dir / f"ril{size}.keras"
    big.save(path)
    check = E.make_data(big, "synth", 1, seed=E.CHECK_SEED)
    feed = {k: v[:1] for k, v in check.inputs.items()}
    lines = [f"| RIL-MobileNetV3-L {size}x{size} (trained weights from the {small_model.inputs[0].shape[1]} px run) "
             "| MiB | ms XNNPACK | vs float32 | XNNPACK partitions | age MAE vs Keras | parity |",
             "|---|---|---|---|---|---|---|"]
    orig = Q.convert_model
    f32 = None
    for label, quant, fix in (("float32", "float32", True), ("int8 (int8 I/O)", "int8", True),
                              ("int8, HARD_SWISH op kept (no fix)", "int8", False)):
        out = out_dir / f"ril{size}_{quant}{'' if fix else '_hardswish'}.tflite"

        def conv(*a, _fix=fix, **kw):
            kw["xnnpack_hard_swish"] = _fix
            return orig(*a, **kw)

        Q.convert_model = conv
        try:
            res = E.export(path, out, quantization=quant, io="int8", calib_n=calib_n, check_n=check_n, model=big,
                           log=lambda *_: None)
        except Exception as exc:
            lines.append(f"| {label} | refused: {exc} |")
            continue
        finally:
            Q.convert_model = orig
        lat = latency_ms(out, feed, runs)
        f32 = lat if quant == "float32" else f32
        lines.append(f"| {label} | {out.stat().st_size / 2**20:.2f} | {lat:.2f} | {fmt(lat / f32 if f32 else None)}x "
                     f"| {partitions(out)[0]} | {fmt(res.parity.get('age_mae_vs_keras_months'), '.3f')} "
                     f"| {res.parity['status']} |")
    return lines


def refusal_demo(model, keras_path, out_dir, calib_n, check_n):
    from edge_boneage.convert import export as E
    from edge_boneage import EdgeBoneageError

    out = out_dir / "ril_int8_all_quantised.tflite"
    try:
        E.export(keras_path, out, quantization="int8", io="int8", calib_n=calib_n, check_n=check_n, model=model,
                 keep_float=[], log=lambda *_: None)
        return f"NOT refused: {out} was written (parity passed with LBP and sampler quantised)"
    except EdgeBoneageError as exc:
        return f"refused: {exc}\nfile exists afterwards: {out.exists()}"


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--ril-size", type=int, default=64)
    ap.add_argument("--csp-size", type=int, default=48)
    ap.add_argument("--train-n", type=int, default=3072, help="training images (RIL) / crops (CSP)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--calib-n", type=int, default=64)
    ap.add_argument("--check-n", type=int, default=64)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--out", default="/tmp/edge_boneage_bench_export")
    ap.add_argument("--only", choices=("ril", "csp"))
    ap.add_argument("--full-size", type=int, default=224, help="also time the trained RIL weights at this size (0: no)")
    ap.add_argument("--from-keras", help="(RIL) skip training: use this trained .keras (e.g. a previous run's)")
    ap.add_argument("--csp-reduced", action="store_true",
                    help="CSP-ResNeXt50 with benchmarks/tw3_table.py's CPU-sized knobs (depths 1,1,1,1, width 0.25, "
                         "cardinality 8): the full network trains for hours on 2 cores")
    a = ap.parse_args(argv)
    if a.quick:
        a.ril_size, a.csp_size, a.train_n, a.epochs, a.calib_n, a.check_n, a.runs = 64, 32, 64, 1, 8, 8, 5
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}; CPU cores: {os.cpu_count()}")

    report = []
    for name in ("ril", "csp"):
        if a.only and name != a.only:
            continue
        if name == "ril" and a.from_keras:
            from edge_boneage.convert.export import load_keras_model

            model, tr = load_keras_model(a.from_keras), {"from": a.from_keras}
            a.ril_size = int(model.inputs[0].shape[1])
            title = f"RIL-MobileNetV3-L, {a.ril_size}x{a.ril_size}, region_dim 128"
        elif name == "ril":
            model, tr = train_ril(a.ril_size, a.train_n, a.epochs, a.batch)
            title = f"RIL-MobileNetV3-L, {a.ril_size}x{a.ril_size}, region_dim 128"
        else:
            from benchmarks.tw3_table import KNOBS

            model, tr = train_csp(a.csp_size, a.train_n, a.epochs, a.batch, knobs=KNOBS if a.csp_reduced else None)
            title = (f"CSP-ResNeXt50 TW3 (13 heads), {a.csp_size}x{a.csp_size} crops"
                     + (f", reduced knobs {KNOBS}" if a.csp_reduced else ""))
        keras_path = out_dir / f"{name}.keras"
        model.save(keras_path)
        import json

        (out_dir / "run.json").write_text(json.dumps({  # read by the exporter: source validation MAE -> metadata
            "config": {"model": "ril_mobilenetv3_large" if name == "ril" else "csp_resnext50_tw3", "enhance": None},
            "result": {"val_overall": {"mae_months": tr.get("val_mae_months")}}}))
        print(f"\n## {title}\ntrained on synthetic data: {tr}")
        rows, files = bench_model(name, model, keras_path, out_dir, calib_n=a.calib_n, check_n=a.check_n,
                                  runs=a.runs)
        if name == "ril":
            print("\n| variant | MiB | max |err| vs Keras (age, months) | age MAE vs labels | age MAE vs Keras "
                  "| ms (1 thread) | vs float32 | parity | kept float |")
            print("|---|---|---|---|---|---|---|---|---|")
        else:
            print("\n| variant | MiB | max |err| vs Keras (probs) | stage acc | grade agreement vs Keras "
                  "| TW3 age MAE vs Keras (months) | ms (1 thread) | vs float32 | parity |")
            print("|---|---|---|---|---|---|---|---|---|")
        f32 = next((r["lat"] for r in rows if r.get("variant") == "float32" and "lat" in r), None)
        for r in rows:
            if "error" in r:
                print(f"| {r['variant']} | refused: {r['error']} |")
                continue
            ratio = fmt(r["lat"] / f32 if f32 else None)
            if name == "ril":
                print(f"| {r['variant']} | {r['mib']:.2f} | {fmt(r['max_err_age'], '.3g')} | {fmt(r['mae_labels'])} "
                      f"(Keras {fmt(r['keras_mae'])}) | {fmt(r['mae_keras'], '.3f')} | {r['lat']:.2f} | {ratio}x "
                      f"| {r['status']} | {', '.join(r['kept']) or '-'} |")
            else:
                print(f"| {r['variant']} | {r['mib']:.2f} | {fmt(r['max_err'], '.3g')} | {fmt(r['stage_acc'], '.3f')} "
                      f"(Keras {fmt(r['keras_stage_acc'], '.3f')}) | {fmt(r['grade_agree'], '.3f')} "
                      f"| {fmt(r['tw3_mae_keras'])} | {r['lat']:.2f} | {ratio}x | {r['status']} |")
        print()
        for line in op_profile(name, model, keras_path, out_dir, files, calib_n=a.calib_n, check_n=a.check_n,
                               runs=a.runs):
            print(line)
        if name == "ril" and a.full_size:
            print()
            for line in full_size_latency(model, a.full_size, out_dir, calib_n=a.calib_n, check_n=a.check_n,
                                          runs=a.runs):
                print(line)
        if name == "ril":
            print("\n### Exporter refusing a broken file (full int8 with LBP + sampler quantised)")
            print(refusal_demo(model, keras_path, out_dir, a.calib_n, a.check_n))
        report.append((name, rows))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
