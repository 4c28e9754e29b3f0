"""What a model is and the data it is checked on: its inputs (input_specs), its task (age / TW3 stage), and the
calibration and parity-check sets drawn from the training distribution (the RSNA set through datasets / io /
preprocess, or the synthetic generator). Used by convert.export (the gate), convert.budget and convert.onnx's
callers; imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

CALIB_SOURCES = ("synth", "rsna")


# ---------------------------------------------------------------------------------------------------------------
# Model description


def input_specs(model) -> dict[str, tuple[tuple, str]]:
    """{input name: (shape without batch, dtype)} of a Keras model."""
    out = {}
    for t in model.inputs:
        name = getattr(t, "name", "").split(":")[0]
        out[name] = (tuple(t.shape[1:]), str(t.dtype).replace("<dtype: '", "").replace("'>", ""))
    return out


def model_task(model) -> str:
    """"age" (inputs image[, sex], outputs age, probs) or "tw3_stage" (inputs image[, bone], output probs)."""
    names = set(input_specs(model))
    outs = set(model.output_names) if hasattr(model, "output_names") else set()
    if "image" not in names:
        raise EdgeBoneageError(f"model {model.name!r}: no input named 'image' (inputs: {sorted(names)})")
    if "age" in outs:
        return "age"
    if "bone" in names or outs == {"probs"}:
        return "tw3_stage"
    raise EdgeBoneageError(f"model {model.name!r}: outputs {sorted(outs)} are neither an age model's nor a TW3 "
                           "stage model's")


def _image_shape(model) -> tuple[int, int]:
    shape, _ = input_specs(model)["image"]
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
        raise EdgeBoneageError(f"model {model.name!r}: 'image' input must be (S, S, C), got {shape}")
    return int(shape[0]), int(shape[2])


# ---------------------------------------------------------------------------------------------------------------
# Calibration and check data (training distribution: RSNA through datasets/io/preprocess, or the synth generator)


@dataclass
class DataSet:
    inputs: dict  # {name: batched array}
    labels: dict = field(default_factory=dict)  # age: {"age_months", "male"}; stage: {"grade", "bone", "image_id"}
    source: str = ""

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def samples(self) -> list[dict]:
        """One dict per sample with batch 1 (the representative dataset format)."""
        return [{k: v[i:i + 1] for k, v in self.inputs.items()} for i in range(len(self))]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    import cv2

    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def _channels(images: np.ndarray, channels: int) -> np.ndarray:
    x = images[..., None]
    return np.repeat(x, channels, axis=-1) if channels > 1 else x


def _age_inputs(model, images, male, size_c) -> dict:
    size, ch = size_c
    names = input_specs(model)
    x = {"image": _channels(images, ch).astype(np.uint8)}
    if "sex" in names:
        x["sex"] = np.asarray(male, np.float32).reshape(-1, 1)
    return x


def age_data(model, source: str, n: int, *, seed: int, rsna_dir=None, enhance=None, offset: int = 0) -> DataSet:
    """n labelled images for an age model, preprocessed to its input size."""
    size, ch = _image_shape(model)
    if source == "synth":
        from edge_boneage.synth import generate

        b = generate(int(n), size=max(size, 64), seed=seed)
        images = _resize(b.images, size)
        if enhance:
            from edge_boneage.preprocess import enhance_image

            images = np.stack([enhance_image(im, enhance) for im in images])
        return DataSet(_age_inputs(model, images, b.male, (size, ch)),
                       {"age_months": b.boneage.astype(np.float64), "male": b.male.astype(bool)},
                       f"synth(seed={seed}, n={n})")
    if source == "rsna":
        from edge_boneage import datasets
        from edge_boneage.io import read_image
        from edge_boneage.preprocess import PreprocessSpec

        if not rsna_dir:
            raise EdgeBoneageError("--calib rsna needs --rsna-dir (a folder with labels.csv and img100/)")
        base = Path(rsna_dir)
        result = datasets.load_rsna_csv(base / "labels.csv", base / "img100", check_files=False)
        samples = list(result.samples)
        if (base / "fullres.csv").is_file():  # calibrate / check on the protocol's training split only, so that no
            from edge_boneage.train import protocol_split  # validation or test image chooses a quantisation scale

            samples = list(protocol_split(samples, base)[0])
        if len(samples) < offset + n:
            raise EdgeBoneageError(f"{base / 'labels.csv'}: only {len(samples)} samples, need {offset + n}")
        order = np.random.default_rng(seed).permutation(len(samples))[offset:offset + n]
        from edge_boneage.preprocess import spec_of_keras_model

        spec = spec_of_keras_model(model, enhance=enhance)
        picked = [samples[i] for i in order]
        images = np.stack([spec.apply(read_image(s.path)[0]) for s in picked])
        male = np.array([bool(s.male) for s in picked])
        return DataSet(_age_inputs(model, images, male, (size, ch)),
                       {"age_months": np.array([s.boneage_months for s in picked], np.float64), "male": male},
                       f"rsna({base}, n={n}, seed={seed}, offset={offset})")
    raise EdgeBoneageError(f"unknown calibration source {source!r}; choose one of {', '.join(CALIB_SOURCES)}")


def stage_data(model, source: str, n: int, *, seed: int) -> DataSet:
    """n RUS bone crops (13 per synthetic radiograph) with TW3 grades for a stage model."""
    if source != "synth":
        raise EdgeBoneageError("TW3 stage models need stage labels: only --calib synth is available for them")
    from edge_boneage.synth import iter_bone_crops

    size, ch = _image_shape(model)
    n_images = max(1, -(-int(n) // 13))
    crops, grades, bones, male, image_id = [], [], [], [], []
    for j, (c, g, b, m) in enumerate(iter_bone_crops(n_images, size=max(4 * size, 256), crop=size, seed=seed)):
        crops.append(c), grades.append(g), bones.append(b), male.append(np.full(len(b), bool(m)))
        image_id.append(np.full(len(b), j))
    crops, grades, bones = np.concatenate(crops), np.concatenate(grades), np.concatenate(bones)
    male, image_id = np.concatenate(male), np.concatenate(image_id)
    x = {"image": _channels(crops, ch).astype(np.uint8)}
    if "bone" in input_specs(model):
        x["bone"] = bones.astype(np.int32).reshape(-1, 1)
    return DataSet(x, {"grade": grades, "bone": bones, "male": male, "image_id": image_id},
                   f"synth crops(seed={seed}, images={n_images})")


def make_data(model, source: str, n: int, *, seed: int, rsna_dir=None, enhance=None, offset: int = 0) -> DataSet:
    if model_task(model) == "age":
        return age_data(model, source, n, seed=seed, rsna_dir=rsna_dir, enhance=enhance, offset=offset)
    return stage_data(model, source, n, seed=seed)
