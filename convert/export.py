"""The project's one exporter: .keras -> a format of FORMATS -> parity gate -> metadata -> file.

FORMATS (one row, one conversion function per format; every row goes through the same parity_gate):

    name      container  suffix   convert           gate rule
    float32   litert     .tflite  convert_float32   float32 (allclose)
    fp16      litert     .tflite  convert_fp16      fp16 (max age / probs difference)
    dynamic   litert     .tflite  convert_dynamic   dynamic (MAE vs Keras / grade agreement)
    int8      litert     .tflite  convert_int8      int8 (MAE vs Keras / grade agreement), calibrated
    onnx      onnx       .onnx    convert_onnx      float32 (allclose), ONNX Runtime in the child

export() is the pipeline for a .keras with the project's I/O contract (metadata inside the file); export_model /
export_litert take any Keras model (a layer probe, a demo model) through the same table and gate, without
metadata, on generic check inputs when the model has no contract. No other module converts a Keras model.

1. load the .keras (safe_mode, custom layers registered; TensorFlow backend);
2. convert (the format's function; LiteRT: convert.quantize.convert_model, float islands kept float, builtin ops
   only; ONNX: Keras' exporter with grouped convolutions split per group);
3. parity gate (parity_gate): the converted model is written under a temporary name, loaded and run in a CHILD
   process (convert.litert.run_in_child: an interpreter abort cannot take the exporter down) on a fixed check
   set, and compared with the Keras model on the same inputs:

   * float32 and onnx: every output within rtol 1e-4, atol 1e-4 (np.allclose; "float within 1e-4");
   * fp16: fp16 WEIGHTS change the function itself (relative weight error up to 2^-11 = 4.9e-4, amplified through
     ~60 layers and the region sampler), so 1e-4 is not a sane bound; the gate is max |age - age_keras| <= 1.0
     month (0.44 % of the 0-228 month range, 3x tighter than the int8 gate on the MAE, far below a clinically
     meaningful difference) and max |probs - probs_keras| <= 0.01 (stage models: probs only); the measured maxima
     are reported (briefly trained RIL-MobileNetV3-L at 64 px: max 0.63 month over 32 images);
   * dynamic / int8: MAE of the age vs Keras (months) <= 2.0 (dynamic) / 3.0 (int8) months; also reported:
     MAE vs the labels for both. Stage (TW3) models: top-1 grade agreement with Keras >= 0.9.
   * always: outputs finite, same names and shapes.

   A model that fails is not written (the temporary file is removed) and EdgeBoneageError names the reason;
   force=True writes it anyway with metadata "parity": "FAILED (forced)".
4. metadata (the record: convert.filemeta; written by edge_boneage.tflite_meta) inside the flatbuffer (ONNX:
   metadata_props entries of the same names, convert.onnx.add_onnx_metadata), then an atomic rename onto the
   target. A caller that owns more of the model's contract passes it as further named records (``extra_metadata``:
   the TW3 pipeline stores its crop recipe under ``edge_boneage_tw3``); they are written with the main record, only
   once the gate has passed. A stage model's main record has no whole-hand ``preprocess`` contract: its input is a
   region crop, described by such a record.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError
# the model description and check data live in convert.checkdata; these names stay importable from here
from edge_boneage.convert.checkdata import DataSet, _image_shape, input_specs, make_data, model_task
# the file's metadata record is convert.filemeta's
from edge_boneage.convert.filemeta import _io_tensors, build_metadata

#: default parity limits (see the module docstring)
FLOAT32_RTOL = 1e-4
FLOAT32_ATOL = 1e-4
FP16_MAX_AGE_DIFF = 1.0  # months
FP16_MAX_PROB_DIFF = 0.01
MAX_AGE_MAE_VS_KERAS = {"dynamic": 2.0, "int8": 3.0}  # months
MIN_GRADE_AGREEMENT = 0.9

CHECK_SEED = 20240917  # check images come from a different seed than calibration: fixed and disjoint
CALIB_SEED = 7


# ---------------------------------------------------------------------------------------------------------------
# Model loading and description


def ensure_tensorflow_backend() -> None:
    """Set KERAS_BACKEND=tensorflow before keras is imported; refuse if keras already runs another backend."""
    import sys

    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise EdgeBoneageError(f"LiteRT export needs KERAS_BACKEND=tensorflow; Keras is already running "
                                   f"{keras.backend.backend()}")
    else:
        os.environ["KERAS_BACKEND"] = "tensorflow"


def load_keras_model(path: str | os.PathLike):
    """keras.saving.load_model(path, safe_mode=True) after registering every custom layer."""
    ensure_tensorflow_backend()
    import keras

    import keras_models.layers  # noqa: F401  (custom layers)
    import keras_models.mobilenet  # noqa: F401
    import keras_models.resnext  # noqa: F401

    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: no such model file")
    if path.suffix != ".keras":
        raise EdgeBoneageError(f"{path}: expected a .keras model file")
    try:
        return keras.saving.load_model(str(path), safe_mode=True)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:300]
        raise EdgeBoneageError(f"{path}: cannot load Keras model ({type(exc).__name__}: {msg})") from exc


def source_info(keras_path: Path) -> dict:
    """Validation MAE of the source model, from a run.json / model_card.json next to the .keras, else None."""
    for name in ("run.json", "model_card.json", f"{keras_path.stem}.json"):
        p = keras_path.parent / name
        if not p.is_file():
            continue
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        candidates = [
            ((d.get("result") or {}).get("val_overall") or {}).get("mae_months"),
            (d.get("result") or {}).get("best_val_mae_months"),
            d.get("val_mae_months"), d.get("validation_mae_months"),
        ]
        mae = next((float(c) for c in candidates if isinstance(c, (int, float))), None)
        cfg = d.get("config") or {}
        return {"val_mae_months": mae, "from": name, "enhance": cfg.get("enhance"),
                "model": cfg.get("model") or cfg.get("arch"), "data": cfg.get("data")}  # arch: a tw3 run's
    return {"val_mae_months": None, "from": None, "enhance": None, "model": None, "data": None}


# ---------------------------------------------------------------------------------------------------------------
# Parity


def keras_outputs(model, inputs: dict, batch: int = 16) -> dict[str, np.ndarray]:
    names = input_specs(model)
    outs: dict[str, list] = {}
    n = int(next(iter(inputs.values())).shape[0])
    for i in range(0, n, batch):
        res = model({k: inputs[k][i:i + batch] for k in names}, training=False)
        res = res if isinstance(res, dict) else dict(zip(model.output_names, res if isinstance(res, (list, tuple)) else [res]))
        for k, v in res.items():
            outs.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in outs.items()}


def _stage_tw3_ages(probs: np.ndarray, data: DataSet) -> np.ndarray | None:
    """TW3 bone age (months) per radiograph that has all 13 crops in the set."""
    from edge_boneage import tw3

    lab = data.labels
    ages = []
    for j in np.unique(lab["image_id"]):
        rows = np.flatnonzero(lab["image_id"] == j)
        if len(rows) != len(tw3.BONES):
            continue
        per_bone = []
        for bone_idx, bone in enumerate(tw3.BONES):
            p = probs[rows[lab["bone"][rows] == bone_idx][0]]
            per_bone.append(p[:7] if bone == "ulna" else p)
        ages.append(12.0 * float(tw3.bone_age_from_probs(per_bone, "male" if lab["male"][rows[0]] else "female")))
    return np.array(ages) if ages else None


def compare(quantization: str, keras_out: dict, lite_out: dict, data: DataSet, task: str,
            limits: dict | None = None) -> dict:
    """Parity metrics of a converted model vs Keras on the check set; {"passed": bool, "reason": str, ...}."""
    limits = dict(limits or {})
    res: dict = {"n": len(data), "check_set": data.source, "quantization": quantization}
    missing = sorted(set(keras_out) - set(lite_out))
    if missing:
        return {**res, "passed": False, "reason": f"LiteRT outputs lack {missing}"}
    for k in keras_out:
        a, b = np.asarray(lite_out[k], np.float64), np.asarray(keras_out[k], np.float64)
        if a.shape != b.shape:
            return {**res, "passed": False, "reason": f"output {k!r} has shape {a.shape}, Keras {b.shape}"}
        if not np.all(np.isfinite(a)):
            return {**res, "passed": False, "reason": f"output {k!r} has non-finite values"}
        res[f"max_abs_diff_{k}"] = float(np.max(np.abs(a - b))) if a.size else 0.0
    if task == "age" and "age" in keras_out:
        age_l, age_k = lite_out["age"].reshape(-1).astype(np.float64), keras_out["age"].reshape(-1).astype(np.float64)
        res["age_mae_vs_keras_months"] = float(np.mean(np.abs(age_l - age_k)))
        if "age_months" in data.labels:
            y = data.labels["age_months"]
            res["age_mae_vs_labels_months"] = float(np.mean(np.abs(age_l - y)))
            res["keras_age_mae_vs_labels_months"] = float(np.mean(np.abs(age_k - y)))
    if task == "tw3_stage" and "probs" in keras_out:
        gl, gk = lite_out["probs"].argmax(-1), keras_out["probs"].argmax(-1)
        res["grade_agreement"] = float(np.mean(gl == gk))
        g = data.labels.get("grade")
        if g is not None:
            ok = g >= 1  # the classifier's classes are grades B..I (1..8); stage A crops have no class
            res["stage_accuracy"] = float(np.mean(gl[ok] + 1 == g[ok])) if ok.any() else None
            res["keras_stage_accuracy"] = float(np.mean(gk[ok] + 1 == g[ok])) if ok.any() else None
        tw3_probs = lite_out["probs"].shape[-1] == 8 and "image_id" in data.labels  # 8 grades B..I
        ages_l, ages_k = (_stage_tw3_ages(lite_out["probs"], data), _stage_tw3_ages(keras_out["probs"], data)) \
            if tw3_probs else (None, None)
        if ages_l is not None:
            res["tw3_age_mae_vs_keras_months"] = float(np.mean(np.abs(ages_l - ages_k)))

    if quantization == "float32":
        rtol, atol = limits.get("rtol", FLOAT32_RTOL), limits.get("atol", FLOAT32_ATOL)
        bad = [k for k in keras_out if not np.allclose(lite_out[k], keras_out[k], rtol=rtol, atol=atol)]
        res["rule"] = f"all outputs allclose(rtol={rtol:g}, atol={atol:g})"
        diffs = ", ".join("%s=%.3g" % (k, res["max_abs_diff_" + k]) for k in bad)
        reason = f"outputs {bad} differ from Keras beyond rtol={rtol:g}, atol={atol:g} (max abs diff {diffs})" \
            if bad else ""
    elif quantization == "fp16":
        mad, mpd = limits.get("max_age_diff", FP16_MAX_AGE_DIFF), limits.get("max_prob_diff", FP16_MAX_PROB_DIFF)
        res["rule"] = f"max |age diff| <= {mad:g} months and max |probs diff| <= {mpd:g}"
        probs_d = res.get("max_abs_diff_probs", 0.0)
        age_d = res.get("max_abs_diff_age", 0.0)
        reason = ""
        if age_d > mad:
            reason = f"max |age - Keras age| = {age_d:.3g} months > {mad:g}"
        elif probs_d > mpd:
            reason = f"max |probs - Keras probs| = {probs_d:.3g} > {mpd:g}"
    else:
        reason = ""
        if task == "age":
            lim = limits.get("max_age_mae", MAX_AGE_MAE_VS_KERAS[quantization])
            res["rule"] = f"age MAE vs Keras <= {lim:g} months"
            if res["age_mae_vs_keras_months"] > lim:
                reason = f"age MAE vs Keras = {res['age_mae_vs_keras_months']:.3g} months > {lim:g}"
        else:
            lim = limits.get("min_grade_agreement", MIN_GRADE_AGREEMENT)
            res["rule"] = f"top-1 grade agreement with Keras >= {lim:g}"
            if res.get("grade_agreement", 0.0) < lim:
                reason = f"top-1 grade agreement with Keras = {res.get('grade_agreement', 0.0):.3g} < {lim:g}"
    res["passed"] = not reason
    res["reason"] = reason or "ok"
    return res


# ---------------------------------------------------------------------------------------------------------------
# The format table: one conversion function per format; every one of them goes through parity_gate


@dataclass
class ConvertJob:
    """What a format's conversion function may use besides the model."""
    where: str  # the target, for messages
    io: str = "int8"  # int8: type of the float inputs/outputs
    keep_float: object = "auto"  # float islands (convert.quantize.convert_model)
    recipe: str = "tf_int8"  # int8 recipe
    representative: list | None = None  # int8: calibration samples (batch 1 dicts)
    check_inputs: dict | None = None  # the gate's check inputs (onnx: the split grouped convolutions are checked)


