"""Synthetic LEFT-hand radiographs with TW3 RUS stages consistent with their bone-age labels.

The project's embedded default data: no download needed to train, test or demo. NumPy + OpenCV only
(the Keras data sources live in ``edge_boneage.synth.dataset``, which is the only module importing Keras).
See docs/SYNTH.md.
"""

from edge_boneage.synth.maturity import sample_grades
from edge_boneage.synth.render import (
    SynthBatch,
    bone_crop,
    consistency,
    generate,
    generate_one,
    iter_bone_crops,
    render,
    sample_child,
    write_dataset,
)

__all__ = ["SynthBatch", "bone_crop", "consistency", "generate", "generate_one", "iter_bone_crops", "render",
           "sample_child", "sample_grades", "write_dataset"]
