"""MobileNetV3-Large bone-age regressors: RIL-MobileNetV3-Large (Guo, Wang, Su 2022) and a plain baseline.

Both take the project's fixed I/O contract: input "image" uint8 (B,S,S,1) grey 0..255 (cast to float inside),
optional input "sex" float32 (B,1) (1 male, 0 female); outputs "age" (B,1) in months and "probs" (B,19) over
one-year classes 0..18 y. Both end with the same head (sex embedding -> FC -> 19-way softmax -> expectation
over bin centres 12k+6 months) so that accuracy and latency comparisons isolate the RIL additions:

    RIL:   image -> LBP (none|default|ror) -> [-1,1] -> MobileNetV3-L --GAP--> localisation FC -> N affine windows
                                                        \\-- mid-level map (stride 8) -> AffineGridSampler -> N crops
           N crops -> shared (or separate) recognition net with squeeze-excite -> N x D -> FC -> softmax -> E[age]
    plain: image -> [-1,1] -> MobileNetV3-L -> GAP -> FC -> softmax -> E[age]

Design for latency (LiteRT float, 1 thread): the crops come from the backbone's stride-8 feature map rather than
from the image, and the recognition net is two small inverted-residual blocks run once on the N crops folded into
the batch. At 224, alpha 1, N=9, D=512: 258 vs 214 MMACs, 3.39 M vs 3.01 M parameters, LiteRT float 1-thread
latency ~1.33-1.36x the plain model on a 2-vCPU x86 box (benchmarks/bench_ril_latency.py; goal <= 1.5x).
Builders never touch files; the backbone is built with ``weights=None``.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from keras_models.layers import AffineGridSampler, LocalBinaryPattern, SoftmaxExpectation, SqueezeExcite
from keras_models.registry import register_model

NUM_CLASSES = 19
#: Class k covers months [12k, 12k+12); its centre is 12k+6 (see SoftmaxExpectation / docs/LAYERS.md).
AGE_CENTRES_MONTHS = [12.0 * k + 6.0 for k in range(NUM_CLASSES)]

# Backbone layers whose outputs the RIL head may crop from (names fixed by keras.applications.MobileNetV3Large).
_CROP_TAPS = {"stride8": "expanded_conv_5_add", "stride16": "expanded_conv_11_add"}
_LBP_METHODS = ("none", "default", "ror")


# --------------------------------------------------------------------------------------------------------------
# Small structural layers (serialisable, keras.ops only)
# --------------------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="edge_boneage")
class CastToFloat(layers.Layer):
    """Casts the raw (uint8-valued) image to float32, values unchanged (0..255).

    `preprocess` (a dict, edge_boneage.preprocess.PreprocessSpec.to_dict()) is the model's input contract, carried
    in this layer's config so that a lone .keras file says how its input must be made; it does not change `call`.
    """

    def __init__(self, preprocess=None, **kwargs):
        super().__init__(**kwargs)
        self.preprocess = dict(preprocess) if preprocess else None

    def call(self, x):
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "preprocess": self.preprocess}


@keras.saving.register_keras_serializable(package="edge_boneage")
class RegionAffine(layers.Layer):
    """Raw (B, N*4) offsets -> bounded scale+translation affine rows (B, N, 6) for AffineGridSampler.

    Per region: s = min_scale + (max_scale - min_scale) * sigmoid(r_s) (half-size in normalised coords) and
    t = (1 - s) * tanh(r_t), so the window [t - s, t + s] always lies inside [-1, 1]. Zero offsets give the
    initial layout: a ceil(sqrt(N))-column grid of windows of half-size ``init_scale`` (3x3 for N=9).
    """

    def __init__(self, num_regions=9, init_scale=0.4, min_scale=0.1, max_scale=0.9, spread=0.8, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < min_scale < init_scale < max_scale <= 1.0:
            raise ValueError(f"need 0 < min_scale < init_scale < max_scale <= 1, got "
                             f"{min_scale}, {init_scale}, {max_scale}")
        if not 0.0 <= spread < 1.0:
            raise ValueError(f"spread must be in [0, 1), got {spread}")
        self.num_regions = int(num_regions)
        self.init_scale = float(init_scale)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.spread = float(spread)

    def initial_raw(self):
        """(N, 4) raw values [r_sx, r_sy, r_tx, r_ty] of the initial grid layout (plain Python floats)."""
        n = self.num_regions
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        p = (self.init_scale - self.min_scale) / (self.max_scale - self.min_scale)
        r_s = math.log(p / (1.0 - p))

        def centres(g):  # tanh(r_t) values spread evenly over [-spread, spread]
            return [0.0] if g == 1 else [self.spread * (2.0 * j / (g - 1) - 1.0) for j in range(g)]

        out = []
        for i in range(n):
            r, c = divmod(i, cols)
            out.append([r_s, r_s, math.atanh(centres(cols)[c]), math.atanh(centres(rows)[r])])
        return out

    def call(self, raw):
        raw = ops.reshape(raw, (-1, self.num_regions, 4)) + ops.convert_to_tensor(self.initial_raw(), raw.dtype)
        s = self.min_scale + (self.max_scale - self.min_scale) * ops.sigmoid(raw[..., 0:2])
        t = (1.0 - s) * ops.tanh(raw[..., 2:4])
        sx, sy, tx, ty = s[..., 0:1], s[..., 1:2], t[..., 0:1], t[..., 1:2]
        zero = ops.zeros_like(sx)
        return ops.concatenate([sx, zero, tx, zero, sy, ty], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_regions, 6)

    def get_config(self):
        return {**super().get_config(), "num_regions": self.num_regions, "init_scale": self.init_scale,
                "min_scale": self.min_scale, "max_scale": self.max_scale, "spread": self.spread}


@keras.saving.register_keras_serializable(package="edge_boneage")
class FoldRegions(layers.Layer):
    """(B, N, h, w, C) -> (B*N, h, w, C): run one shared recognition net on all crops in a single batch."""

    def call(self, x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, s):
        return (None if s[0] is None or s[1] is None else s[0] * s[1],) + tuple(s[2:])


@keras.saving.register_keras_serializable(package="edge_boneage")
class UnfoldRegions(layers.Layer):
    """(B*N, D) -> (B, N*D): concatenate the N region descriptors of each image (region-major)."""

    def __init__(self, num_regions, **kwargs):
        super().__init__(**kwargs)
        self.num_regions = int(num_regions)

    def call(self, x):
        return ops.reshape(x, (-1, self.num_regions * x.shape[-1]))

    def compute_output_shape(self, s):
        return (None if s[0] is None else s[0] // self.num_regions, self.num_regions * s[-1])

    def get_config(self):
        return {**super().get_config(), "num_regions": self.num_regions}


@keras.saving.register_keras_serializable(package="edge_boneage")
class SelectRegion(layers.Layer):
    """(B, N, h, w, C) -> (B, h, w, C): crop number ``index`` (for separate, unshared recognition nets)."""

    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, x):
        return x[:, self.index]

    def compute_output_shape(self, s):
        return (s[0],) + tuple(s[2:])

    def get_config(self):
        return {**super().get_config(), "index": self.index}


# --------------------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------------------
def _depth(v, divisor=8):
    """Channel rounding used by MobileNetV3 (multiple of 8, never more than 10 % below v)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _check_common(input_size, alpha, backbone_channels):
    if int(input_size) < 32:
        raise ValueError(f"input_size must be >= 32 (MobileNetV3 minimum), got {input_size}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if backbone_channels not in (1, 3):
        raise ValueError(f"backbone_channels must be 1 or 3, got {backbone_channels}")


def _inputs(input_size, use_sex):
    image = keras.Input((input_size, input_size, 1), dtype="uint8", name="image")
    sex = keras.Input((1,), dtype="float32", name="sex") if use_sex else None
    return image, sex


def _to_backbone_range(x, backbone_channels):
    """float 0..255 (B,S,S,1) -> [-1, 1] with 1 or 3 (repeated grey) channels, as MobileNetV3 expects."""
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_unit")(x)
    if backbone_channels == 3:
        x = layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])
    return x


