"""TW3 RUS pipeline (seed 000, Gu, Sun, Zhang 2023): region boxes -> crops -> stage classifier -> TopN scoring
-> bone age. One module per step (below); this package re-exports their public names.

Steps
-----
1. **Boxes.** The 13 RUS regions of a radiograph come from the synthetic generator (``edge-boneage synth`` writes
   ``boxes.csv``) or from the user: Pascal VOC XML (object ``name`` = bone key), COCO JSON (category ``name`` =
   bone key, ``bbox`` = [x, y, w, h]), CSV (``image,bone,x0,y0,x1,y1``; ``id`` is accepted for ``image`` and
   ``xmin,ymin,xmax,ymax`` for the corners) or a small JSON (``{"image": ..., "boxes": {bone: [x0,y0,x1,y1]}}``).
   Bone keys: ``edge_boneage.tw3.BONES`` (case-insensitive). Every problem is one ``EdgeBoneageError`` line naming
   the file and the row / object / annotation: unknown bone, bad number, empty box, box outside the image (more
   than ``BOX_TOLERANCE_PX`` beyond an edge), duplicate bone, missing bones.
2. **Crops** (``crop_region``): a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box (parts
   outside the image are 0), resized to the model's input size with cv2.INTER_AREA (``preprocess.resize_area``,
   the project's one resize rule), then ``cv2.equalizeHist`` (the paper's histogram equalisation), uint8.
   Note: pixels outside the image are 0 and equalizeHist's LUT is (cdf(v) - cdf_min) / (N - cdf_min), so zero
   padding does not change how the other pixels are mapped when the crop's darkest value is 0 anyway.
3. **Stage model**: ``csp_resnext50_tw3`` / ``resnext50_tw3`` (keras_models/resnext.py), inputs "image" uint8
   (B,S,S,1) and "bone" int32 (B,1), output "probs" (B,8) over grades B..I (ulna: 7 grades, 8th is 0).
   Trained on synthetic crops with sparse categorical cross-entropy on ``grade - 1``. Stage A (no ossification
   centre, grade 0) has no class in the paper's 8-way model: such crops are left out of training and of the
   stage accuracy (at the paper's ages, 6-15 y, the generator draws A for 0.05 % of the bones).
4. **Scoring** (``edge_boneage.tw3``): classic (argmax stage), Top2, TopN with threshold P (formula 1); the 13
   bone scores are summed and mapped to bone age on the sex's TW3-C RUS curve (monotone PCHIP).
5. **Threshold sweep**: MAE vs P on VALIDATION images (the paper's Fig. 2/3), P = the argmin per sex (the
   paper's Table 3), then the Table-4 comparison (classic / Top2 / TopN, MAE and +-1-year accuracy by sex) on
   a separate TEST split, plus the per-bone stage accuracy.

Synthetic splits come from one seed and disjoint image-index ranges: train ``[0, n_train)``, validation
``[n_train, n_train + n_val)``, test ``[n_train + n_val, n_train + n_val + n_test)``.

Modules
-------
``constants`` (bones, output layout, defaults), ``boxes`` (ImageBoxes, VOC/COCO/CSV/JSON readers, checks),
``crops`` (crop_window, crop_region, region_crops), ``data`` (StageData, synthetic and folder crop sets),
``model`` (StageModel: .keras / .tflite), ``scoring`` (scores, threshold sweep, Table 4, stage accuracy),
``reports`` (evaluate, Markdown, sweep plot), ``prediction`` (one radiograph), ``run_config`` (StageTrainConfig,
a run's run.json read back), ``training`` (the fit loop and checkpoints), ``export`` (.tflite through the gated
exporter, the training crop recipe as metadata).
"""

from __future__ import annotations

from edge_boneage.tw3_pipeline.boxes import (BOX_TOLERANCE_PX, ImageBoxes, boxes_for_image, check_boxes_in_image,
                                             read_boxes)
from edge_boneage.tw3_pipeline.constants import (BONES, DEFAULT_AGE_RANGE, DEFAULT_MARGIN, DEFAULT_THRESHOLDS,
                                                 N_BONES, N_CLASSES, TFLITE_META_NAME)
from edge_boneage.tw3_pipeline.crops import crop_region, crop_window, region_crops
from edge_boneage.tw3_pipeline.data import StageData, folder_stage_data, synth_stage_data
from edge_boneage.tw3_pipeline.export import crop_record, export_stage_tflite, stage_crop_metadata
from edge_boneage.tw3_pipeline.model import StageModel
from edge_boneage.tw3_pipeline.prediction import format_prediction, predict_image, years_months
from edge_boneage.tw3_pipeline.reports import evaluate, plot_sweep, report_markdown
from edge_boneage.tw3_pipeline.run_config import StageTrainConfig, config_from_run, trained_margin
from edge_boneage.tw3_pipeline.scoring import (bone_probs, bone_scores, method_table, oracle_table, score_probs,
                                               stage_accuracy, threshold_sweep)
from edge_boneage.tw3_pipeline.training import train_stage_model

__all__ = ["BONES", "BOX_TOLERANCE_PX", "DEFAULT_AGE_RANGE", "DEFAULT_MARGIN", "DEFAULT_THRESHOLDS", "ImageBoxes",
           "N_BONES", "N_CLASSES", "StageData", "StageModel", "StageTrainConfig", "TFLITE_META_NAME", "bone_probs",
           "bone_scores", "boxes_for_image", "check_boxes_in_image", "config_from_run", "crop_record", "crop_region",
           "crop_window", "evaluate", "export_stage_tflite", "folder_stage_data", "format_prediction", "method_table",
           "oracle_table", "plot_sweep", "predict_image", "read_boxes", "region_crops", "report_markdown",
           "score_probs", "stage_accuracy", "stage_crop_metadata", "synth_stage_data", "threshold_sweep", "train_stage_model",
           "trained_margin", "years_months"]
