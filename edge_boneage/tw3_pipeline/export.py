"""Stage model -> .tflite: float32, builtin ops only, the crop recipe stored as metadata (entry TFLITE_META_NAME,
read back by StageModel)."""

from __future__ import annotations

from pathlib import Path

from edge_boneage.tw3_pipeline.constants import BONES, DEFAULT_MARGIN, TFLITE_META_NAME


def export_stage_tflite(keras_path, out_path, margin: float = DEFAULT_MARGIN) -> Path:
    """.keras stage model -> float32 builtin-only .tflite with the crop recipe stored as metadata."""
    from edge_boneage.convert.litert import export_litert
    from edge_boneage.fileutil import write_bytes_atomic
    from edge_boneage.tflite_meta import add_metadata
    from edge_boneage.modelfile import load_model

    model = load_model(keras_path)
    out = export_litert(model, out_path)
    record = {"task": "tw3_stage", "bones": list(BONES), "grades": "B..I (8; ulna 7)",
              "crop": {"margin": float(margin), "resize": "cv2.INTER_AREA", "enhance": "cv2.equalizeHist",
                       "size": int(model.inputs[0].shape[1])}}
    write_bytes_atomic(out, add_metadata(Path(out).read_bytes(), record, TFLITE_META_NAME))
    return Path(out)


__all__ = ["export_stage_tflite"]