def _backbone(x, alpha, minimalistic):
    """MobileNetV3-Large (no top, random init) on the KerasTensor x; returns the applications model."""
    return keras.applications.MobileNetV3Large(
        input_tensor=x, alpha=alpha, minimalistic=minimalistic, include_top=False, weights=None,
        include_preprocessing=False, pooling=None)


def _head(features, sex, *, sex_units, dropout):
    """Shared head: [features, sex embedding] -> dropout -> FC -> 19-way softmax ("probs") -> expectation ("age")."""
    if sex is not None:
        emb = layers.Dense(sex_units, activation="relu", name="sex_embedding")(sex)
        features = layers.Concatenate(name="features_and_sex")([features, emb])
    if dropout:
        features = layers.Dropout(dropout, name="head_dropout")(features)
    probs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probs")(features)
    age = SoftmaxExpectation(centres=AGE_CENTRES_MONTHS, dtype="float32", name="age")(probs)
    return {"age": age, "probs": probs}


def _model_inputs(image, sex):
    return {"image": image, "sex": sex} if sex is not None else {"image": image}


def _conv_bn(x, filters, kernel, stride, act, name):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=f"{name}_bn")(x)
    return layers.Activation(act, name=f"{name}_act")(x) if act else x


def _recognition_net(x, *, width, depth_out, name):
    """Light recognition net for one crop batch: 2 inverted-residual blocks with squeeze-excite -> 1x1 -> GAP.

    (b, h, w, C) -> (b, depth_out). The second block has stride 2 so the 1x1 expansion to D runs on few pixels.
    """
    c_in = x.shape[-1]
    # block 1: expand 4x, depthwise 3x3, SE, project to `width` (residual when shapes agree)
    y = _conv_bn(x, _depth(4 * c_in), 1, 1, "hard_swish", f"{name}_b1_expand")
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_b1_dw")(y)
    y = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=f"{name}_b1_dw_bn")(y)
    y = layers.Activation("hard_swish", name=f"{name}_b1_dw_act")(y)
    y = SqueezeExcite(ratio=0.25, divisor=8, name=f"{name}_b1_se")(y)
    y = _conv_bn(y, width, 1, 1, None, f"{name}_b1_project")
    if c_in == width:
        y = layers.Add(name=f"{name}_b1_add")([x, y])
    # block 2: expand 3x, depthwise 3x3 stride 2, SE, project
    z = _conv_bn(y, _depth(3 * width), 1, 1, "hard_swish", f"{name}_b2_expand")
    z = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name=f"{name}_b2_dw")(z)
    z = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=f"{name}_b2_dw_bn")(z)
    z = layers.Activation("hard_swish", name=f"{name}_b2_dw_act")(z)
    z = SqueezeExcite(ratio=0.25, divisor=8, name=f"{name}_b2_se")(z)
    z = _conv_bn(z, _depth(1.5 * width), 1, 1, None, f"{name}_b2_project")
    # descriptor: 1x1 to D, hard-swish, global average pool
    z = _conv_bn(z, depth_out, 1, 1, "hard_swish", f"{name}_embed")
    return layers.GlobalAveragePooling2D(name=f"{name}_gap")(z)


