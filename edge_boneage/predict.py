"""Predict bone age for one radiograph with a .tflite (no TensorFlow/Keras import) or .keras age model.

    pred = predict_file("model.tflite", "hand.png", sex="F")
    pred.age_months, pred.years_months, pred.probs

Preprocessing follows the model's own spec: the PreprocessSpec stored in the .tflite metadata when present,
else the model's input size with the default spec (letterbox, INTER_AREA, no enhancement).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

from edge_boneage.modelfile import DEFAULT_CLASS_CENTRES_MONTHS  # noqa: E402,F401  (re-exported)
from edge_boneage.vocab import sex_input  # noqa: E402


def parse_sex(value) -> float | None:
    """'M'/'F' (also male/female/true/false/1/0) -> 1.0/0.0; None stays None (edge_boneage.vocab.sex_input)."""
    try:
        return sex_input(value)
    except EdgeBoneageError:
        raise EdgeBoneageError(f"sex {value!r} is not M or F") from None


def years_months(months: float) -> tuple[int, int]:
    """Whole years and remaining whole months (rounded to the nearest month)."""
    total = int(round(float(months)))
    return total // 12, total % 12


@dataclass
class Prediction:
    image: str
    model: str
    age_months: float
    years: int
    months: int
    sex: str | None
    probs: list[float] | None
    class_centres_months: list[float] | None
    input_size: int
    latency_ms: float
    image_meta: dict = field(default_factory=dict)
    hand_box: dict | None = None  # the located hand's crop box in image pixels (models with crop="hand")
    interval_months: list[float] | None = None  # calibrated prediction interval [low, high] (edge_boneage.calibrate)
    interval_coverage: float | None = None
    sex_source: str | None = None  # "argument" | "dicom" | "both" | None (no sex given: see ages_by_sex)
    ages_by_sex: dict | None = None  # {"M": months, "F": months} when the model needs a sex and none was known
    chronological_age_months: float | None = None  # from the DICOM tags, when present
    bone_minus_chronological_months: float | None = None
    quality_ok: bool = True  # edge_boneage.quality.assess: False when the image does not look like a hand radiograph
    quality_reasons: list[str] = field(default_factory=list)  # why not (short phrases); empty when accepted
    orientation: dict | None = None  # edge_boneage.orientation estimate; "applied": turned to an upright left hand
    feature_residual: float | None = None  # edge_boneage.featuregate score (models that carry the feature check)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        if self.ages_by_sex:
            m, f = self.ages_by_sex["M"], self.ages_by_sex["F"]
            text = (f"{self.image}: sex unknown: bone age {m / 12:.2f} years if male ({m:.1f} months), "
                    f"{f / 12:.2f} years if female ({f:.1f} months)")
        else:
            src = {"argument": "given", "dicom": "from DICOM PatientSex", "both": "given, matches DICOM"}
            sex = {"M": "male", "F": "female", None: "sex not used"}[self.sex]
            if self.sex is not None and self.sex_source:
                sex += f", {src[self.sex_source]}"
            text = (f"{self.image}: bone age {self.age_months / 12:.2f} years "
                    f"({self.years} y {self.months} m, {self.age_months:.1f} months; {sex})")
        if self.interval_months:
            lo, hi = self.interval_months
            text += (f"; {100 * (self.interval_coverage or 0.9):.0f} % interval {lo / 12:.1f}-{hi / 12:.1f} years "
                     f"({lo:.0f}-{hi:.0f} months)")
        if self.orientation and self.orientation.get("applied"):
            text += f"; image seen as {self.orientation['turned_as']}: turned to an upright left hand first"
        if self.chronological_age_months is not None:
            text += f"; chronological age {self.chronological_age_months / 12:.2f} years (DICOM)"
            if self.bone_minus_chronological_months is not None:
                text += f", bone - chronological {self.bone_minus_chronological_months:+.1f} months"
        return text

    def quality_warning(self) -> str | None:
        """The line to show when the quality gate did not accept the image, else None."""
        if self.quality_ok:
            return None
        return (f"WARNING: not accepted as a hand radiograph: {', '.join(self.quality_reasons)} "
                f"(age shown for reference only)")


class AgePredictor:
    """A loaded age model for predict: `.size`, `.needs_sex`, `.spec`, `.interval`, `.class_centres`,
    `.run(image_uint8_SxS, male) -> dict of numpy outputs`; the file is opened by edge_boneage.modelfile.open_model
    (a .tflite imports no TensorFlow / Keras)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        from edge_boneage.modelfile import open_model

        self.path = Path(path)
        self.handle = open_model(self.path, threads=threads)
        self.kind, self.size, self.spec = self.handle.kind, self.handle.size, self.handle.spec
        self.metadata, self.interval = self.handle.metadata, self.handle.interval
        self.class_centres = self.handle.class_centres
        self.feature_gate = getattr(self.handle, "feature_gate", None)  # edge_boneage.featuregate record or None
        self.needs_sex = "sex" in self.handle.input_names
        self.model = self.handle.model

    def run(self, image: np.ndarray, male: float | None) -> dict[str, np.ndarray]:
        feed = {"image": image[None, :, :, None].astype(np.uint8)}
        if self.needs_sex:
            if male is None:
                raise EdgeBoneageError(f"{self.path}: this model needs the patient's sex: pass --sex M or --sex F")
            feed["sex"] = np.array([[male]], np.float32)
        return self.handle.run(feed)


