"""The table a user reads first: trained models x variants x runtimes -> size, test MAE, latency, memory.

    python -m benchmarks.headline --rsna-dir ../shared/data/rsna [--model M.keras [--int8 M_int8.tflite]] ...

For each trained age model (default: the packaged edge_boneage/pretrained/boneage_age.keras with its float32 and
int8 .tflite beside it; more with --model, whose float32 .tflite and ONNX are exported into --work):

- **MAE** on the protocol TEST split of the RSNA 100x100 set (n=1130; it chose nothing), bootstrap 95 % interval,
  every runtime fed the same preprocessed inputs (the model's own contract);
- **inference latency**: one sample, LiteRT float32 / int8, ONNX Runtime, OpenVINO (it reads the same ONNX) and
  Keras, ALL timed interleaved in one child process (edge_boneage.bench.interleave: shuffled blocks), median and
  p10-p90 of the calls, 1 thread;
- **end-to-end latency** per radiograph (`edge_boneage.predict` on the file: decode + quality gate + hand
  localisation + preprocessing + inference) on the 55 full-resolution PNGs and on DICOM copies of them (pydicom,
  written into --work), interleaved in the same way (LiteRT rows: the edge runtime);
- **peak memory**: a fresh child process per row runs the same calls and reports its peak RSS (ru_maxrss).

Ratios between rows (int8 / float32, end-to-end / inference) come from the same interleaved run, per repeat, with
their p10-p90 over repeats. The table is Markdown (benchmarks.record --md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
PACKAGED = HERE / "edge_boneage" / "pretrained" / "boneage_age.keras"


def test_inputs(keras_path: Path, rsna_dir: Path):
    from benchmarks.age_protocol import protocol_sets
    from edge_boneage.io import read_image
    from edge_boneage.modelfile import open_model as open_age_model

    spec = open_age_model(keras_path).spec
    test, full = protocol_sets(rsna_dir, "test")
    x = np.stack([spec.apply(read_image(s.path)[0]) for s in test])[..., None].astype(np.uint8)
    sex = np.array([[1.0 if s.male else 0.0] for s in test], np.float32)
    y = np.array([s.boneage_months for s in test], np.float64)
    return {"image": x, "sex": sex}, y, [str(s.path) for s in full]


def predict(kind: str, path: Path, inputs: dict, batch: int = 64) -> np.ndarray:
    """Ages (months) from one runtime, fed the preprocessed inputs by name."""
    n = len(inputs["image"])
    if kind in ("litert", "keras"):
        from edge_boneage.modelfile import open_model as open_age_model

        m = open_age_model(path)
        return np.concatenate([m.predict({k: v[b:b + batch] for k, v in inputs.items()}) for b in range(0, n, batch)])
    if kind == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        outs = [o.name for o in sess.get_outputs()]
        key = lambda nm: next(k for k in inputs if nm == k or nm.endswith(k))  # noqa: E731
        res = [sess.run([outs[outs.index("age")] if "age" in outs else outs[0]],
                        {nm: inputs[key(nm)][b:b + batch] for nm in names})[0] for b in range(0, n, batch)]
        return np.concatenate(res).reshape(-1)
    if kind == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU")
        names = [p.get_any_name() for p in compiled.inputs]
        out = next((o for o in compiled.outputs if "age" in o.get_names()), compiled.outputs[0])
        key = lambda nm: next(k for k in inputs if nm == k or nm.endswith(k))  # noqa: E731
        res = [compiled({nm: inputs[key(nm)][b:b + batch] for nm in names})[out] for b in range(0, n, batch)]
        return np.concatenate(res).reshape(-1)
    raise ValueError(kind)


def write_dicoms(pngs: list[str], folder: Path) -> list[str]:
    """DICOM copies (uncompressed, MONOCHROME2, PatientSex absent) of the PNGs: the DICOM decode path end to end."""
    from benchmarks.bad_inputs import dicom_dataset, write_dicom
    from edge_boneage.io import read_image

    folder.mkdir(parents=True, exist_ok=True)
    return [str(write_dicom(folder / (Path(p).stem + ".dcm"),
                            dicom_dataset(np.ascontiguousarray(read_image(p)[0], np.uint8), Modality="CR",
                                          PatientID=None)))
            for p in pngs]


def child(job: dict, work: Path, name: str) -> dict:
    jp, op = work / f"{name}.job.json", work / f"{name}.out.json"
    jp.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.interleave", str(jp), str(op)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: child failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(op.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path, required=True)
    ap.add_argument("--model", type=Path, action="append", help="trained .keras (default: the packaged model)")
    ap.add_argument("--work", type=Path, help="folder for exported files and DICOM copies (default: a temp folder)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--e2e-block", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from benchmarks.age_protocol import bootstrap_ci

    tmp = tempfile.TemporaryDirectory(prefix="edge_boneage_headline_") if a.work is None else None
    work = Path(tmp.name) if tmp else a.work
    work.mkdir(parents=True, exist_ok=True)
    models = a.model or [PACKAGED]
    rows, lat_rows, e2e_rows = [], [], []
    inputs = y = pngs = None
    labels: list[str] = []
    for keras_path in models:
        # a run folder's best.keras / last.keras is named after its folder; every label is unique (files and rows)
        label = keras_path.parent.name if keras_path.stem in ("best", "last", "model") else keras_path.stem
        label = label if label not in labels else f"{label}_{len(labels)}"
        labels.append(label)
        files = {}
        f32 = keras_path.with_suffix(".tflite")
        i8 = keras_path.with_name(keras_path.stem + "_int8.tflite")
        if not f32.is_file():
            from edge_boneage.convert.export import export

            f32 = export(keras_path, work / f"{label}.tflite", log=lambda *_: None).path
        files[("float32", "litert")] = f32
        if i8.is_file():
            files[("int8", "litert")] = i8
        from edge_boneage.convert.export import export_keras_onnx

        onnx = work / f"{label}.onnx"
        try:
            export_keras_onnx(keras_path, onnx)
            files[("float32", "onnxruntime")] = onnx
            files[("float32", "openvino")] = onnx
        except Exception as exc:  # noqa: BLE001 - a row with its reason
            rows.append({"model": label, "variant": "float32", "runtime": "onnxruntime / openvino",
                         "error": f"ONNX export failed: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"})
        files[("float32", "keras")] = keras_path
        if inputs is None:
            inputs, y, pngs = test_inputs(keras_path, a.rsna_dir)
        for (variant, rt), path in files.items():
            tag = f"{label}|{variant}|{rt}"
            pred = predict(rt, path, inputs)
            err = np.abs(pred - y)
            rows.append({"model": label, "variant": variant, "runtime": rt, "tag": tag, "file": str(path),
                         "size_mb": path.stat().st_size / 2**20, "mae": float(err.mean()),
                         "mae_ci": bootstrap_ci(err), "n": int(len(err))})
            lat_rows.append({"label": tag, "kind": rt, "path": str(path), "threads": a.threads})
            if rt == "litert":
                e2e_rows.append({"label": tag, "kind": "e2e", "path": str(path), "threads": a.threads})
    dicoms = write_dicoms(pngs, work / "dicom")
    ev = work / "sample.npz"
    np.savez(ev, **{k: v[:1] for k, v in inputs.items()})
    e2e_all = [{**r, "label": r["label"] + "|png", "images": pngs} for r in e2e_rows] + \
              [{**r, "label": r["label"] + "|dicom", "images": dicoms} for r in e2e_rows]
    inf = child({"rows": lat_rows, "eval": str(ev), "repeats": a.repeats, "block": a.block,
                 "pairs": [[r["label"], lat_rows[0]["label"]] for r in lat_rows[1:]]}, work, "inference")
    e2e = child({"rows": e2e_all, "repeats": a.repeats, "block": a.e2e_block,
                 "pairs": [[r["label"], e2e_all[0]["label"]] for r in e2e_all[1:]]}, work, "e2e")
    rss = {}
    for r in lat_rows + e2e_all:
        res = child({"rows": [r], "eval": str(ev), "repeats": 2, "block": a.e2e_block if r["kind"] == "e2e" else
                     a.block, "rss": True}, work, "rss")
        rss[r["label"]] = res.get("peak_rss_mb")
    for r in rows:
        if "tag" not in r:
            continue
        t = inf["rows"].get(r["tag"]) or {}
        r.update(inf_p50=t.get("p50_ms"), inf_p10=t.get("p10_ms"), inf_p90=t.get("p90_ms"), rss_inf=rss.get(r["tag"]))
        for kind in ("png", "dicom"):
            t = e2e["rows"].get(f"{r['tag']}|{kind}") or {}
            r[f"e2e_{kind}"] = t.get("p50_ms")
            r[f"rss_{kind}"] = rss.get(f"{r['tag']}|{kind}")

    def f(v, fmt):
        return "-" if v is None else fmt % v

    print(f"Protocol test split n={rows[0].get('n')} (RSNA 100x100; it chose nothing); end-to-end on "
          f"{len(pngs)} full-resolution PNGs and their DICOM copies; {a.threads} thread; latency = median of "
          f"interleaved calls ({a.repeats} shuffled repeats x {a.block} calls inference, x {a.e2e_block} end-to-end), "
          "p10-p90 in brackets; memory = peak RSS of a fresh process running that row.\n")
    print("| model | variant | runtime | size MiB | MAE months [95% CI] | inference ms [p10-p90] | end-to-end PNG ms | "
          "end-to-end DICOM ms | peak RSS MiB (inference / e2e PNG) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['variant']} | {r['runtime']} | - | - | {r['error']} | - | - | - |")
            continue
        ci = "[%.2f, %.2f]" % tuple(r["mae_ci"])
        print(f"| {r['model']} | {r['variant']} | {r['runtime']} | {r['size_mb']:.2f} | {r['mae']:.2f} {ci} | "
              f"{f(r['inf_p50'], '%.2f')} [{f(r['inf_p10'], '%.2f')}-{f(r['inf_p90'], '%.2f')}] | "
              f"{f(r['e2e_png'], '%.1f')} | {f(r['e2e_dicom'], '%.1f')} | "
              f"{f(r['rss_inf'], '%.0f')} / {f(r['rss_png'], '%.0f')} |")
    print("\nRatios from the same interleaved runs (median over repeats [p10-p90]):\n")
    for q in inf["ratios"] + e2e["ratios"]:
        print(f"- {q['a']} / {q['b']}: {q['ratio_p50']:.2f} [{q['ratio_p10']:.2f}-{q['ratio_p90']:.2f}]")
    if inf["errors"] or e2e["errors"]:
        print("\nrows that did not run: " + "; ".join(f"{k}: {v}" for k, v in {**inf["errors"], **e2e["errors"]}.items()))
    if a.json:
        from edge_boneage.fileutil import write_json_atomic

        write_json_atomic(a.json, {"rows": rows, "inference": inf, "e2e": e2e})
    return 0


if __name__ == "__main__":
    sys.exit(main())
