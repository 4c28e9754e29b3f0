"""The metadata record an exported file carries (edge_boneage.tflite_meta writes it; convert.export builds it).

One record per file: the model and its source (sha256), the input contract (``preprocess``: the model file's own
preprocessing, read from the .keras), what each output means (the age's class centres, calibration and interval;
the quality gate's feature check and its threshold, switched off with the reason where a file's residual output is
integer), how it was quantised (recipe, float islands and why, op counts, I/O tensors) and the parity gate's
result.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError, __version__
from edge_boneage.convert.checkdata import _image_shape, input_specs


def _outputs_meaning(model, task: str, io_tensors: dict | None = None) -> dict:
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
                          "class_centres_months": centres},
                **_feature_gate_meaning(model, io_tensors)}
    from keras_models.resnext import BONES, GRADES_PER_BONE

    return {"probs": {"shape": ["batch", 8], "meaning": "TW3 RUS stage probabilities, grades B..I (index 0 = B)",
                      "grades": "BCDEFGHI", "bones": list(BONES), "grades_per_bone": list(GRADES_PER_BONE),
                      "note": "the ulna has grades B..H only (probs[:, 7] == 0); input 'bone' = index into bones"}}


def _feature_gate_meaning(model, io_tensors: dict | None = None) -> dict:
    """The feature check's output record; off (threshold None, and why) where the file's output is integer: an int8
    residual saturates at its calibration maximum (the real films' largest), so outliers cannot stand out."""
    from edge_boneage.featuregate import OUTPUT, feature_gate_of

    gate = feature_gate_of(model)
    if gate is None:
        return {}
    rec = {k: v for k, v in gate.items() if k != "output"}
    t = ((io_tensors or {}).get("outputs") or {}).get(OUTPUT) or {}
    if t.get("dtype") in ("int8", "uint8"):
        top = (127 - t["zero_point"] if t["dtype"] == "int8" else 255 - t["zero_point"]) * t["scale"]
        rec.update(keras_threshold=rec["threshold"], threshold=None,
                   disabled=f"this file's {OUTPUT} output is {t['dtype']} and saturates at {top:.3f} (its "
                            f"calibration maximum), below the float check's threshold {rec['threshold']:.3f}: the "
                            f"check is off in this file; the float32 file carries it")
    return {OUTPUT: {"shape": ["batch", 1], "meaning": "length of the pooled features outside their training "
                     "principal subspace (edge_boneage.featuregate); above threshold: unlike the training "
                     "radiographs", **rec}}


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
    from edge_boneage.preprocess import spec_of_keras_model

    size, ch = _image_shape(model)
    names = input_specs(model)

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
        "outputs": _outputs_meaning(model, task, io_tensors),
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