def resolve_sex(sex_arg, meta, where) -> tuple[float | None, str | None]:
    """(male 1.0 / 0.0 / None, source): the --sex argument, the DICOM PatientSex, or both when they agree."""
    male = parse_sex(sex_arg)
    tag = getattr(meta, "patient_sex", None)
    tag_male = None if tag is None else (1.0 if tag == "M" else 0.0)
    if male is not None and tag_male is not None:
        if male != tag_male:
            raise EdgeBoneageError(f"{where}: --sex {sex_arg} contradicts the file's DICOM PatientSex {tag}")
        return male, "both"
    if male is not None:
        return male, "argument"
    if tag_male is not None:
        return tag_male, "dicom"
    return None, None


#: test-time augmentation of hand-crop models: the crop margin varied around the contract's (a scale jitter)
TTA_MARGINS = (0.0, 0.04, 0.08)


def orient_image(img: np.ndarray, orienter) -> tuple[np.ndarray, dict | None]:
    """(image turned to an upright left hand when the classifier is sure enough it is not one - its file's
    turn_threshold -, the estimate record); an unclear estimate leaves the image as it is (the caller flags it)."""
    if orienter is None:
        return img, None
    from edge_boneage.orientation import to_upright_left

    est = orienter.estimate(img)
    c = est.apply_cls
    rec = {**est.to_dict(), "applied": bool(c != 0)}
    return (to_upright_left(img, c) if c else img), rec


def gate_verdict(quality, orientation: dict | None, feature_reason: str | None) -> tuple[bool, list[str]]:
    """The whole gate's (ok, reasons), one rule for predict and evaluate: the image statistics
    (edge_boneage.quality.assess), an unclear orientation estimate, the model's feature check."""
    unclear = bool(orientation and not orientation["confident"])
    reasons = list(quality.reasons) + ([f"orientation unclear (p={orientation['prob']:.2f})"] if unclear else []) \
        + ([feature_reason] if feature_reason else [])
    return not reasons, reasons


