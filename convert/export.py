"""The `edge-boneage export` pipeline: .keras -> quantised LiteRT model -> parity gate -> metadata -> file.

1. load the .keras (safe_mode, custom layers registered; TensorFlow backend);
2. convert (convert.quantize.convert_model: float32 / fp16 / dynamic / full int8 with float islands), builtin ops
   only;
3. parity gate: the converted model is written under a temporary name, loaded and run in a CHILD process
   (convert.litert.validate_in_subprocess: an interpreter abort cannot take the exporter down) on a fixed check
   set, and compared with the Keras model on the same inputs:

   * float32: every output within rtol 1e-4, atol 1e-4 (np.allclose; "float within 1e-4");
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
4. metadata (edge_boneage.tflite_meta) inside the flatbuffer, then an atomic rename onto the target. A caller
   that owns more of the model's contract passes it as further named records (``extra_metadata``: the TW3
   pipeline stores its crop recipe under ``edge_boneage_tw3``); they are written with the main record, only once
   the gate has passed. A stage model's main record has no whole-hand ``preprocess`` contract: its input is a
   region crop, described by such a record.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError, __version__

#: default parity limits (see the module docstring)
FLOAT32_RTOL = 1e-4
FLOAT32_ATOL = 1e-4
FP16_MAX_AGE_DIFF = 1.0  # months
FP16_MAX_PROB_DIFF = 0.01
MAX_AGE_MAE_VS_KERAS = {"dynamic": 2.0, "int8": 3.0}  # months
MIN_GRADE_AGREEMENT = 0.9

CALIB_SOURCES = ("synth", "rsna")
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


def input_specs(model) -> dict[str, tuple[tuple, str]]:
    """{input name: (shape without batch, dtype)} of a Keras model."""
    out = {}
    for t in model.inputs:
        name = getattr(t, "name", "").split(":")[0]
        out[name] = (tuple(t.shape[1:]), str(t.dtype).replace("<dtype: '", "").replace("'>", ""))
    return out


def model_task(model) -> str:
    """"age" (inputs image[, sex], outputs age, probs) or "tw3_stage" (inputs image[, bone], output probs)."""
    names = set(input_specs(model))
    outs = set(model.output_names) if hasattr(model, "output_names") else set()
    if "image" not in names:
        raise EdgeBoneageError(f"model {model.name!r}: no input named 'image' (inputs: {sorted(names)})")
    if "age" in outs:
        return "age"
    if "bone" in names or outs == {"probs"}:
        return "tw3_stage"
    raise EdgeBoneageError(f"model {model.name!r}: outputs {sorted(outs)} are neither an age model's nor a TW3 "
                           "stage model's")


def _image_shape(model) -> tuple[int, int]:
    shape, _ = input_specs(model)["image"]
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
        raise EdgeBoneageError(f"model {model.name!r}: 'image' input must be (S, S, C), got {shape}")
    return int(shape[0]), int(shape[2])


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
# Calibration and check data (training distribution: RSNA through datasets/io/preprocess, or the synth generator)


@dataclass
class DataSet:
    inputs: dict  # {name: batched array}
    labels: dict = field(default_factory=dict)  # age: {"age_months", "male"}; stage: {"grade", "bone", "image_id"}
    source: str = ""

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def samples(self) -> list[dict]:
        """One dict per sample with batch 1 (the representative dataset format)."""
        return [{k: v[i:i + 1] for k, v in self.inputs.items()} for i in range(len(self))]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    import cv2

    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def _channels(images: np.ndarray, channels: int) -> np.ndarray:
    x = images[..., None]
    return np.repeat(x, channels, axis=-1) if channels > 1 else x


def _age_inputs(model, images, male, size_c) -> dict:
    size, ch = size_c
    names = input_specs(model)
    x = {"image": _channels(images, ch).astype(np.uint8)}
    if "sex" in names:
        x["sex"] = np.asarray(male, np.float32).reshape(-1, 1)
    return x


def age_data(model, source: str, n: int, *, seed: int, rsna_dir=None, enhance=None, offset: int = 0) -> DataSet:
    """n labelled images for an age model, preprocessed to its input size."""
    size, ch = _image_shape(model)
    if source == "synth":
        from edge_boneage.synth import generate

        b = generate(int(n), size=max(size, 64), seed=seed)
        images = _resize(b.images, size)
        if enhance:
            from edge_boneage.preprocess import enhance_image

            images = np.stack([enhance_image(im, enhance) for im in images])
        return DataSet(_age_inputs(model, images, b.male, (size, ch)),
                       {"age_months": b.boneage.astype(np.float64), "male": b.male.astype(bool)},
                       f"synth(seed={seed}, n={n})")
    if source == "rsna":
        from edge_boneage import datasets
        from edge_boneage.io import read_image
        from edge_boneage.preprocess import PreprocessSpec

        if not rsna_dir:
            raise EdgeBoneageError("--calib rsna needs --rsna-dir (a folder with labels.csv and img100/)")
        base = Path(rsna_dir)
        result = datasets.load_rsna_csv(base / "labels.csv", base / "img100", check_files=False)
        samples = list(result.samples)
        if (base / "fullres.csv").is_file():  # calibrate / check on the protocol's training split only, so that no
            from edge_boneage.train import protocol_split  # validation or test image chooses a quantisation scale

            samples = list(protocol_split(samples, base)[0])
        if len(samples) < offset + n:
            raise EdgeBoneageError(f"{base / 'labels.csv'}: only {len(samples)} samples, need {offset + n}")
        order = np.random.default_rng(seed).permutation(len(samples))[offset:offset + n]
        from edge_boneage.preprocess import spec_of_keras_model

        spec = spec_of_keras_model(model, enhance=enhance)
        picked = [samples[i] for i in order]
        images = np.stack([spec.apply(read_image(s.path)[0]) for s in picked])
        male = np.array([bool(s.male) for s in picked])
        return DataSet(_age_inputs(model, images, male, (size, ch)),
                       {"age_months": np.array([s.boneage_months for s in picked], np.float64), "male": male},
                       f"rsna({base}, n={n}, seed={seed}, offset={offset})")
    raise EdgeBoneageError(f"unknown calibration source {source!r}; choose one of {', '.join(CALIB_SOURCES)}")


def stage_data(model, source: str, n: int, *, seed: int) -> DataSet:
    """n RUS bone crops (13 per synthetic radiograph) with TW3 grades for a stage model."""
    if source != "synth":
        raise EdgeBoneageError("TW3 stage models need stage labels: only --calib synth is available for them")
    from edge_boneage.synth import iter_bone_crops

    size, ch = _image_shape(model)
    n_images = max(1, -(-int(n) // 13))
    crops, grades, bones, male, image_id = [], [], [], [], []
    for j, (c, g, b, m) in enumerate(iter_bone_crops(n_images, size=max(4 * size, 256), crop=size, seed=seed)):
        crops.append(c), grades.append(g), bones.append(b), male.append(np.full(len(b), bool(m)))
        image_id.append(np.full(len(b), j))
    crops, grades, bones = np.concatenate(crops), np.concatenate(grades), np.concatenate(bones)
    male, image_id = np.concatenate(male), np.concatenate(image_id)
    x = {"image": _channels(crops, ch).astype(np.uint8)}
    if "bone" in input_specs(model):
        x["bone"] = bones.astype(np.int32).reshape(-1, 1)
    return DataSet(x, {"grade": grades, "bone": bones, "male": male, "image_id": image_id},
                   f"synth crops(seed={seed}, images={n_images})")


def make_data(model, source: str, n: int, *, seed: int, rsna_dir=None, enhance=None, offset: int = 0) -> DataSet:
    if model_task(model) == "age":
        return age_data(model, source, n, seed=seed, rsna_dir=rsna_dir, enhance=enhance, offset=offset)
    return stage_data(model, source, n, seed=seed)


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
        ages_l, ages_k = _stage_tw3_ages(lite_out["probs"], data), _stage_tw3_ages(keras_out["probs"], data)
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
# Metadata


def _outputs_meaning(model, task: str) -> dict:
    if task == "age":
        from keras_models.mobilenet import AGE_CENTRES_MONTHS

        try:
            from edge_boneage.calibrate import age_layer

            layer = age_layer(model)
            centres, calibration = list(layer.centres), getattr(layer, "calibration", None)
            interval = getattr(layer, "interval", None)
        except EdgeBoneageError:
            centres, calibration, interval = list(AGE_CENTRES_MONTHS), None, None
        return {"age": {"shape": ["batch", 1], "unit": "months", "meaning": "expected bone age = sum_k probs_k * "
                        "class_centres_months_k", "calibration": calibration, "interval": interval},
                "probs": {"shape": ["batch", 19], "meaning": "probabilities of the 19 one-year classes; class k = "
                          "[12k, 12k+12) months (centres: bias-corrected when age.calibration is set)",
                          "class_centres_months": centres}}
    from keras_models.resnext import BONES, GRADES_PER_BONE

    return {"probs": {"shape": ["batch", 8], "meaning": "TW3 RUS stage probabilities, grades B..I (index 0 = B)",
                      "grades": "BCDEFGHI", "bones": list(BONES), "grades_per_bone": list(GRADES_PER_BONE),
                      "note": "the ulna has grades B..H only (probs[:, 7] == 0); input 'bone' = index into bones"}}


def _io_tensors(path: Path) -> dict:
    from edge_boneage.runtime import LiteRTModel

    m = LiteRTModel(path)
    out = {}
    for kind, det in (("inputs", m.input_details()), ("outputs", m.output_details())):
        out[kind] = {name: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d.get("shape_signature", d["shape"])],
                            "scale": float(d.get("quantization", (0.0, 0))[0]),
                            "zero_point": int(d.get("quantization", (0.0, 0))[1])} for name, d in det.items()}
    return out


def build_metadata(model, keras_path: Path, task: str, info: dict, parity: dict, src: dict, io_tensors: dict,
                   calib: str | None) -> dict:
    from edge_boneage.preprocess import PreprocessSpec

    size, ch = _image_shape(model)
    names = input_specs(model)
    from edge_boneage.preprocess import spec_of_keras_model

    # a stage model's input is a region crop (its recipe: the caller's extra record), not a whole-hand frame
    whole_hand = ch == 1 and task == "age"
    preprocess = spec_of_keras_model(model, enhance=src.get("enhance")).to_dict() if whole_hand else None
    digest = hashlib.sha256(keras_path.read_bytes()).hexdigest()
    kept = info.get("float_layer_types") or {}
    return {
        "model": {"name": model.name, "registry_name": src.get("model"), "source_file": keras_path.name,
                  "source_sha256": digest, "task": task},
        "version": __version__,
        "exported_by": f"edge-boneage {__version__} export",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": {
            "image": {"size": size, "channels": ch, "dtype": "uint8", "grey": True, "value_range": [0, 255],
                      "letterbox": "centred square, pad 0, then cv2.INTER_AREA resize" if whole_hand else None},
            "sex_input": "sex" in names,
            "sex": {"dtype": "float32", "shape": ["batch", 1], "male": 1.0, "female": 0.0} if "sex" in names else None,
            "bone_input": "bone" in names,
        },
        "preprocess": preprocess,
        "outputs": _outputs_meaning(model, task),
        "age_unit": "months" if task == "age" else None,
        "quantization": {
            "mode": info["quantization"], "io": info["io"], "method": info.get("method"),
            "recipe": info.get("recipe") or ("tf_int8" if info["quantization"] == "int8" else None),
            "kept_float_layers": kept,
            "kept_float_reason": {t: r for t, r in _island_reasons().items() if t in set(kept.values())},
            "denylisted_nodes": info.get("denylisted_nodes", 0),
            "ops": info.get("ops"), "calibration": calib, "io_tensors": io_tensors,
        },
        "parity": parity,
        "source_validation_mae_months": src.get("val_mae_months"),
        "source_validation_mae_from": src.get("from"),
    }


def _island_reasons() -> dict:
    from edge_boneage.convert.quantize import _FEEDS_EXPECTATION, FLOAT_ISLAND_TYPES

    return {**FLOAT_ISLAND_TYPES, "Dense": _FEEDS_EXPECTATION}


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
    suffix = "" if quantization == "float32" else f"_{quantization}"
    return keras_path.with_name(f"{keras_path.stem}{suffix}.tflite")


def export(keras_path, out=None, *, quantization: str = "float32", io: str = "int8", calib: str = "synth",
           rsna_dir=None, calib_n: int = 64, check_n: int = 32, force: bool = False, keep_float="auto",
           limits: dict | None = None, model=None, recipe: str = "tf_int8", log=print,
           extra_metadata: dict[str, dict] | None = None) -> ExportResult:
    """Export `keras_path` to a LiteRT file behind the parity gate (see the module docstring).

    Raises EdgeBoneageError when the model fails the gate (and force is False); nothing is written then.
    `model`: an already loaded Keras model (skips loading; keras_path still names the source).
    `extra_metadata`: {entry name: JSON record} stored next to the main record (whose name it may not take);
    the main record lists their names under "extra_metadata".
    """
    from edge_boneage.convert.litert import validate_in_subprocess
    from edge_boneage.convert.quantize import convert_model, non_builtin_ops_bytes
    from edge_boneage.fileutil import atomic_path
    from edge_boneage.tflite_meta import METADATA_NAME, add_metadata

    t0 = time.time()
    keras_path = Path(keras_path)
    out = Path(out) if out else default_out(keras_path, quantization)
    if out.suffix != ".tflite":
        raise EdgeBoneageError(f"{out}: a LiteRT model file must end in .tflite")
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

    representative, calib_desc = None, None
    if quantization == "int8":
        cal = make_data(model, calib, calib_n, seed=CALIB_SEED, rsna_dir=rsna_dir, enhance=enhance)
        representative, calib_desc = cal.samples(), cal.source
        log(f"calibration: {len(cal)} samples from {cal.source}")
    check_source = calib if (calib == "rsna" and task == "age") else "synth"
    check = make_data(model, check_source, check_n, seed=CHECK_SEED, rsna_dir=rsna_dir, enhance=enhance,
                      offset=calib_n if check_source == "rsna" else 0)
    keras_out = keras_outputs(model, check.inputs)

    data, info = convert_model(model, quantization, representative=representative, io=io, keep_float=keep_float,
                               recipe=recipe, where=str(out))
    custom = non_builtin_ops_bytes(data)
    if custom:
        raise EdgeBoneageError(f"{out}: converted model has non-builtin ops {custom} (the stock interpreter cannot "
                               "run them)")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.check.") as tmp:
        tmp_file = Path(tmp) / "candidate.tflite"
        tmp_file.write_bytes(data)
        io_tensors = None
        try:
            lite_out = validate_in_subprocess(tmp_file, {k: check.inputs[k] for k in check.inputs})
            parity = compare(quantization, keras_out, lite_out, check, task, limits)
            io_tensors = _io_tensors(tmp_file)  # in this process only once the child ran it without crashing
        except EdgeBoneageError as exc:
            msg = str(exc).replace(str(tmp_file), "the converted model")
            parity = {"n": len(check), "check_set": check.source, "quantization": quantization, "passed": False,
                      "reason": msg}

    passed = bool(parity["passed"])
    parity["status"] = "PASSED" if passed else ("FAILED (forced)" if force else "FAILED")
    if not passed and not force:
        raise EdgeBoneageError(f"{out}: parity check failed ({quantization}): {parity['reason']}; "
                               "no file written (--force writes it anyway, marked FAILED)")
    meta = build_metadata(model, keras_path, task, info, parity, src, io_tensors, calib_desc)
    if extra_metadata:
        meta["extra_metadata"] = sorted(extra_metadata)
    blob = add_metadata(data, meta)
    for name, record in extra_metadata.items():
        blob = add_metadata(blob, record, name)
    with atomic_path(out) as tmp_out:
        Path(tmp_out).write_bytes(blob)
    return ExportResult(out, True, passed, force and not passed, parity, info, meta, time.time() - t0,
                        f"{out}: written ({parity['status']})", extra_metadata)


def format_parity(parity: dict) -> str:
    """Short human-readable parity lines."""
    keys = [k for k in parity if k.startswith(("max_abs_diff", "age_mae", "keras_age", "grade_", "stage_",
                                                "keras_stage", "tw3_"))]
    lines = [f"parity: {parity.get('status', '?')} - {parity.get('rule', '')} ({parity.get('reason', '')})",
             f"check set: {parity.get('check_set')}"]
    lines += [f"  {k}: {parity[k]:.6g}" if isinstance(parity[k], float) else f"  {k}: {parity[k]}" for k in keys]
    return "\n".join(lines)
