"""The TW3 pipeline's shared constants: the 13 RUS bones, the stage model's output layout and the defaults every
step agrees on (crop margin, synthetic age range, TopN thresholds swept, the .tflite metadata entry's name)."""

from __future__ import annotations

from edge_boneage.vocab import N_STAGE_CLASSES, TW3_BONES

BONES = TW3_BONES
N_BONES = len(BONES)
N_CLASSES = N_STAGE_CLASSES  # model output: grades B..I
DEFAULT_MARGIN = 0.10
DEFAULT_AGE_RANGE = (6.0, 15.0)  # the paper's data set: 6-15 years
DEFAULT_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(96))  # 0.05 .. 1.00
#: the .tflite metadata entry holding the crop recipe (tw3 export writes it, StageModel reads it)
TFLITE_META_NAME = "edge_boneage_tw3"

__all__ = ["BONES", "DEFAULT_AGE_RANGE", "DEFAULT_MARGIN", "DEFAULT_THRESHOLDS", "N_BONES", "N_CLASSES",
           "TFLITE_META_NAME"]
