"""Keras data sources over the synthetic generator (the only synth module that imports Keras).

* ``SynthAgeDataset``: ``({"image": uint8 (B,S,S,1), "sex": float32 (B,1)}, age_months float32 (B,1))``
  batches for age models (the project's model I/O contract).
* ``SynthStageDataset``: 13 RUS crops per image for TW3 stage models:
  ``({"image": uint8 (B,c,c,1), "bone": int32 (B,1), "sex": float32 (B,1)}, grade int32 (B,1))``,
  grade 0 = stage A .. 8 = I (ulna 0..7), bone = index into ``edge_boneage.tw3.BONES``.

Batch ``i`` is generated on demand from images ``start + i*B ...`` of ``seed``: deterministic, any order, any
number of workers.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from edge_boneage import EdgeBoneageError, tw3
from edge_boneage.synth.render import bone_crop, generate, generate_one, iter_bone_crops


class SynthAgeDataset(keras.utils.PyDataset):
    def __init__(self, n: int, batch_size: int = 16, size: int = 256, seed: int = 0, age_range=(0.0, 18.0),
                 start: int = 0, **kwargs):
        super().__init__(**kwargs)
        if n < 1 or batch_size < 1:
            raise EdgeBoneageError(f"SynthAgeDataset needs n >= 1 and batch_size >= 1 (got {n}, {batch_size})")
        self.n, self.batch_size, self.size, self.seed = int(n), int(batch_size), int(size), int(seed)
        self.age_range, self.start = tuple(age_range), int(start)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __getitem__(self, idx: int):
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        first = idx * self.batch_size
        count = min(self.batch_size, self.n - first)
        b = generate(count, self.size, self.seed, self.age_range, start=self.start + first)
        x = {"image": b.images[..., None], "sex": b.male.astype(np.float32)[:, None]}
        return x, b.boneage.astype(np.float32)[:, None]


class SynthStageDataset(keras.utils.PyDataset):
    """Each batch holds the 13 RUS crops of ``images_per_batch`` radiographs (batch = 13 * images_per_batch)."""

    def __init__(self, n_images: int, images_per_batch: int = 4, size: int = 512, crop: int = 128, seed: int = 0,
                 age_range=(0.0, 18.0), start: int = 0, **kwargs):
        super().__init__(**kwargs)
        if crop > 224:
            raise EdgeBoneageError(f"crop size {crop} too large: use 224 or less")
        self.n, self.per, self.size, self.crop = int(n_images), int(images_per_batch), int(size), int(crop)
        self.seed, self.age_range, self.start = int(seed), tuple(age_range), int(start)

    def __len__(self) -> int:
        return math.ceil(self.n / self.per)

    def __getitem__(self, idx: int):
        if not 0 <= idx < len(self):
            raise IndexError(idx)
        first = idx * self.per
        crops, grades, bones, sex = [], [], [], []
        for j in range(first, min(first + self.per, self.n)):
            child, img, boxes = generate_one(self.seed, self.start + j, self.size, self.age_range)
            crops.extend(bone_crop(img, b, self.crop) for b in boxes)
            grades.extend(int(g) for g in child["grades"])
            bones.extend(range(len(tw3.BONES)))
            sex.extend([float(child["male"])] * len(tw3.BONES))
        x = {
            "image": np.stack(crops)[..., None],
            "bone": np.asarray(bones, np.int32)[:, None],
            "sex": np.asarray(sex, np.float32)[:, None],
        }
        return x, np.asarray(grades, np.int32)[:, None]


__all__ = ["SynthAgeDataset", "SynthStageDataset", "iter_bone_crops"]