# --------------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------------
@register_model("mobilenetv3_large", task="age",
                description="Plain MobileNetV3-Large -> GAP -> (sex) -> FC -> 19-way softmax -> expected age")
def build_mobilenetv3_large(input_size=224, *, use_sex=True, alpha=1.0, minimalistic=False, backbone_channels=3,
                            sex_units=16, dropout=0.2, preprocess=None, name="mobilenetv3_large"):
    """Plain MobileNetV3-Large age regressor (baseline for RIL-MobileNetV3-Large, same inputs/head/outputs).

    Knobs: input_size (>= 32), alpha (width; any > 0 with random init), minimalistic, backbone_channels (1, or 3 =
    grey repeated), use_sex, sex_units (sex embedding width), dropout before the final FC; preprocess: the input
    contract dict carried in the model (CastToFloat).
    """
    _check_common(input_size, alpha, backbone_channels)
    image, sex = _inputs(input_size, use_sex)
    x = CastToFloat(preprocess=preprocess, name="to_float")(image)
    x = _to_backbone_range(x, backbone_channels)
    backbone = _backbone(x, alpha, minimalistic)
    feat = layers.GlobalAveragePooling2D(name="global_pool")(backbone.output)
    outputs = _head(feat, sex, sex_units=sex_units, dropout=dropout)
    return keras.Model(_model_inputs(image, sex), outputs, name=name)


