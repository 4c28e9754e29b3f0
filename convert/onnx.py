"""ONNX in and out: ONNX Runtime (run here or in a child process), the ONNX side of Keras -> ONNX (the "onnx" row of
convert.export.FORMATS: grouped convolutions split per group, metadata records) and ONNX -> LiteRT via onnx2tf
(`edge-boneage convert`).

Optional extra (not in the base install; STACK.md): onnx2tf >= 2.0 needs Python >= 3.12, so on 3.11:
    pip install onnx onnxruntime onnx-graphsurgeon sng4onnx sne4onnx psutil onnxsim
    pip install --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
(onnxsim: onnx2tf runs it to simplify the graph; without it the tf2onnx graph of a Keras MobileNetV3 fails in
onnx2tf with a shape error on a BatchNorm multiply)
and for Keras -> ONNX: pip install --no-deps tf2onnx==1.17.0 (its own deps are already installed).

onnx2tf runs in a child process (it imports TensorFlow and prints a lot); it is always given the input data
explicitly with -cind (data we draw, never its download of sample images), and the batch stays dynamic.
ONNX models from Keras are NHWC: their inputs are passed with -kat (keep shape) or onnx2tf transposes them as if
they were NCHW. ONNX models from PyTorch are NCHW: onnx2tf converts them to NHWC LiteRT models, so the parity
check feeds the LiteRT model the transposed input.

Every converted file is run in a child process against ONNX Runtime on the same inputs before it is written.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

ONNX2TF_VERSION = "1.29.24"
INSTALL_HINT = ("pip install onnx onnxruntime onnx-graphsurgeon sng4onnx sne4onnx psutil onnxsim && "
                f"pip install --no-deps onnx2tf=={ONNX2TF_VERSION} tf-keras==2.21.0")
FLOAT_TOL = 1e-4  # LiteRT vs ONNX Runtime, float32 (rtol and atol)
FP16_TOL = 1e-2


def missing_modules(*names: str) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def require(*names: str) -> None:
    missing = missing_modules(*names)
    if missing:
        raise EdgeBoneageError(f"ONNX support needs {', '.join(missing)} (optional extra): {INSTALL_HINT}")


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime


def onnx_inputs(path: str | os.PathLike) -> dict[str, tuple[list, str]]:
    """{input name: (shape with None for dynamic dims, numpy dtype name)} of an ONNX model."""
    require("onnx")
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in init:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        out[vi.name] = (shape, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name)
    return out


def run_onnx(path: str | os.PathLike, inputs: dict) -> dict[str, np.ndarray]:
    require("onnxruntime")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    res = sess.run(names, {k: np.asarray(v) for k, v in inputs.items()})
    return dict(zip(names, res))


_CHILD = r"""
import sys, numpy as np
from edge_boneage.convert.onnx import run_onnx
data = np.load(sys.argv[2])
np.savez(sys.argv[3], **run_onnx(sys.argv[1], {k: data[k] for k in data.files}))
"""


def validate_onnx_in_subprocess(path: str | os.PathLike, inputs: dict, *, timeout: float = 300.0) -> dict:
    """Load and run an .onnx file with ONNX Runtime in a child process; {output name: array}."""
    from edge_boneage.convert.litert import run_in_child

    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: no such ONNX file")
    return run_in_child(_CHILD, path, inputs, "ONNX Runtime", timeout=timeout, what="ONNX Runtime validation")


def add_onnx_metadata(data: bytes, records: dict[str, dict]) -> bytes:
    """The ONNX model `data` with each {name: JSON record} stored as a metadata_props entry (replacing one of the
    same name): the ONNX counterpart of edge_boneage.tflite_meta.add_metadata."""
    import json

    require("onnx")
    import onnx

    model = onnx.load_from_string(data)
    keep = [p for p in model.metadata_props if p.key not in records]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for name, record in records.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = name, json.dumps(record, sort_keys=True)
    return model.SerializeToString()


def read_onnx_metadata(path: str | os.PathLike, name: str = "edge_boneage") -> dict | None:
    """A JSON record add_onnx_metadata stored in an .onnx file; None when it has none of that name."""
    import json

    require("onnx")
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == name:
            return json.loads(p.value)
    return None


def sample_inputs(spec: dict[str, tuple[list, str]], n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic test/calibration inputs for an ONNX model: images 0..1 (float) or 0..255 (uint8), batch n."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in spec.items():
        shp = [n] + [d if d else 1 for d in shape[1:]]
        if np.issubdtype(np.dtype(dtype), np.integer):
            hi = 256 if dtype == "uint8" else 2
            out[name] = rng.integers(0, hi, shp).astype(dtype)
        else:
            out[name] = rng.random(shp, dtype=np.float32).astype(dtype)
    return out


# ---------------------------------------------------------------------------------------------------------------
# ONNX -> LiteRT


def _onnx2tf_cmd(onnx_path: Path, out_dir: Path, cind: dict[str, Path], keep_shape: list[str],
                 int8: bool) -> list[str]:
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(out_dir), "-n"]
    for name, npy in cind.items():
        cmd += ["-cind", name, str(npy)] + (["[[[[0.0]]]]", "[[[[1.0]]]]"] if int8 else [])
    if keep_shape:
        cmd += ["-kat", *keep_shape]
    if int8:
        cmd += ["-oiqt", "-iqd", "int8", "-oqd", "int8"]
    return cmd


def _is_nhwc_keras(spec: dict) -> list[str]:
    """Inputs that look NHWC already (4-D with a last dim of 1 or 3 and H == W): keep their shape (-kat)."""
    keep = []
    for name, (shape, _) in spec.items():
        if len(shape) == 4 and shape[3] in (1, 3) and shape[1] and shape[1] == shape[2] and shape[1] > 4:
            keep.append(name)
    return keep


def _to_lite_layout(x: np.ndarray, transposed: bool) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if transposed else x


def match_outputs(onnx_out: dict, lite_out: dict) -> dict[str, str]:
    """{onnx output name: LiteRT output name}: by name when the names agree, else by order and shape."""
    pairs = {}
    lite_names = list(lite_out)
    for k in onnx_out:
        if k in lite_out:
            pairs[k] = k
    rest_o = [k for k in onnx_out if k not in pairs]
    rest_l = [k for k in lite_names if k not in pairs.values()]
    for k in rest_o:
        cand = [m for m in rest_l if lite_out[m].shape == onnx_out[k].shape]
        if not cand:
            raise EdgeBoneageError(f"no LiteRT output matches ONNX output {k!r} {onnx_out[k].shape} "
                                   f"(LiteRT outputs: {[(m, lite_out[m].shape) for m in lite_names]})")
        pairs[k] = cand[0]
        rest_l.remove(cand[0])
    return pairs


def onnx_to_litert(onnx_path, out=None, *, quantization: str = "float32", calib: dict | None = None,
                   check: dict | None = None, keep_shape: list[str] | None = None, calib_n: int = 16,
                   check_n: int = 8, force: bool = False, timeout: float = 600.0) -> dict:
    """Convert an ONNX model to LiteRT with onnx2tf, check it against ONNX Runtime in a child process, write it.

    quantization: float32 | fp16 | int8 (onnx2tf's full-integer model, int8 I/O, calibrated on `calib`).
    calib / check: {input name: array (batch first, ONNX layout)}; default: deterministic samples (0..1 images).
    keep_shape: input names kept as they are (-kat); default: inputs that look NHWC already (Keras exports).
    Returns {"path", "parity": {...}, "status"}; raises EdgeBoneageError (nothing written) on failure unless force.
    """
    require("onnx", "onnxruntime", "onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx", "psutil")
    from edge_boneage.convert.litert import validate_in_subprocess
    from edge_boneage.fileutil import atomic_path
    from edge_boneage.tflite_meta import add_metadata

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise EdgeBoneageError(f"{onnx_path}: no such ONNX file")
    if quantization not in ("float32", "fp16", "int8"):
        raise EdgeBoneageError(f"{onnx_path}: convert supports float32, fp16, int8 (got {quantization!r})")
    out = Path(out) if out else onnx_path.with_name(onnx_path.stem + ("" if quantization == "float32" else
                                                                     f"_{quantization}") + ".tflite")
    spec = onnx_inputs(onnx_path)
    keep = _is_nhwc_keras(spec) if keep_shape is None else list(keep_shape)
    calib = calib or sample_inputs(spec, calib_n, seed=1)
    check = check or sample_inputs(spec, check_n, seed=2)
    ref = run_onnx(onnx_path, check)

    with tempfile.TemporaryDirectory(prefix="edge_boneage_onnx2tf_") as tmp:
        tmp = Path(tmp)
        cind = {}
        for name, arr in calib.items():
            # onnx2tf reads -cind data in its own (NHWC) layout for 4-D inputs it transposes
            transposed = np.asarray(arr).ndim == 4 and name not in keep
            cind[name] = tmp / f"cind_{re.sub(r'[^A-Za-z0-9_]', '_', name)}.npy"
            np.save(cind[name], _to_lite_layout(np.asarray(arr, np.float32), transposed))
        out_dir = tmp / "saved"
        cmd = _onnx2tf_cmd(onnx_path, out_dir, cind, keep, quantization == "int8")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
        # onnx2tf calls the `onnxsim` console script (graph simplification; without it tf2onnx's NHWC graphs of
        # Keras models fail to convert): make the venv's scripts visible
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired as exc:
            raise EdgeBoneageError(f"{onnx_path}: onnx2tf timed out after {timeout:g} s") from exc
        suffix = {"float32": "_float32.tflite", "fp16": "_float16.tflite", "int8": "_full_integer_quant.tflite"}
        produced = sorted(out_dir.glob(f"*{suffix[quantization]}")) if out_dir.is_dir() else []
        if proc.returncode != 0 or not produced:
            text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            errs = [ln for ln in lines if "error" in ln.lower()] or lines[-1:] or ["no output"]
            raise EdgeBoneageError(f"{onnx_path}: onnx2tf failed (exit {proc.returncode}): {errs[-1][:300]}")
        candidate = produced[0]
        feed = {k: _to_lite_layout(np.asarray(v), np.asarray(v).ndim == 4 and k not in keep) for k, v in check.items()}
        lite_names = _lite_input_names(candidate)
        feed = _rename_inputs(feed, lite_names, onnx_path)
        try:
            lite = validate_in_subprocess(candidate, feed)
            pairs = match_outputs(ref, lite)
            diffs = {k: float(np.max(np.abs(np.asarray(lite[v], np.float64) - ref[k]))) for k, v in pairs.items()}
            tol = {"float32": FLOAT_TOL, "fp16": FP16_TOL}.get(quantization)
            if tol is not None:
                bad = [k for k, v in pairs.items() if not np.allclose(lite[v], ref[k], rtol=tol, atol=tol)]
                reason = f"outputs {bad} differ from ONNX Runtime beyond {tol:g}" if bad else "ok"
            else:  # int8: report; fail only on non-finite output or a broken top-1 agreement
                agree = {k: float(np.mean(lite[v].reshape(len(lite[v]), -1).argmax(-1)
                                          == ref[k].reshape(len(ref[k]), -1).argmax(-1))) for k, v in pairs.items()}
                reason = "ok" if all(np.all(np.isfinite(lite[v])) for v in pairs.values()) else "non-finite output"
            parity = {"max_abs_diff": diffs, "n": len(next(iter(check.values()))), "reason": reason,
                      "passed": reason == "ok", "rule": f"allclose(rtol={tol:g}, atol={tol:g})" if tol else
                      "finite outputs (int8: differences reported)"}
            if tol is None:
                parity["top1_agreement"] = agree
        except EdgeBoneageError as exc:
            parity = {"passed": False, "reason": str(exc).replace(str(candidate), "the converted model"), "max_abs_diff": {}}
        parity["status"] = "PASSED" if parity["passed"] else ("FAILED (forced)" if force else "FAILED")
        if not parity["passed"] and not force:
            raise EdgeBoneageError(f"{out}: parity check vs ONNX Runtime failed: {parity['reason']}; no file written")
        meta = {"model": {"source_file": onnx_path.name, "task": None},
                "converted_by": f"onnx2tf {ONNX2TF_VERSION} (edge-boneage convert)",
                "quantization": {"mode": quantization, "kept_shape_inputs": keep,
                                 "layout": "NHWC (4-D inputs not in kept_shape_inputs were transposed from NCHW)"},
                "parity": {**parity, "against": "onnxruntime"}}
        with atomic_path(out) as tmp_out:
            Path(tmp_out).write_bytes(add_metadata(candidate.read_bytes(), meta))
    return {"path": out, "parity": parity, "status": parity["status"], "kept_shape": keep}


def _lite_input_names(path: Path) -> list[str]:
    from edge_boneage.runtime import LiteRTModel

    return LiteRTModel(path).input_names


def _rename_inputs(feed: dict, lite_names: list[str], where) -> dict:
    """ONNX input names -> the LiteRT signature's names (onnx2tf sanitises e.g. ':' and '.')."""
    if set(feed) == set(lite_names):
        return feed
    norm = {re.sub(r"[^A-Za-z0-9]", "_", k).lower(): k for k in feed}
    out = {}
    for ln in lite_names:
        key = re.sub(r"[^A-Za-z0-9]", "_", ln).lower()
        src = norm.get(key)
        if src is None and len(feed) == 1 and len(lite_names) == 1:
            src = next(iter(feed))
        if src is None:
            raise EdgeBoneageError(f"{where}: cannot match LiteRT input {ln!r} to the ONNX inputs {list(feed)}")
        out[ln] = feed[src]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Keras -> ONNX


def split_grouped_convs(model):
    """A copy of `model` with every ``Conv2D(groups > 1)`` replaced by keras_models.layers.SplitGroupConv2D (same
    weights): Keras runs grouped convolutions on CPU through an XLA call that tf2onnx leaves unconverted, so ONNX
    Runtime cannot load the file; split into per-group convolutions + concatenation it exports. Returns (model,
    number of layers replaced); the same model when there is none."""
    import keras

    from keras_models.layers import SplitGroupConv2D

    def grouped(layer):
        return (type(layer) is keras.layers.Conv2D and layer.groups > 1 and layer.data_format == "channels_last"
                and tuple(layer.dilation_rate) == (1, 1) and layer.activation is keras.activations.linear)

    found = [layer for layer in model.layers if grouped(layer)]
    if not found:
        return model, 0

    def clone(layer):
        if grouped(layer):
            return SplitGroupConv2D(layer.filters, layer.kernel_size, layer.strides, layer.padding, layer.groups,
                                    layer.use_bias, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone)
    for old_layer, new_layer in zip(model.layers, new.layers):
        new_layer.set_weights(old_layer.get_weights())
    return new, len(found)