def predict_image(predictor: AgePredictor, image_path: str | os.PathLike, sex=None, *, tta: bool = False,
                  orient: bool = True) -> Prediction:
    """Read, preprocess per the model's spec, run, decode. Errors name the file.

    Sex: the argument, else the DICOM PatientSex; a model with a sex input and no known sex is run for both sexes
    (``ages_by_sex``; ``age_months`` is then their mean, ``sex`` None).
    The decoded image also goes through the quality gate (edge_boneage.quality): ``quality_ok`` / ``quality_reasons``;
    the age is still computed for a flagged image (the caller decides: ``predict --strict`` exits 2).
    ``orient``: estimate the orientation (edge_boneage.orientation, the packaged classifier) and turn a rotated or
    mirrored hand upright-left first; an unclear orientation is flagged ("orientation unclear")."""
    from edge_boneage.io import read_image
    from edge_boneage.quality import assess

    parse_sex(sex)
    img, meta = read_image(image_path)
    male, source = resolve_sex(sex, meta, image_path)
    orientation = None
    if orient:
        from edge_boneage.orientation import default_orienter

        img, orientation = orient_image(img, default_orienter())
    x, box = predictor.spec.apply_with_box(img)
    # the model's hand box is reusable when it was found on the image itself (squeeze frame); a letterboxed frame's
    # coverage is not the image's, so the gate then locates the hand on the image itself (one 128x128 pass)
    quality = assess(img, meta, box=box if box is not None and predictor.spec.frame == "squeeze" else None)
    xs = [x]
    if tta and predictor.spec.crop == "hand":  # mean over crop margins TTA_MARGINS (the contract's margin included)
        import dataclasses

        xs = [dataclasses.replace(predictor.spec, crop_margin=mg).apply(img) for mg in TTA_MARGINS]

    def run(v):
        outs = [predictor.run(xi, v) for xi in xs]
        return {k: np.mean([o[k] for o in outs], axis=0) for k in outs[0]}

    both = None
    t0 = time.perf_counter()
    if predictor.needs_sex and male is None:
        runs = {k: run(v) for k, v in (("M", 1.0), ("F", 0.0))}
        both = {k: float(np.asarray(o["age"]).reshape(-1)[0]) for k, o in runs.items() if "age" in o}
        out = runs["M"]
    else:
        out = run(male)
    latency = (time.perf_counter() - t0) * 1e3
    if "age" not in out:
        raise EdgeBoneageError(f"{predictor.path}: model has no 'age' output (outputs: {sorted(out)})")
    age = float(np.asarray(out["age"]).reshape(-1)[0]) if both is None else 0.5 * (both["M"] + both["F"])
    probs = out.get("probs") if both is None else None
    y, m = years_months(age)
    chrono = getattr(meta, "chronological_age_months", None)
    from edge_boneage.calibrate import interval_for
    from edge_boneage.featuregate import judge as judge_features

    residual, feature_reason = judge_features(out, predictor.feature_gate)  # the image as the model saw it
    quality_ok, quality_reasons = gate_verdict(quality, orientation, feature_reason)

    ival = predictor.interval
    if both is None:
        interval = interval_for(age, ival)
    elif ival:  # both sexes: the union of the two intervals
        lo_hi = [interval_for(v, ival) for v in both.values()]
        interval = [min(i[0] for i in lo_hi), max(i[1] for i in lo_hi)]
    else:
        interval = None
    return Prediction(
        image=str(image_path), model=str(predictor.path), age_months=age, years=y, months=m,
        sex=None if male is None or not predictor.needs_sex else ("M" if male else "F"),
        probs=None if probs is None else [float(p) for p in np.asarray(probs).reshape(-1)],
        class_centres_months=predictor.class_centres if probs is not None else None,
        input_size=predictor.size, latency_ms=latency, image_meta=meta.to_dict(), hand_box=box,
        interval_months=interval, interval_coverage=(ival or {}).get("coverage") if interval else None,
        sex_source=source if predictor.needs_sex else None, ages_by_sex=both, chronological_age_months=chrono,
        bone_minus_chronological_months=None if chrono is None or both is not None else round(age - chrono, 2),
        quality_ok=quality_ok, quality_reasons=quality_reasons,
        feature_residual=residual,
        orientation=orientation,
    )


def predict_file(model_path, image_path, sex=None) -> Prediction:
    return predict_image(AgePredictor(model_path), image_path, sex)