@register_model("ril_mobilenetv3_large", task="age",
                description="RIL-MobileNetV3-Large: rotation-invariant LBP + spatial-transformer regions + SE "
                            "recognition nets -> 19-way softmax -> expected age (Guo et al. 2022)")
def build_ril_mobilenetv3_large(input_size=224, *, use_sex=True, lbp="ror", alpha=1.0, minimalistic=False,
                                backbone_channels=3, num_regions=9, region_dim=512, crop_size=8,
                                crop_from="stride8", shared_recognition=True, recognition_width=None,
                                loc_units=128, init_scale=0.4, min_scale=0.1, max_scale=0.9,
                                sex_units=16, dropout=0.2, preprocess=None, name="ril_mobilenetv3_large"):
    """RIL-MobileNetV3-Large age regressor.

    lbp: "ror" (rotation-invariant, the paper's choice), "default" (plain 8-neighbour LBP) or "none" (raw grey),
    computed inside the graph so the exported model takes the raw image. num_regions N (9) and region_dim D (512)
    as in the paper; crop_size = side of each sampled crop; crop_from "stride8" (default, input/8) or "stride16";
    shared_recognition=True runs one recognition net on all N crops (batched), False builds N separate nets;
    recognition_width defaults to 2x the tapped map's channels. init/min/max_scale bound the window half-sizes
    (normalised coords; windows always stay inside the map).
    """
    _check_common(input_size, alpha, backbone_channels)
    if lbp not in _LBP_METHODS:
        raise ValueError(f"lbp must be one of {_LBP_METHODS}, got {lbp!r}")
    if crop_from not in _CROP_TAPS:
        raise ValueError(f"crop_from must be one of {tuple(_CROP_TAPS)}, got {crop_from!r}")
    if int(num_regions) < 1 or int(region_dim) < 1 or int(crop_size) < 2:
        raise ValueError(f"need num_regions >= 1, region_dim >= 1, crop_size >= 2; got "
                         f"{num_regions}, {region_dim}, {crop_size}")

    image, sex = _inputs(input_size, use_sex)
    x = CastToFloat(preprocess=preprocess, name="to_float")(image)
    if lbp != "none":
        x = LocalBinaryPattern(method=lbp, name=f"lbp_{lbp}")(x)  # codes 0..255, same range as grey
    x = _to_backbone_range(x, backbone_channels)
    backbone = _backbone(x, alpha, minimalistic)
    fmap = backbone.get_layer(_CROP_TAPS[crop_from]).output

    # Spatial-transformer localisation from the pooled top features ("after the pooling layer" in the paper).
    pooled = layers.GlobalAveragePooling2D(name="global_pool")(backbone.output)
    loc = layers.Dense(loc_units, activation="relu", name="loc_hidden")(pooled)
    raw = layers.Dense(4 * num_regions, kernel_initializer="zeros", bias_initializer="zeros", name="loc_offsets")(loc)
    theta = RegionAffine(num_regions, init_scale=init_scale, min_scale=min_scale, max_scale=max_scale,
                         name="region_theta")(raw)
    crops = AffineGridSampler(output_size=(crop_size, crop_size), name="region_sampler")([fmap, theta])

    width = recognition_width or _depth(2 * fmap.shape[-1])
    if shared_recognition:
        folded = FoldRegions(name="fold_regions")(crops)
        desc = _recognition_net(folded, width=width, depth_out=region_dim, name="recog")
        regions = UnfoldRegions(num_regions, name="region_features")(desc)
    else:
        descs = [_recognition_net(SelectRegion(i, name=f"region_{i}")(crops), width=width, depth_out=region_dim,
                                  name=f"recog{i}") for i in range(num_regions)]
        regions = descs[0] if num_regions == 1 else layers.Concatenate(name="region_features")(descs)
    outputs = _head(regions, sex, sex_units=sex_units, dropout=dropout)
    return keras.Model(_model_inputs(image, sex), outputs, name=name)