def convert_float32(model, job: ConvertJob) -> tuple[bytes, dict]:
    """LiteRT float32, builtin ops only."""
    from edge_boneage.convert.quantize import convert_model

    return convert_model(model, "float32", keep_float=job.keep_float, where=job.where)


def convert_fp16(model, job: ConvertJob) -> tuple[bytes, dict]:
    """LiteRT float16 weights, float32 compute (the float islands' weights restored to float32)."""
    from edge_boneage.convert.quantize import convert_model

    return convert_model(model, "fp16", keep_float=job.keep_float, where=job.where)


def convert_dynamic(model, job: ConvertJob) -> tuple[bytes, dict]:
    """LiteRT dynamic range: int8 weights, float activations."""
    from edge_boneage.convert.quantize import convert_model

    return convert_model(model, "dynamic", keep_float=job.keep_float, where=job.where)


def convert_int8(model, job: ConvertJob) -> tuple[bytes, dict]:
    """LiteRT full integer int8, calibrated on job.representative, float islands kept float."""
    from edge_boneage.convert.quantize import convert_model

    return convert_model(model, "int8", representative=job.representative, io=job.io, keep_float=job.keep_float,
                         recipe=job.recipe, where=job.where)


def convert_onnx(model, job: ConvertJob) -> tuple[bytes, dict]:
    """ONNX through Keras' exporter (tf2onnx); grouped convolutions split per group (convert.onnx), the split
    model checked against the original before it is exported."""
    from edge_boneage.convert.onnx import require, split_grouped_convs

    require("onnx", "onnxruntime", "tf2onnx")
    exported, n_split = split_grouped_convs(model)
    if n_split:  # call the rewritten model once (export needs a called model) and check it against the original
        ref, split_ref = keras_outputs(model, job.check_inputs), keras_outputs(exported, job.check_inputs)
        off = {k: float(np.max(np.abs(split_ref[k] - ref[k]))) for k in ref}
        if any(not np.allclose(split_ref[k], ref[k], rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL) for k in ref):
            raise EdgeBoneageError(f"{job.where}: the grouped convolutions split per group differ from the original "
                                   f"(max abs diff {off}); no file written")
    with tempfile.TemporaryDirectory(prefix="edge_boneage_onnx_") as tmp:
        cand = Path(tmp) / "model.onnx"
        try:
            exported.export(str(cand), format="onnx", verbose=False)
        except Exception as exc:
            raise EdgeBoneageError(f"{job.where}: ONNX export failed: {' '.join(str(exc).split())[:300]}") from exc
        data = cand.read_bytes()
    return data, {"quantization": "float32", "io": "float32", "method": "keras model.export(format='onnx') "
                  "(tf2onnx)", "grouped_convs_split": n_split, "float_layers": [], "float_layer_types": {},
                  "denylisted_nodes": 0, "ops": None}


