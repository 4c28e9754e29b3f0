"""Stage model -> .tflite (or any format of convert.export.FORMATS) through the project's one gated exporter
(``edge_boneage.convert.export.export``): the same child-process parity gate and main metadata record as an age export, plus the crop recipe the model was
trained with, stored under the metadata entry ``TFLITE_META_NAME`` (``StageModel.meta``: ``tw3 predict`` and
``tw3 evaluate`` crop a .tflite's regions as its training did).

The margin comes from the model's training run (the run.json of the tw3 run folder holding the .keras, or of the
folder above ``checkpoints/``); ``margin`` given explicitly must agree with it and is required only when no run
records one. No default is ever written for a model whose margin is unknown.
"""

from __future__ import annotations

from pathlib import Path

from edge_boneage import EdgeBoneageError
from edge_boneage.tw3_pipeline.constants import BONES, TFLITE_META_NAME
from edge_boneage.tw3_pipeline.run_config import trained_margin


def crop_record(margin: float, size: int, margin_from: str) -> dict:
    """The metadata record StageModel reads back (entry TFLITE_META_NAME): how the 13 region crops are made."""
    return {"task": "tw3_stage", "bones": list(BONES), "grades": "B..I (8; ulna 7)",
            "crop": {"margin": float(margin), "margin_from": margin_from, "resize": "cv2.INTER_AREA",
                     "enhance": "cv2.equalizeHist", "size": int(size)}}


def stage_crop_metadata(keras_path, model, margin: float | None = None) -> dict[str, dict]:
    """{TFLITE_META_NAME: crop_record} for a loaded stage model: the margin of its training run (run.json), or
    `margin` when no run records one; refuses (one line, naming the file) an unknown or contradicting margin."""
    from edge_boneage.convert.checkdata import input_specs, model_task

    keras_path = Path(keras_path)
    if model_task(model) != "tw3_stage":
        raise EdgeBoneageError(f"{keras_path}: not a TW3 stage model (use `edge-boneage export` for age models)")
    size = int(input_specs(model)["image"][0][0])
    recorded = trained_margin(keras_path, size)
    if recorded is not None:
        run_margin, run_json = recorded
        if margin is not None and abs(float(margin) - run_margin) > 1e-9:
            raise EdgeBoneageError(f"{keras_path}: trained with crop margin {run_margin:g} ({run_json}); "
                                   f"--margin {float(margin):g} would make the exported model crop differently")
        margin, margin_from = run_margin, "run.json"
    elif margin is None:
        raise EdgeBoneageError(f"{keras_path}: no tw3 run.json next to it records the crop margin it was trained "
                               "with; pass --margin")
    else:
        margin_from = "--margin"
    return {TFLITE_META_NAME: crop_record(margin, size, margin_from)}


def export_stage_tflite(keras_path, out_path, margin: float | None = None, *, quantization: str = "float32",
                        model=None, log=print, **export_args):
    """.keras stage model -> one of convert.export.FORMATS (default float32 .tflite) behind the parity gate, with
    the training crop recipe as metadata; returns the exporter's ExportResult. Raises EdgeBoneageError (one line,
    naming the file) when the margin is unknown or contradicts the training run, and when the gate fails (nothing
    is written then). `export_args`: further convert.export.export arguments (io, calib_n, check_n, force, ...)."""
    from edge_boneage.convert.export import export, load_keras_model

    keras_path = Path(keras_path)
    if model is None:
        model = load_keras_model(keras_path)
    extra = stage_crop_metadata(keras_path, model, margin)
    return export(keras_path, out_path, quantization=quantization, model=model, log=log, extra_metadata=extra,
                  **export_args)


__all__ = ["crop_record", "export_stage_tflite", "stage_crop_metadata"]
