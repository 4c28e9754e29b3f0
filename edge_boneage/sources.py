"""Training/evaluation data for Keras: samples -> batches in the fixed model I/O contract.

A batch is ``({"image": uint8 (B,S,S,1), "sex": float32 (B,1)}, {"age": float32 months (B,1), "probs": (B,19)})``.

Two kinds of item source feed it:

- `SampleImages`: samples from `edge_boneage.datasets` (anything with ``path``, ``boneage_months``, ``male`` and
  ``id`` attributes or dict keys); each image is decoded with `edge_boneage.io.read_image` and letterboxed/resized
  with `edge_boneage.preprocess.preprocess` (the one preprocessing spec shared with inference), then cached in
  memory as uint8 (S,S) (100x100 RSNA at S=224 is ~50 KB an image).
- `ArrayImages`: images already at (N,S,S) uint8 in memory (the synthetic generator, tests).

`make_dataset(...)` wraps a source in a `keras.utils.PyDataset` (Keras is imported only then). Shuffling and
augmentation are deterministic: the order of epoch ``e`` is a permutation drawn from ``(seed, e)`` and the
augmentation of an image from ``(seed, e, index)``, so a resumed run sees exactly the batches an uninterrupted
run would have seen, whatever the worker order. The dataset's epoch follows fit's through
``ds.epoch_callback()``; call ``fit(..., shuffle=False)`` (the shuffling happens here).

Targets: ``probs`` is one-hot over the 19 one-year bins (bin k = [12k, 12k+12) months, ages clipped to 0..18 y),
optionally label-smoothed (``eps``: (1-eps)*onehot + eps/19), or Gaussian soft labels (``sigma_years`` > 0:
exp(-(c_k - age)^2 / 2 sigma^2) over the bin centres c_k = 12k+6 months, normalised), the same centres the
models' SoftmaxExpectation uses to turn ``probs`` into ``age``.

Augmentation (training only; never flips: it is always a LEFT hand): random rotation (+-`rot_deg`), shift
(+-`shift_frac` of S), isotropic scale (1 +- `scale_frac`) as one affine warp with zero border (the letterbox
padding is 0 too), then contrast (x `1 +- contrast`) and brightness (+- `brightness` * 255), clipped to uint8.
Optional resampling jitter (`blur` b > 0): a Gaussian blur or an unsharp mask (even odds) of sigma U(0, b) px, so the
model does not key on how sharp a film's reduction left it (antialiased vs aliased resizing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_boneage import EdgeBoneageError
from edge_boneage.vocab import AGE_CLASS_CENTRES_MONTHS, N_AGE_CLASSES, sex_input

NUM_CLASSES = N_AGE_CLASSES
CLASS_CENTRES_MONTHS = np.asarray(AGE_CLASS_CENTRES_MONTHS, np.float64)


# ----------------------------------------------------------------------------------------------- targets


def age_to_class(months) -> np.ndarray:
    """Bin index 0..18 of an age in months (bin k = [12k, 12k+12); younger -> 0, 18 y and older -> 18)."""
    return np.clip(np.floor(np.asarray(months, np.float64) / 12.0), 0, NUM_CLASSES - 1).astype(np.int64)


def class_targets(months, *, label_smoothing: float = 0.0, sigma_years: float = 0.0) -> np.ndarray:
    """(N,19) float32 class targets for ages in months (see module docstring)."""
    m = np.asarray(months, np.float64).reshape(-1)
    if sigma_years and sigma_years > 0:
        d = (CLASS_CENTRES_MONTHS[None, :] - np.clip(m, 0, 228)[:, None]) / (12.0 * sigma_years)
        t = np.exp(-0.5 * d**2)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = np.zeros((m.shape[0], NUM_CLASSES), np.float64)
        t[np.arange(m.shape[0]), age_to_class(m)] = 1.0
    if label_smoothing:
        t = (1.0 - label_smoothing) * t + label_smoothing / NUM_CLASSES
    return t.astype(np.float32)


# ----------------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augment:
    """Random affine (rotation, shift, isotropic scale) + contrast / brightness (+ gamma when gamma > 0).

    scale_range (lo, hi), when given, draws the scale log-uniformly in [lo, hi] (e.g. 0.75-1.33) instead of
    1 +- scale_frac; gamma g draws an exponent exp(U(-g, g)) applied to x/255 before contrast; blur b > 0 then
    blurs (cv2.GaussianBlur) or unsharp-masks (x + k (x - blur(x)), k ~ U(0, 1)) with sigma ~ U(0, b) px, even odds.
    """

    rot_deg: float = 10.0
    shift_frac: float = 0.05
    scale_frac: float = 0.08
    contrast: float = 0.15
    brightness: float = 0.08
    scale_range: tuple[float, float] | None = None
    gamma: float = 0.0
    blur: float = 0.0

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        s = img.shape[0]
        angle = rng.uniform(-self.rot_deg, self.rot_deg)
        if self.scale_range is not None:
            lo, hi = self.scale_range
            scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        else:
            scale = 1.0 + rng.uniform(-self.scale_frac, self.scale_frac)
        tx, ty = rng.uniform(-self.shift_frac, self.shift_frac, size=2) * s
        mat = cv2.getRotationMatrix2D(((s - 1) / 2.0, (s - 1) / 2.0), angle, scale)
        mat[:, 2] += (tx, ty)
        out = cv2.warpAffine(img, mat, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        c = 1.0 + rng.uniform(-self.contrast, self.contrast)
        b = rng.uniform(-self.brightness, self.brightness) * 255.0
        out = out.astype(np.float32)
        if self.gamma > 0:
            out = 255.0 * (out / 255.0) ** float(np.exp(rng.uniform(-self.gamma, self.gamma)))
        mean = float(out.mean())
        out = (out - mean) * c + mean + b
        if self.blur > 0:  # drawn last, so runs without it see the same random stream as before it existed
            sigma = float(rng.uniform(0.0, self.blur))
            sharpen, k = bool(rng.random() < 0.5), float(rng.uniform(0.0, 1.0))
            if sigma > 1e-3:
                soft = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                out = out + k * (out - soft) if sharpen else soft
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- item sources


def _field(sample: Any, *names: str, default=None):
    for n in names:
        if isinstance(sample, dict) and n in sample:
            return sample[n]
        if hasattr(sample, n):
            return getattr(sample, n)
    return default


def _as_male(v, where: str) -> float:
    """The model's sex input of a sample (edge_boneage.vocab.sex_input); a sample must have one."""
    m = sex_input(v, where)
    if m is None:
        raise EdgeBoneageError(f"{where}: no sex value")
    return m