@dataclass(frozen=True)
class Format:
    name: str
    container: str  # "litert" (.tflite, run by the LiteRT interpreter) or "onnx" (.onnx, run by ONNX Runtime)
    suffix: str
    convert: object  # (model, ConvertJob) -> (bytes, info)
    rule: str  # the parity rule of compare() that gates it
    calibrated: bool = False  # needs representative data
    contract_only: bool = False  # only for models with the project's I/O contract (the rule needs labels' kind)


#: every format a Keras model is exported to; export() / export_model() take one of these names
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("float32", "litert", ".tflite", convert_float32, "float32"),
    Format("fp16", "litert", ".tflite", convert_fp16, "fp16"),
    Format("dynamic", "litert", ".tflite", convert_dynamic, "dynamic", contract_only=True),
    Format("int8", "litert", ".tflite", convert_int8, "int8", calibrated=True, contract_only=True),
    Format("onnx", "onnx", ".onnx", convert_onnx, "float32"),
)}


def get_format(name: str, where="model") -> Format:
    if name not in FORMATS:
        raise EdgeBoneageError(f"{where}: format {name!r} is not implemented; available: {', '.join(FORMATS)}")
    return FORMATS[name]


def generic_check_inputs(model, n: int = 8, seed: int = CHECK_SEED) -> dict:
    """Deterministic check inputs for a model without the project's I/O contract (e.g. one layer): images 0..255,
    other floats 0..1, integer inputs 0 or 1 (valid indices); undefined dimensions 1."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in input_specs(model).items():
        shp = [int(n)] + [int(d) if d else 1 for d in shape]
        if dtype == "uint8":
            out[name] = rng.integers(0, 256, shp).astype(np.uint8)
        elif np.issubdtype(np.dtype(dtype), np.integer):
            out[name] = rng.integers(0, 2, shp).astype(dtype)
        else:
            out[name] = rng.random(shp, dtype=np.float32).astype(dtype)
    return out


def parity_gate(fmt: Format, candidate: Path, keras_out: dict, check: DataSet, task: str,
                limits: dict | None = None) -> tuple[dict, dict | None]:
    """THE parity gate: run the candidate file in a child process on the check set (the LiteRT interpreter or ONNX
    Runtime, by fmt.container), compare with the Keras outputs by fmt.rule; (parity record, io tensors). A crash or
    error of the child is a failed gate with its reason, never an exception."""
    io_tensors = None
    try:
        if fmt.container == "litert":
            from edge_boneage.convert import litert

            from edge_boneage.convert.onnx import match_outputs

            raw = litert.validate_in_subprocess(candidate, dict(check.inputs))
            got = {k: raw[v] for k, v in match_outputs(keras_out, raw).items()}  # by name, else order and shape
            io_tensors = _io_tensors(candidate)  # in this process only once the child ran it without crashing
        else:
            from edge_boneage.convert import onnx

            spec = onnx.onnx_inputs(candidate)
            missing = sorted(set(spec) - set(check.inputs))
            if missing:
                raise EdgeBoneageError(f"{candidate}: ONNX inputs {missing} are not the Keras model's")
            raw = onnx.validate_onnx_in_subprocess(candidate, {k: np.asarray(check.inputs[k]).astype(spec[k][1])
                                                                for k in spec})
            got = {k: raw[v] for k, v in onnx.match_outputs(keras_out, raw).items()}
            io_tensors = {"inputs": {k: {"dtype": d, "shape": s} for k, (s, d) in spec.items()},
                          "outputs": {k: {"dtype": str(v.dtype), "shape": ["batch", *v.shape[1:]]}
                                      for k, v in got.items()}}
        parity = compare(fmt.rule, keras_out, got, check, task, limits)
    except EdgeBoneageError as exc:
        parity = {"n": len(check), "check_set": check.source, "passed": False,
                  "reason": str(exc).replace(str(candidate), "the converted model")}
    parity["quantization"] = fmt.name
    if fmt.container == "onnx":
        parity["against"] = "keras (ONNX Runtime in a child process)"
    return parity, io_tensors


@dataclass
class Gated:
    """A converted model that went through parity_gate (passed, or failed and forced)."""
    data: bytes
    info: dict
    parity: dict
    io_tensors: dict | None
    passed: bool


def gated_convert(model, fmt: Format, out: Path, check: DataSet, task: str, job: ConvertJob, *,
                  force: bool = False, limits: dict | None = None) -> Gated:
    """Convert `model` to `fmt` and gate it; raises EdgeBoneageError (one line, naming `out`) when it fails and
    not `force`. Writes nothing but a temporary candidate next to `out` (removed)."""
    keras_out = keras_outputs(model, check.inputs)
    job.check_inputs = check.inputs
    data, info = fmt.convert(model, job)
    if fmt.container == "litert":
        from edge_boneage.convert.quantize import non_builtin_ops_bytes

        custom = non_builtin_ops_bytes(data)
        if custom:
            raise EdgeBoneageError(f"{out}: converted model has non-builtin ops {custom} (the stock interpreter "
                                   "cannot run them)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.check.") as tmp:
        tmp_file = Path(tmp) / f"candidate{fmt.suffix}"
        tmp_file.write_bytes(data)
        parity, io_tensors = parity_gate(fmt, tmp_file, keras_out, check, task, limits)
    passed = bool(parity["passed"])
    parity["status"] = "PASSED" if passed else ("FAILED (forced)" if force else "FAILED")
    if not passed and not force:
        raise EdgeBoneageError(f"{out}: parity check failed ({fmt.name}): {parity['reason']}; "
                               "no file written (--force writes it anyway, marked FAILED)")
    return Gated(data, info, parity, io_tensors, passed)


def export_model(model, path, *, quantization: str = "float32", check_n: int = 8, force: bool = False,
                 limits: dict | None = None) -> Path:
    """A Keras model (any I/O: a layer probe, a demo model) -> `path` through the format table and the parity gate,
    without metadata (export() writes a contract model's); checked on the contract's data when the model has the
    project's I/O, else on generic_check_inputs. Written atomically; returns the path."""
    import keras

    from edge_boneage.fileutil import write_bytes_atomic

    path = Path(path)
    fmt = get_format(quantization, path)
    if path.suffix != fmt.suffix:
        raise EdgeBoneageError(f"{path}: a {fmt.name} model file must end in {fmt.suffix}")
    if keras.backend.backend() != "tensorflow":
        raise EdgeBoneageError(
            f"{path}: LiteRT export needs KERAS_BACKEND=tensorflow (current backend: {keras.backend.backend()}); "
            "save the model as .keras and export it from a TensorFlow-backend process")
    try:
        task = model_task(model)
        _image_shape(model)
        check = make_data(model, "synth", check_n, seed=CHECK_SEED)
        missing = sorted(set(input_specs(model)) - set(check.inputs))
        if missing:  # inputs beyond the project's contract (an extra feature): generic check values for those
            extra = generic_check_inputs(model, len(check))
            check.inputs.update({k: extra[k] for k in missing})
    except EdgeBoneageError:
        task, check = "generic", DataSet(generic_check_inputs(model, check_n), {}, f"generic(seed={CHECK_SEED})")
    if fmt.contract_only and task == "generic":
        raise EdgeBoneageError(f"{path}: {fmt.name} needs a model with the project's I/O contract (age or stage)")
    if fmt.calibrated:
        raise EdgeBoneageError(f"{path}: {fmt.name} needs calibration data: use export() on the .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    gated = gated_convert(model, fmt, path, check, task, ConvertJob(where=str(path)), force=force, limits=limits)
    write_bytes_atomic(path, gated.data)
    return path


def export_litert(model, path, *, quantization: str = "float32", force: bool = False) -> Path:
    """A Keras model -> .tflite through the format table and the parity gate (export_model), builtin ops only."""
    if quantization in FORMATS and FORMATS[quantization].container != "litert":
        raise EdgeBoneageError(f"{path}: {quantization} is not a LiteRT format")
    return export_model(model, path, quantization=quantization, force=force)


# ---------------------------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class ExportResult:
    path: Path | None
    written: bool
    passed: bool
    forced: bool
    parity: dict
    info: dict
    metadata: dict | None
    seconds: float
    message: str
    extra_metadata: dict = field(default_factory=dict)  # {entry name: record} written next to `metadata`


def default_out(keras_path: Path, quantization: str) -> Path:
    fmt = get_format(quantization, keras_path)
    if fmt.container == "onnx":
        return keras_path.with_suffix(".onnx")
    suffix = "" if quantization == "float32" else f"_{quantization}"
    return keras_path.with_name(f"{keras_path.stem}{suffix}{fmt.suffix}")


def export(keras_path, out=None, *, quantization: str = "float32", io: str = "int8", calib: str = "synth",
           rsna_dir=None, calib_n: int = 64, check_n: int = 32, force: bool = False, keep_float="auto",
           limits: dict | None = None, model=None, recipe: str = "tf_int8", log=print,
           extra_metadata: dict[str, dict] | None = None) -> ExportResult:
    """Export `keras_path` to one of FORMATS (`quantization`: float32 / fp16 / dynamic / int8 LiteRT, or onnx)
    behind the parity gate (see the module docstring).

    Raises EdgeBoneageError when the model fails the gate (and force is False); nothing is written then.
    `model`: an already loaded Keras model (skips loading; keras_path still names the source).
    `extra_metadata`: {entry name: JSON record} stored next to the main record (whose name it may not take);
    the main record lists their names under "extra_metadata". LiteRT: flatbuffer metadata entries; ONNX:
    metadata_props entries of the same names (convert.onnx.read_onnx_metadata).
    """
    from edge_boneage.fileutil import atomic_path
    from edge_boneage.tflite_meta import METADATA_NAME, add_metadata

    t0 = time.time()
    keras_path = Path(keras_path)
    fmt = get_format(quantization, keras_path)
    out = Path(out) if out else default_out(keras_path, quantization)
    if out.suffix != fmt.suffix:
        raise EdgeBoneageError(f"{out}: a {'LiteRT' if fmt.container == 'litert' else 'ONNX'} model file must end "
                               f"in {fmt.suffix}")
    extra_metadata = dict(extra_metadata or {})
    if METADATA_NAME in extra_metadata:
        raise EdgeBoneageError(f"{out}: extra metadata may not replace the main record {METADATA_NAME!r}")
    from edge_boneage.fileutil import check_writable_folder

    check_writable_folder(out, "exported model")
    if model is None:
        model = load_keras_model(keras_path)
    task = model_task(model)
    src = source_info(keras_path)
    if task == "age":  # a bias-corrected model carries its validation MAE itself (edge_boneage.calibrate)
        try:
            from edge_boneage.calibrate import age_layer

            rec = (getattr(age_layer(model), "calibration", None) or [{}])[-1]
        except EdgeBoneageError:
            rec = {}
        if rec.get("val_mae_months") is not None:
            src = {**src, "val_mae_months": float(rec["val_mae_months"]), "from": "the model's calibration record"}
    enhance = src.get("enhance")
    if task == "age" and enhance is None:  # a lone .keras (no run.json beside it): the contract it carries
        from edge_boneage.preprocess import spec_of_keras_model

        enhance = spec_of_keras_model(model).enhance

    job = ConvertJob(where=str(out), io=io, keep_float=keep_float, recipe=recipe)
    calib_desc = None
    if fmt.calibrated:
        cal = make_data(model, calib, calib_n, seed=CALIB_SEED, rsna_dir=rsna_dir, enhance=enhance)
        job.representative, calib_desc = cal.samples(), cal.source
        log(f"calibration: {len(cal)} samples from {cal.source}")
    check_source = calib if (calib == "rsna" and task == "age") else "synth"
    check = make_data(model, check_source, check_n, seed=CHECK_SEED, rsna_dir=rsna_dir, enhance=enhance,
                      offset=calib_n if check_source == "rsna" else 0)
    gated = gated_convert(model, fmt, out, check, task, job, force=force, limits=limits)
    parity, info = gated.parity, gated.info

    meta = build_metadata(model, keras_path, task, info, parity, src, gated.io_tensors, calib_desc)
    meta["format"] = {"name": fmt.name, "container": fmt.container}
    if extra_metadata:
        meta["extra_metadata"] = sorted(extra_metadata)
    if fmt.container == "litert":
        blob = add_metadata(gated.data, meta)
        for name, record in extra_metadata.items():
            blob = add_metadata(blob, record, name)
    else:
        from edge_boneage.convert.onnx import add_onnx_metadata

        blob = add_onnx_metadata(gated.data, {METADATA_NAME: meta, **extra_metadata})
    with atomic_path(out) as tmp_out:
        Path(tmp_out).write_bytes(blob)
    return ExportResult(out, True, gated.passed, force and not gated.passed, parity, info, meta, time.time() - t0,
                        f"{out}: written ({parity['status']})", extra_metadata)


def export_keras_onnx(keras_path, out, *, check_n: int = 8, force: bool = False, model=None) -> dict:
    """`export(..., quantization="onnx")` with the summary earlier callers read: {"path", "max_abs_diff",
    "status", "inputs", "grouped_convs_split"}."""
    res = export(keras_path, out, quantization="onnx", check_n=check_n, force=force, model=model,
                 log=lambda *a: None)
    diffs = {k[len("max_abs_diff_"):]: v for k, v in res.parity.items() if k.startswith("max_abs_diff_")}
    return {"path": res.path, "max_abs_diff": diffs, "status": res.parity["status"],
            "inputs": list((res.metadata["quantization"]["io_tensors"] or {}).get("inputs", {})),
            "grouped_convs_split": res.info.get("grouped_convs_split", 0)}


def format_parity(parity: dict) -> str:
    """Short human-readable parity lines."""
    keys = [k for k in parity if k.startswith(("max_abs_diff", "age_mae", "keras_age", "grade_", "stage_",
                                                "keras_stage", "tw3_"))]
    lines = [f"parity: {parity.get('status', '?')} - {parity.get('rule', '')} ({parity.get('reason', '')})",
             f"check set: {parity.get('check_set')}"]
    lines += [f"  {k}: {parity[k]:.6g}" if isinstance(parity[k], float) else f"  {k}: {parity[k]}" for k in keys]
    return "\n".join(lines)
