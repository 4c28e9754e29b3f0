"""Custom Keras 3 layers (keras.ops only, run under JAX and TensorFlow, convert to builtin LiteRT ops).

Every layer is checked against an independent reference (scikit-image / NumPy) in Keras and in an exported
float LiteRT model: tests/test_layers.py, table in docs/LAYERS.md.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

_PKG = "edge_boneage"

# 19 one-year bone-age classes: class k covers months [12k, 12k+12); its centre is 12k+6 months (k+0.5 years).
BONE_AGE_CLASS_CENTRES_MONTHS = [12.0 * k + 6.0 for k in range(19)]


# ----------------------------------------------------------------------------------------------------------------
# Local binary pattern


def lbp_neighbour_offsets(P: int = 8, R: float = 1.0) -> np.ndarray:
    """(P, 2) (row, col) offsets of the circular neighbours exactly as scikit-image computes them (rounded to 5 dp)."""
    k = np.arange(P, dtype=np.float64)
    rr = np.round(-R * np.sin(2 * np.pi * k / P), 5)
    cc = np.round(R * np.cos(2 * np.pi * k / P), 5)
    return np.stack([rr, cc], axis=1) + 0.0  # + 0.0 turns -0.0 into 0.0


def lbp_difference_kernels() -> np.ndarray:
    """(3, 3, 1, 8) depthwise kernels: bilinear neighbour value minus the centre pixel, for P=8, R=1."""
    kernel = np.zeros((3, 3, 1, 8), np.float64)
    for i, (dy, dx) in enumerate(lbp_neighbour_offsets(8, 1.0)):
        fy, fx = math.floor(dy), math.floor(dx)
        ty, tx = dy - fy, dx - fx
        for oy, wy in ((fy, 1.0 - ty), (fy + 1, ty)):
            for ox, wx in ((fx, 1.0 - tx), (fx + 1, tx)):
                if wy * wx != 0.0:
                    kernel[1 + oy, 1 + ox, 0, i] += wy * wx
        kernel[1, 1, 0, i] -= 1.0
    return kernel.astype(np.float32)


@keras.saving.register_keras_serializable(package=_PKG)
class LocalBinaryPattern(keras.layers.Layer):
    """LBP (P=8, R=1, bilinear, zero outside) equal to skimage.feature.local_binary_pattern(img, 8, 1, method).

    (B,H,W,1) float grey 0..255 -> (B,H,W,1) float32 codes 0..255; method "default" or "ror" (rotation invariant).
    """

    def __init__(self, method: str = "ror", tolerance: float = 2.5e-4, **kwargs):
        super().__init__(**kwargs)
        if method not in ("default", "ror"):
            raise ValueError(f"LocalBinaryPattern method must be 'default' or 'ror', got {method!r}")
        self.method = method
        self.tolerance = float(tolerance)
        self._diff_kernel = lbp_difference_kernels()
        # bit k of the code is neighbour k; rotating right by j moves bit k to position (k - j) mod 8.
        if method == "ror":
            w = np.array([[2.0 ** ((k - j) % 8) for j in range(8)] for k in range(8)], np.float32)
        else:
            w = np.array([[2.0**k] for k in range(8)], np.float32)
        self._code_kernel = w.reshape(1, 1, 8, w.shape[1])

    def build(self, input_shape):
        if input_shape[-1] != 1:
            raise ValueError(f"LocalBinaryPattern expects 1 channel (B,H,W,1), got shape {tuple(input_shape)}")

    def call(self, x):
        x = ops.cast(x, "float32")
        diff = ops.depthwise_conv(x, ops.convert_to_tensor(self._diff_kernel), strides=1, padding="same")
        bits = ops.cast(ops.greater_equal(diff, -self.tolerance), "float32")
        codes = ops.conv(bits, ops.convert_to_tensor(self._code_kernel), strides=1, padding="valid")
        return ops.min(codes, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def compute_output_spec(self, x):
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "method": self.method, "tolerance": self.tolerance}


# ----------------------------------------------------------------------------------------------------------------
# Spatial-transformer sampling


@keras.saving.register_keras_serializable(package=_PKG)
class AffineGridSampler(keras.layers.Layer):
    """Bilinear crops: [features (B,H,W,C), theta (B,N,6)] -> (B,N,h,w,C), zero outside the image.

    theta row [a11,a12,tx,a21,a22,ty]: x_in = a11*x + a12*y + tx, y_in = a21*x + a22*y + ty, with x along the width,
    coordinates normalised to [-1,1]; align_corners=False (default, like PyTorch grid_sample) puts -1/+1 on the
    outer pixel edges, align_corners=True on the outer pixel centres.
    """

    def __init__(self, output_size=(32, 32), align_corners: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.output_size = (int(output_size[0]), int(output_size[1]))
        self.align_corners = bool(align_corners)

    def _unnormalise(self, v, size):
        if self.align_corners:
            return (v + 1.0) * (0.5 * (size - 1))
        return ((v + 1.0) * size - 1.0) * 0.5

    def call(self, inputs):
        features, theta = inputs
        dtype = self.compute_dtype
        features = ops.cast(features, dtype)
        theta = ops.cast(theta, dtype)
        H, W, C = (int(d) for d in features.shape[1:])
        h, w = self.output_size
        batch = ops.shape(features)[0]

        # normalised output grid (pixel centres), shaped to broadcast against theta (B,N,1,1)
        if self.align_corners:
            ys = np.linspace(-1.0, 1.0, h) if h > 1 else np.zeros(1)
            xs = np.linspace(-1.0, 1.0, w) if w > 1 else np.zeros(1)
        else:
            ys = (2.0 * np.arange(h) + 1.0) / h - 1.0
            xs = (2.0 * np.arange(w) + 1.0) / w - 1.0
        gx = ops.convert_to_tensor(np.broadcast_to(xs[None, :], (h, w)).reshape(1, 1, h, w).astype(dtype))
        gy = ops.convert_to_tensor(np.broadcast_to(ys[:, None], (h, w)).reshape(1, 1, h, w).astype(dtype))
        t = [ops.expand_dims(ops.expand_dims(theta[:, :, k], -1), -1) for k in range(6)]  # each (B,N,1,1)
        x_in = t[0] * gx + t[1] * gy + t[2]
        y_in = t[3] * gx + t[4] * gy + t[5]
        px = self._unnormalise(x_in, W)  # input pixel coordinates, (B,N,h,w)
        py = self._unnormalise(y_in, H)

        x0 = ops.floor(px)
        y0 = ops.floor(py)
        wx1 = px - x0
        wy1 = py - y0
        wx0 = 1.0 - wx1
        wy0 = 1.0 - wy1
        x0i = ops.cast(x0, "int32")
        y0i = ops.cast(y0, "int32")
        flat = ops.reshape(features, (-1, C))  # (B*H*W, C)
        base = ops.reshape(ops.arange(batch, dtype="int32") * (H * W), (-1, 1, 1, 1))

        out = None
        for dy, wy in ((0, wy0), (1, wy1)):
            yi = y0i + dy
            y_ok = ops.logical_and(ops.greater_equal(yi, 0), ops.less(yi, H))
            yc = ops.clip(yi, 0, H - 1)
            for dx, wx in ((0, wx0), (1, wx1)):
                xi = x0i + dx
                ok = ops.logical_and(y_ok, ops.logical_and(ops.greater_equal(xi, 0), ops.less(xi, W)))
                xc = ops.clip(xi, 0, W - 1)
                weight = ops.where(ok, wy * wx, ops.zeros_like(wx))
                vals = ops.take(flat, base + yc * W + xc, axis=0)  # (B,N,h,w,C)
                term = vals * ops.expand_dims(weight, -1)
                out = term if out is None else out + term
        return out

    def compute_output_shape(self, input_shape):
        fshape, tshape = input_shape
        return (fshape[0], tshape[1]) + self.output_size + (fshape[-1],)

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size), "align_corners": self.align_corners}


# ----------------------------------------------------------------------------------------------------------------
# Squeeze-and-excitation


def _make_divisible(v: float, divisor: int) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@keras.saving.register_keras_serializable(package=_PKG)
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-excite: global average pool -> dense(C*ratio) -> relu -> dense(C) -> gate -> multiply the input.

    gate "hard_sigmoid" = relu6(x + 3) / 6 (MobileNetV3) or "sigmoid"; divisor=8 rounds units as MobileNetV3 does.
    """

    def __init__(self, ratio: float = 0.25, activation: str = "hard_sigmoid", divisor: int = 1, **kwargs):
        super().__init__(**kwargs)
        if activation not in ("hard_sigmoid", "sigmoid"):
            raise ValueError(f"SqueezeExcite activation must be 'hard_sigmoid' or 'sigmoid', got {activation!r}")
        self.ratio = float(ratio)
        self.activation = activation
        self.divisor = int(divisor)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.divisor > 1:
            units = _make_divisible(channels * self.ratio, self.divisor)
        else:
            units = max(1, int(round(channels * self.ratio)))
        self.units = units
        self.reduce_kernel = self.add_weight(shape=(channels, units), initializer="glorot_uniform", name="reduce_kernel")
        self.reduce_bias = self.add_weight(shape=(units,), initializer="zeros", name="reduce_bias")
        self.expand_kernel = self.add_weight(shape=(units, channels), initializer="glorot_uniform", name="expand_kernel")
        self.expand_bias = self.add_weight(shape=(channels,), initializer="zeros", name="expand_bias")

    def call(self, x):
        s = ops.mean(x, axis=(1, 2))
        s = ops.relu(ops.matmul(s, self.reduce_kernel) + self.reduce_bias)
        s = ops.matmul(s, self.expand_kernel) + self.expand_bias
        gate = ops.relu6(s + 3.0) / 6.0 if self.activation == "hard_sigmoid" else ops.sigmoid(s)
        return x * ops.expand_dims(ops.expand_dims(gate, 1), 1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio, "activation": self.activation, "divisor": self.divisor}


