"""The project's vocabulary, one definition each (plain Python, no imports beyond the package's error type):

- the 19 one-year bone-age classes and their centres in months (``AGE_CLASS_CENTRES_MONTHS``: class k covers months
  [12k, 12k + 12), centre 12k + 6). ``keras_models`` (the layer below, which may not import this package) keeps its
  own copy in ``keras_models.layers.BONE_AGE_CLASS_CENTRES_MONTHS``; tests/test_vocab.py checks that they agree.
- sex: ``parse_sex`` (True male / False female / None absent) and its two spellings, ``sex_input`` (the model's
  1.0 / 0.0 input) and ``sex_name`` ("male" / "female", the TW3 tables' keys)
- TW3: ``TW3_BONES`` (the 13 RUS bones, in the order of the tables and of a stage model's bone index) and
  ``STAGE_LETTERS`` (grades B..I: a stage model's 8 classes; stage A has no class)
- export variants: ``EXPORT_VARIANTS`` (LiteRT quantisation names) and the benchmark's short names
  (``VARIANT_SHORT``: f32 for float32)
"""

from __future__ import annotations

from edge_boneage import EdgeBoneageError

N_AGE_CLASSES = 19
#: centre of one-year class k in months: 12k + 6 (the expectation head's default centres)
AGE_CLASS_CENTRES_MONTHS: tuple[float, ...] = tuple(12.0 * k + 6.0 for k in range(N_AGE_CLASSES))

MALE_WORDS = frozenset({"m", "male", "true", "t", "1", "boy"})
FEMALE_WORDS = frozenset({"f", "female", "false", "0", "girl"})
SEXES = ("male", "female")


def parse_sex(value) -> bool | None:
    """True (male) / False (female) from 'M'/'F'/'male'/'female'/'True'/'False'/'1'/'0' (any case, also 'boy' /
    'girl'), or from a bool / number (true = male); None or an empty string -> None (not given). Anything else:
    ValueError naming the value."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v == "":
            return None
        if v in MALE_WORDS:
            return True
        if v in FEMALE_WORDS:
            return False
        raise ValueError(f"sex {value!r} is not one of M/F/male/female/True/False/1/0")
    if value == 1 or value == 0:  # bools, 0/1 numbers (numpy's included); NaN and other numbers are not a sex
        return bool(value)
    raise ValueError(f"sex {value!r} is not one of M/F/male/female/True/False/1/0")


def sex_input(value, where: str | None = None) -> float | None:
    """The model's sex input: 1.0 male, 0.0 female, None when not given; one-line EdgeBoneageError otherwise."""
    try:
        m = parse_sex(value)
    except ValueError as exc:
        raise EdgeBoneageError(f"{where}: {exc}" if where else str(exc)) from None
    return None if m is None else float(m)


def sex_name(value, where: str | None = None) -> str:
    """'male' or 'female' (the TW3 tables' keys); a missing or unknown value is a one-line EdgeBoneageError."""
    try:
        m = parse_sex(value)
    except ValueError as exc:
        raise EdgeBoneageError(f"{where + ': ' if where else ''}{exc}: use 'male' or 'female' (or True/False)") from None
    if m is None:
        raise EdgeBoneageError(f"{where + ': ' if where else ''}no sex given: use 'male' or 'female'")
    return "male" if m else "female"


#: the 13 TW3 RUS bones (edge_boneage/data/tw3_rus.json lists them in this order; edge_boneage.tw3 checks it)
TW3_BONES: tuple[str, ...] = ("radius", "ulna", "mc1", "mc3", "mc5", "pp1", "pp3", "pp5", "mp3", "mp5", "dp1",
                              "dp3", "dp5")
#: TW3 grades a stage model classifies (class i = grade i + 1); grade A (0) is "not yet visible" and has no class
STAGE_LETTERS = "BCDEFGHI"
N_STAGE_CLASSES = len(STAGE_LETTERS)

#: LiteRT export variants (edge_boneage.convert's quantisation names) and the benchmark's short names for them
EXPORT_VARIANTS = ("float32", "fp16", "dynamic", "int8")
VARIANT_SHORT = {"float32": "f32", "fp16": "fp16", "dynamic": "dynamic", "int8": "int8"}

__all__ = ["AGE_CLASS_CENTRES_MONTHS", "EXPORT_VARIANTS", "FEMALE_WORDS", "MALE_WORDS", "N_AGE_CLASSES",
           "N_STAGE_CLASSES", "SEXES", "STAGE_LETTERS", "TW3_BONES", "VARIANT_SHORT", "parse_sex", "sex_input",
           "sex_name"]
