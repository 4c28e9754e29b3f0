"""The vocabulary module is the one definition of the age bins, sex spellings, TW3 bones / grades and export
variants; the other modules (and keras_models' own copy, which may not import edge_boneage) agree with it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_boneage import EdgeBoneageError, datasets, predict, sources, tw3, vocab
from edge_boneage.modelfile import DEFAULT_CLASS_CENTRES_MONTHS
from edge_boneage.tw3_pipeline import constants


def test_age_bins_are_defined_once_and_agree():
    from keras_models.layers import BONE_AGE_CLASS_CENTRES_MONTHS
    from keras_models.mobilenet import NUM_CLASSES

    assert vocab.N_AGE_CLASSES == 19 == NUM_CLASSES == sources.NUM_CLASSES
    assert list(vocab.AGE_CLASS_CENTRES_MONTHS) == BONE_AGE_CLASS_CENTRES_MONTHS == DEFAULT_CLASS_CENTRES_MONTHS
    assert vocab.AGE_CLASS_CENTRES_MONTHS[0] == 6.0 and vocab.AGE_CLASS_CENTRES_MONTHS[-1] == 12 * 18 + 6
    assert np.array_equal(sources.CLASS_CENTRES_MONTHS, vocab.AGE_CLASS_CENTRES_MONTHS)


@pytest.mark.parametrize("value, male", [("M", True), ("male", True), (" TRUE ", True), ("t", True), ("1", True),
                                         ("boy", True), (True, True), (1, True), (np.float32(1.0), True),
                                         ("F", False), ("Female", False), ("false", False), ("0", False),
                                         ("girl", False), (False, False), (0.0, False)])
def test_every_sex_spelling_means_the_same_in_every_reader(value, male):
    assert vocab.parse_sex(value) is male and datasets.parse_sex(value) is male
    assert vocab.sex_input(value) == predict.parse_sex(value) == sources._as_male(value, "x") == float(male)
    assert vocab.sex_name(value) == tw3.normalise_sex(value) == ("male" if male else "female")


@pytest.mark.parametrize("value", ["x", "mf", 2, math.nan])
def test_unknown_sex_is_refused_everywhere(value):
    with pytest.raises(ValueError, match="is not one of"):
        vocab.parse_sex(value)
    for read in (vocab.sex_input, predict.parse_sex, tw3.normalise_sex, lambda v: sources._as_male(v, "row 3")):
        with pytest.raises(EdgeBoneageError):
            read(value)


def test_missing_sex():
    assert vocab.parse_sex(None) is None and vocab.parse_sex(" ") is None and vocab.sex_input(None) is None
    with pytest.raises(EdgeBoneageError, match="no sex"):
        vocab.sex_name(None)
    with pytest.raises(EdgeBoneageError, match="row 3: no sex value"):
        sources._as_male(None, "row 3")


def test_tw3_names_come_from_the_vocabulary():
    assert tw3.BONES == vocab.TW3_BONES == constants.BONES and len(vocab.TW3_BONES) == 13
    assert constants.N_CLASSES == vocab.N_STAGE_CLASSES == len(tw3.STAGE_LETTERS) == 8 == max(tw3.N_GRADES.values())
    assert tw3.stage_letter(0) == "A" and tw3.stage_letter(8) == "I"


def test_export_variants():
    from edge_boneage.convert.quantize import QUANTIZATIONS

    assert vocab.EXPORT_VARIANTS == QUANTIZATIONS and set(vocab.VARIANT_SHORT) == set(vocab.EXPORT_VARIANTS)