# ----------------------------------------------------------------------------------------------------------------
# Expected value of class probabilities


@keras.saving.register_keras_serializable(package=_PKG)
class SoftmaxExpectation(keras.layers.Layer):
    """Expected value of class probabilities: (B,K) -> (B,1) = sum_k p_k * centres_k.

    Default centres are the 19 one-year bone-age bin centres in MONTHS (12k+6); see docs/LAYERS.md for why not [1..19].
    """

    def __init__(self, centres=None, calibration=None, interval=None, **kwargs):
        super().__init__(**kwargs)
        self.centres = [float(c) for c in (BONE_AGE_CLASS_CENTRES_MONTHS if centres is None else centres)]
        self.calibration = list(calibration) if calibration else None  # bias corrections folded in (calibrate.py)
        self.interval = dict(interval) if interval else None  # conformal prediction interval (calibrate.py)

    def build(self, input_shape):
        if input_shape[-1] is not None and int(input_shape[-1]) != len(self.centres):
            raise ValueError(f"SoftmaxExpectation has {len(self.centres)} centres but input has {input_shape[-1]} classes")

    def call(self, probs):
        centres = ops.convert_to_tensor(np.asarray(self.centres, np.float32).reshape(1, -1), dtype=self.compute_dtype)
        return ops.sum(ops.cast(probs, self.compute_dtype) * centres, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self):
        cfg = {**super().get_config(), "centres": list(self.centres)}
        if self.calibration:
            cfg["calibration"] = list(self.calibration)
        if self.interval:
            cfg["interval"] = dict(self.interval)
        return cfg