class ArrayImages:
    """In-memory images (N,S,S) or (N,S,S,1) uint8 with ages (months) and sex (1 male / 0 female)."""

    def __init__(self, images, months, male, ids: Sequence[str] | None = None):
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
            raise EdgeBoneageError(f"ArrayImages: need uint8 (N,S,S) images, got {images.dtype} {images.shape}")
        self.images = images
        self.months = np.asarray(months, np.float32).reshape(-1)
        self.male = np.asarray(male, np.float32).reshape(-1)
        if not (len(self.months) == len(self.male) == len(images)):
            raise EdgeBoneageError("ArrayImages: images, ages and sex have different lengths")
        self.ids = [str(i) for i in (ids if ids is not None else range(len(images)))]
        self.size = int(images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def subset(self, idx) -> "ArrayImages":
        idx = np.asarray(idx, np.int64)
        return ArrayImages(self.images[idx], self.months[idx], self.male[idx], [self.ids[i] for i in idx])


class SampleImages:
    """Samples with image paths: decoded + preprocessed on first use, then cached as uint8 (S,S)."""

    def __init__(self, samples: Sequence[Any], size: int, *, enhance: str | None = None, cache: bool = True,
                 spec=None):
        self.samples = list(samples)
        self.size = int(size)
        self.enhance = enhance
        self.spec = spec  # an edge_boneage.preprocess.PreprocessSpec (frame, hand crop, ...); wins over `enhance`
        if spec is not None and int(spec.input_size) != self.size:
            raise EdgeBoneageError(f"SampleImages: spec input_size {spec.input_size} != size {size}")
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        months, male, ids = [], [], []
        for k, s in enumerate(self.samples):
            where = f"sample {k} ({_field(s, 'path', default='?')})"
            m = _field(s, "boneage_months", "boneage", "age_months")
            if m is None:
                raise EdgeBoneageError(f"{where}: no bone age")
            months.append(float(m))
            male.append(_as_male(_field(s, "male", "is_male"), where))
            ids.append(str(_field(s, "id", default=k)))
        self.months = np.asarray(months, np.float32)
        self.male = np.asarray(male, np.float32)
        self.ids = ids

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        from edge_boneage.io import read_image
        from edge_boneage.preprocess import preprocess

        try:
            img, _meta = read_image(_field(self.samples[i], "path"))
        except EdgeBoneageError as exc:
            where = _field(self.samples[i], "where")
            raise EdgeBoneageError(f"{where}: {exc}" if where else str(exc)) from exc
        if self.spec is not None:
            out = np.asarray(self.spec.apply(img))
        else:
            kw = {} if self.enhance is None else {"enhance": self.enhance}
            out = np.asarray(preprocess(img, self.size, **kw))
        if out.ndim == 3:
            out = out[..., 0]
        if out.shape != (self.size, self.size) or out.dtype != np.uint8:
            raise EdgeBoneageError(f"preprocess returned {out.dtype} {out.shape}, expected uint8 ({self.size},{self.size})")
        if self.cache:
            self._cache[i] = out
        return out

    def readable(self) -> tuple["SampleImages", list[str]]:
        """(the samples whose images decode and preprocess, one line per sample that does not): decodes them all."""
        good, bad = [], []
        for i in range(len(self)):
            try:
                self.image(i)
                good.append(i)
            except EdgeBoneageError as exc:
                bad.append(str(exc))
        return self.subset(good), bad

    def subset(self, idx) -> "SampleImages":
        sub = SampleImages([self.samples[i] for i in idx], self.size, enhance=self.enhance, cache=self.cache,
                           spec=self.spec)
        sub._cache = {j: self._cache[i] for j, i in enumerate(idx) if i in self._cache}
        return sub


# ----------------------------------------------------------------------------------------------- batching


def age_balance_probs(months, power: float, bin_months: float = 12.0) -> np.ndarray:
    """Per-image draw probabilities that flatten the age distribution: each image weighs (its one-year bin's
    count) ** -power (0: as the data come, 1: every bin drawn equally often); they sum to 1."""
    if not 0.0 <= power <= 1.0:
        raise EdgeBoneageError(f"age balance power must be in [0, 1], got {power}")
    bins = np.floor(np.asarray(months, np.float64) / bin_months).astype(np.int64)
    _, inv, counts = np.unique(bins, return_inverse=True, return_counts=True)
    w = counts[inv].astype(np.float64) ** -float(power)
    return w / w.sum()


class BatchMaker:
    """Backend-free batching logic (what the PyDataset delegates to; testable without Keras)."""

    def __init__(self, source, batch_size: int, *, shuffle: bool = False, augment: Augment | None = None,
                 seed: int = 0, label_smoothing: float = 0.0, sigma_years: float = 0.0, drop_remainder: bool = False,
                 inputs=None, balance: float = 0.0):
        if len(source) == 0:
            raise EdgeBoneageError("data source is empty")
        self.source = source
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.label_smoothing = label_smoothing
        self.sigma_years = sigma_years
        self.drop_remainder = drop_remainder
        self.inputs = None if inputs is None else set(inputs)  # model input names to feed (None: image + sex)
        self.balance = float(balance)
        self._draw_p = age_balance_probs(source.months, self.balance) if self.balance > 0 else None
        self.epoch = 0
        self._order_epoch = None
        self._order = None

    def __len__(self) -> int:
        n = len(self.source)
        return n // self.batch_size if self.drop_remainder else -(-n // self.batch_size)

    def order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            n = len(self.source)
            rng = np.random.default_rng([self.seed, self.epoch])
            if self._draw_p is not None and self.shuffle:  # age-balanced: n draws with replacement
                self._order = rng.choice(n, size=n, replace=True, p=self._draw_p)
            else:
                self._order = rng.permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = self.epoch
        return self._order

    def indices(self, b: int) -> np.ndarray:
        if not 0 <= b < len(self):
            raise IndexError(b)
        return self.order()[b * self.batch_size:(b + 1) * self.batch_size]

    def batch(self, b: int):
        idx = self.indices(b)
        imgs = []
        for j, i in enumerate(idx):
            img = self.source.image(int(i))
            if self.augment is not None:  # balanced draws repeat images: their position keys the augmentation too
                key = [self.seed, self.epoch, int(i), 1] + ([b * self.batch_size + j] if self._draw_p is not None else [])
                img = self.augment(img, np.random.default_rng(key))
            imgs.append(img)
        x = {"image": np.stack(imgs)[..., None].astype(np.uint8),
             "sex": self.source.male[idx].reshape(-1, 1).astype(np.float32)}
        if self.inputs is not None:
            x = {k: v for k, v in x.items() if k in self.inputs}
        months = self.source.months[idx]
        y = {"age": months.reshape(-1, 1).astype(np.float32),
             "probs": class_targets(months, label_smoothing=self.label_smoothing, sigma_years=self.sigma_years)}
        return x, y


_PYDATASET_CLASS = None


def _pydataset_class():
    global _PYDATASET_CLASS
    if _PYDATASET_CLASS is None:
        import keras

        class AgePyDataset(keras.utils.PyDataset):
            """keras.utils.PyDataset over a BatchMaker; its `epoch` is set by `epoch_callback()` during fit."""

            def __init__(self, maker: BatchMaker, **kwargs):
                super().__init__(**kwargs)
                self.maker = maker

            @property
            def epoch(self) -> int:
                return self.maker.epoch

            @epoch.setter
            def epoch(self, value: int) -> None:
                self.maker.epoch = int(value)

            def __len__(self):
                return len(self.maker)

            @property
            def num_batches(self):
                return len(self.maker)

            def __getitem__(self, b):
                return self.maker.batch(int(b))

            def epoch_callback(self):
                """A Keras callback setting this dataset's epoch to fit's epoch at each epoch start.

                (Not on_epoch_end counting: Keras' TF adapter calls on_epoch_end once more while probing the
                batch signature before the first epoch.) Pass it to fit together with ``shuffle=False``: the
                order is shuffled here, deterministically, and fit's own batch shuffle uses Python's global RNG.
                """
                ds = self

                class SyncEpoch(keras.callbacks.Callback):
                    def on_epoch_begin(self, epoch, logs=None):
                        ds.epoch = epoch

                return SyncEpoch()

        _PYDATASET_CLASS = AgePyDataset
    return _PYDATASET_CLASS


def make_dataset(source, batch_size: int, *, shuffle: bool = False, augment: Augment | bool | None = None,
                 seed: int = 0, epoch: int = 0, label_smoothing: float = 0.0, sigma_years: float = 0.0,
                 drop_remainder: bool = False, inputs=None, workers: int = 1, use_multiprocessing: bool = False,
                 balance: float = 0.0):
    """A `keras.utils.PyDataset` of batches from `source` (ArrayImages / SampleImages); see module docstring."""
    if augment is True:
        augment = Augment()
    elif augment is False:
        augment = None
    maker = BatchMaker(source, batch_size, shuffle=shuffle, augment=augment, seed=seed,
                       label_smoothing=label_smoothing, sigma_years=sigma_years, drop_remainder=drop_remainder,
                       inputs=inputs, balance=balance)
    maker.epoch = int(epoch)
    return _pydataset_class()(maker, workers=workers, use_multiprocessing=use_multiprocessing)