@keras.saving.register_keras_serializable(package=_PKG)
class SplitGroupConv2D(keras.layers.Layer):
    """A grouped 2-D convolution computed as `groups` plain convolutions on channel slices, then concatenated: the
    function of ``Conv2D(groups=g)`` (same kernel layout, so its weights copy over) in ops ONNX export converts."""

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", groups: int = 1,
                 use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.groups, self.padding, self.use_bias = int(filters), int(groups), padding, bool(use_bias)
        self.kernel_size = tuple(kernel_size) if isinstance(kernel_size, (list, tuple)) else (kernel_size,) * 2
        self.strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides,) * 2

    def build(self, input_shape):
        cin = int(input_shape[-1])
        if cin % self.groups or self.filters % self.groups:
            raise ValueError(f"{self.name}: channels {cin} -> {self.filters} do not split into {self.groups} groups")
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, cin // self.groups, self.filters))
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def call(self, x):
        xs = ops.split(x, self.groups, axis=-1)
        ks = ops.split(self.kernel, self.groups, axis=-1)
        y = ops.concatenate([ops.conv(xi, ki, strides=self.strides, padding=self.padding) for xi, ki in zip(xs, ks)],
                            axis=-1)
        return y + self.bias if self.use_bias else y

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "groups": self.groups, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=_PKG)
class FeatureResidual(keras.layers.Layer):
    """(B, C) features -> (B, 1) length of the part outside a fitted k-dim principal subspace, ||v - V^T V v||,
    v = x - mean: the distance of an input to the training distribution (edge_boneage.featuregate fits it).

    ``threshold`` (a validation quantile of the residual) and ``record`` (how it was fitted) travel in the config.
    """

    def __init__(self, dim: int, k: int, threshold: float | None = None, record: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.k = int(dim), int(k)
        self.threshold = None if threshold is None else float(threshold)
        self.record = dict(record) if record else None

    def build(self, input_shape):
        if input_shape[-1] is not None and int(input_shape[-1]) != self.dim:
            raise ValueError(f"{self.name}: fitted on {self.dim} features, input has {input_shape[-1]}")
        self.mean = self.add_weight(name="mean", shape=(self.dim,), initializer="zeros", trainable=False)
        self.components = self.add_weight(name="components", shape=(self.k, self.dim), initializer="zeros",
                                          trainable=False)

    def call(self, x):
        v = ops.cast(x, "float32") - self.mean
        z = ops.matmul(v, ops.transpose(self.components))
        r = v - ops.matmul(z, self.components)
        return ops.sqrt(ops.sum(r * r, axis=-1, keepdims=True))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self):
        cfg = {**super().get_config(), "dim": self.dim, "k": self.k}
        if self.threshold is not None:
            cfg["threshold"] = self.threshold
        if self.record:
            cfg["record"] = dict(self.record)
        return cfg
