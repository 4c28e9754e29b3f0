"""ResNeXt50 (32x4d) and CSP-ResNeXt50 TW3 RUS stage classifiers (seed 000: Gu, Sun, Zhang 2023).

Everything is Keras layers / keras.ops (backend-agnostic); models never touch files.

ResNeXt50 (Xie et al. 2017; torchvision ``resnext50_32x4d``)
-------------------------------------------------------------
stem: 7x7/2 conv 64 (no bias) + BN + LeakyReLU (the paper, Fig. 4 text: "BN and Leaky_Relu") + 3x3/2 maxpool;
4 stages of [3, 4, 6, 3] bottleneck blocks: 1x1 conv (width) -> grouped 3x3 conv (width, cardinality 32,
stride on the 3x3 as in torchvision "v1.5") -> 1x1 conv (out), each conv followed by BN, ReLU after the first two
and after the residual sum; projection shortcut (1x1 conv + BN) on the first block of each stage.
width = int(planes * base_width / 64) * cardinality with planes 64/128/256/512, i.e. 128/256/512/1024,
out = 4 * planes = 256/512/1024/2048; then global average pooling -> 2048 features.
Grouped convs are ``layers.Conv2D(groups=32)``; verified to export to a single builtin CONV_2D (grouped filter,
runs with and without the XNNPACK delegate) - no split/concat needed.

Parameter counts (``model.count_params()``, which like a PyTorch state dict includes BN moving mean/variance):
ResNeXt50 backbone + one 8-grade head, 224x224x3 input: 23,064,520 = 87.98 MiB float32 (paper: 88.07 MB);
trainable only 22,996,296 = torchvision's 25,028,904 minus its 1000-class FC plus an 8-class one. With the
default 1-channel input: 23,058,248. The shared 13-head model adds 196,704 (13 x 8 instead of 8 outputs).

CSP-ResNeXt50 - our reading of the paper's text (Sec. 2, Fig. 5)
-----------------------------------------------------------------
"the input feature map of each of the 4 residual stages is split evenly into two paths: one enters the residual
stage for feature extraction, the other is down-sampled by an AvgPool layer and a 1x1 conv, concatenated with the
residual stage's output and activated with a fixed-parameter Leaky-ReLU". Bookkeeping we chose (``csp=True``):

* the stage input (C_in channels) is split into channel halves x1 = [:C_in/2], x2 = [C_in/2:];
* x1 goes through the ResNeXt stage with the UNCHANGED bottleneck widths (128/256/512/1024, cardinality 32) but
  half the output channels (out/2 = 128/256/512/1024), so the grouped-conv structure of ResNeXt is kept and
  the stage's cost roughly halves (its 1x1 convs are halved; the first block's input is halved);
* x2 goes through AvgPool (pool = stride = the stage's stride: 1 for stage 1, where the pool is the identity
  and is omitted, 2 for stages 2-4) + 1x1 conv to out/2 channels + BN;
* concat([stage(x1), path(x2)]) has exactly the ResNeXt stage's out channels (256/512/1024/2048), so the
  following stage and the 2048-d head are unchanged; then LeakyReLU(0.01). No transition 1x1 after the
  concat (the text names none). The last block of the residual path leaves its residual sum un-activated;
  the LeakyReLU after the concat is that block's output activation (a ReLU followed by a LeakyReLU would only be
  a ReLU).
* Counted this way (8-grade head, 224x224x3): 12,290,504 parameters = 46.88 MiB float32 (paper: 46.28 MB =
  12.13 M; +1.3 %, inside the +-10 % target); 12,284,232 with the default 1-channel input. Alternatives we
  measured are far off: also halving the bottleneck widths gives 6,519,624; a full-output residual stage +
  out/2 pooled path + transition 1x1 conv to out gives 30,058,952 (timm's cspresnext50, a different CSP
  layout, is ~20.6 M).

TW3 stage classifiers (task "tw3_stage")
----------------------------------------
Input "image": (B, S, S, C) crop of one RUS bone, uint8-valued (0..255, histogram-equalised beforehand; the
model casts to float and scales by 1/255). C defaults to 1 (the radiograph is grey; the paper feeds the same grey
value in 3 RGB channels - pass ``channels=3`` for that; the stem then has 6,272 more weights).
Output "probs": (B, 8) softmax over grades B..I (grade g = 1-based index into "BCDEFGHI"). The ulna has only
7 grades (B..H): its 8th logit is masked (-1e9 before the softmax), so probs[:, 7] == 0 exactly for the ulna.
Bone order = ``BONES`` (the order of edge_boneage/data/tw3_rus.json).

Variants (``bone_conditioning``):
* "heads" (default, edge-friendly): ONE shared backbone, second input "bone" int32 (B, 1) in 0..12; a Dense layer
  computes 13 x 8 logits (13 heads, 213 k weights) and the bone id selects its head (one-hot, builtin ops).
* "embedding": shared backbone, "bone" -> Embedding(13, 64) concatenated with the pooled features -> Dense(8).
* per-bone: ``bone="radius"`` (name or index) builds a single-bone network with only the "image" input;
  ``build_per_bone_tw3(arch, ...)`` returns the 13 such networks (13 x the backbone size).
A "bone" id outside 0..12 cannot raise inside the graph: it selects no head and gives uniform probabilities;
callers must validate bone ids.

Knobs for fast tests: input_size, channels, depths (e.g. (1, 1, 1, 1)), cardinality, base_width, width_mult
(scales planes 64/128/256/512 and the stem).
"""

from __future__ import annotations

import inspect
from typing import Sequence

import keras
from keras import layers, ops

from keras_models.registry import register_model

BONES: tuple[str, ...] = (
    "radius", "ulna", "mc1", "mc3", "mc5", "pp1", "pp3", "pp5", "mp3", "mp5", "dp1", "dp3", "dp5",
)
N_GRADES = 8  # B..I
GRADES_PER_BONE: tuple[int, ...] = tuple(7 if b == "ulna" else 8 for b in BONES)
LEAKY_SLOPE = 0.01  # PyTorch's default negative slope ("fixed-parameter" Leaky-ReLU)
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # = PyTorch momentum 0.1
_PLANES = (64, 128, 256, 512)
_MASK_VALUE = -1e9


def _bone_index(bone) -> int:
    if isinstance(bone, str):
        if bone not in BONES:
            raise ValueError(f"unknown bone {bone!r}; expected one of {', '.join(BONES)}")
        return BONES.index(bone)
    idx = int(bone)
    if not 0 <= idx < len(BONES):
        raise ValueError(f"bone index {idx} out of range 0..{len(BONES) - 1}")
    return idx


@keras.saving.register_keras_serializable(package="edge_boneage")
class BoneGradeSoftmax(layers.Layer):
    """Masked softmax over the 8 TW3 grades B..I for one of the 13 RUS bones.

    call(logits, bone=None):
      * logits (B, 13, 8) and bone int (B, 1): select bone's row of logits (one-hot), mask, softmax;
      * logits (B, 8) and bone int (B, 1): mask by bone, softmax;
      * logits (B, 8) and no bone: the layer's fixed ``bone_index`` (per-bone networks), mask, softmax.
    Grades beyond ``grades_per_bone[bone]`` get logit -1e9, i.e. probability exactly 0.
    """

    def __init__(self, grades_per_bone: Sequence[int] = GRADES_PER_BONE, n_grades: int = N_GRADES,
                 bone_index: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.grades_per_bone = [int(g) for g in grades_per_bone]
        self.n_grades = int(n_grades)
        self.bone_index = None if bone_index is None else int(bone_index)
        if any(not 1 <= g <= self.n_grades for g in self.grades_per_bone):
            raise ValueError(f"grades_per_bone must be in 1..{self.n_grades}: {self.grades_per_bone}")
        # additive mask table (n_bones, n_grades): 0 for valid grades, -1e9 for grades the bone does not have
        self._mask_rows = [[0.0 if j < g else _MASK_VALUE for j in range(self.n_grades)]
                           for g in self.grades_per_bone]

    def call(self, logits, bone=None):
        n_bones = len(self.grades_per_bone)
        table = ops.convert_to_tensor(self._mask_rows, dtype=logits.dtype)
        if bone is None:
            if self.bone_index is None:
                raise ValueError("BoneGradeSoftmax needs a bone input or a fixed bone_index")
            return ops.softmax(logits + table[self.bone_index][None, :], axis=-1)
        onehot = ops.one_hot(ops.reshape(ops.cast(bone, "int32"), (-1,)), n_bones, dtype=logits.dtype)  # (B, 13)
        if len(logits.shape) == 3:  # per-bone heads: pick the row of the bone
            logits = ops.sum(logits * onehot[:, :, None], axis=1)
        return ops.softmax(logits + ops.matmul(onehot, table), axis=-1)

    def compute_output_shape(self, logits_shape, bone_shape=None):
        return (logits_shape[0], self.n_grades)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(grades_per_bone=list(self.grades_per_bone), n_grades=self.n_grades, bone_index=self.bone_index)
        return cfg


def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPS, momentum=BN_MOMENTUM, name=name)(x)


def _conv(x, filters, kernel, stride=1, groups=1, name=None):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", groups=groups, use_bias=False,
                         kernel_initializer="he_normal", name=name)(x)


def _act(x, activation, name):
    if activation == "leaky_relu":
        return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)(x)
    return layers.Activation(activation, name=name)(x)


def _bottleneck(x, width, out, cardinality, stride, activation, name, final_activation=True):
    in_ch = x.shape[-1]
    shortcut = x
    if stride != 1 or in_ch != out:
        shortcut = _conv(x, out, 1, stride, name=f"{name}_proj_conv")
        shortcut = _bn(shortcut, f"{name}_proj_bn")
    y = _act(_bn(_conv(x, width, 1, name=f"{name}_conv1"), f"{name}_bn1"), activation, f"{name}_act1")
    y = _conv(y, width, 3, stride, groups=cardinality, name=f"{name}_conv2")
    y = _act(_bn(y, f"{name}_bn2"), activation, f"{name}_act2")
    y = _bn(_conv(y, out, 1, name=f"{name}_conv3"), f"{name}_bn3")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return _act(y, activation, f"{name}_out") if final_activation else y


def _stage(x, n_blocks, width, out, cardinality, stride, activation, name, final_activation=True):
    for b in range(n_blocks):
        last = b == n_blocks - 1
        x = _bottleneck(x, width, out, cardinality, stride if b == 0 else 1, activation, f"{name}_b{b + 1}",
                        final_activation=final_activation or not last)
    return x


def _csp_stage(x, n_blocks, width, out, cardinality, stride, activation, name):
    """CSP stage: half the channels through the ResNeXt stage (out/2), half through AvgPool + 1x1 conv (out/2)."""
    c = x.shape[-1]
    if c % 2 or out % 2:
        raise ValueError(f"CSP stage {name}: channel counts must be even (in {c}, out {out})")
    h = c // 2
    x1 = _ChannelSlice(0, h, name=f"{name}_split_a")(x)
    x2 = _ChannelSlice(h, c, name=f"{name}_split_b")(x)
    a = _stage(x1, n_blocks, width, out // 2, cardinality, stride, activation, name, final_activation=False)
    if stride > 1:
        x2 = layers.AveragePooling2D(pool_size=stride, strides=stride, padding="same", name=f"{name}_csp_pool")(x2)
    b = _bn(_conv(x2, out // 2, 1, name=f"{name}_csp_conv"), f"{name}_csp_bn")
    y = layers.Concatenate(axis=-1, name=f"{name}_concat")([a, b])
    return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_csp_act")(y)


@keras.saving.register_keras_serializable(package="edge_boneage")
class _ChannelSlice(layers.Layer):
    """x[..., start:stop] (a named, serialisable layer instead of a Lambda, so safe_mode loading works)."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, shape):
        return (*shape[:-1], self.stop - self.start)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(start=self.start, stop=self.stop)
        return cfg


def resnext_features(x, *, depths: Sequence[int] = (3, 4, 6, 3), cardinality: int = 32, base_width: int = 4,
                     width_mult: float = 1.0, csp: bool = False, activation: str = "relu",
                     stem_activation: str = "leaky_relu", prefix: str = ""):
    """Apply the (CSP-)ResNeXt backbone to a float tensor (B, H, W, C); returns pooled features (B, 4*planes4)."""
    if len(depths) != 4:
        raise ValueError(f"depths must list 4 stages, got {list(depths)}")
    p = prefix
    stem = max(8, int(round(64 * width_mult)))
    x = _conv(x, stem, 7, 2, name=f"{p}stem_conv")
    x = _act(_bn(x, f"{p}stem_bn"), stem_activation, f"{p}stem_act")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{p}stem_pool")(x)
    for i, (n, planes) in enumerate(zip(depths, _PLANES)):
        planes = max(1, int(round(planes * width_mult)))
        width = int(planes * base_width / 64) * cardinality
        if width < cardinality:
            raise ValueError(f"stage {i + 1}: width {width} < cardinality {cardinality}; raise base_width/width_mult")
        out = 4 * planes
        stride = 1 if i == 0 else 2
        if csp:
            x = _csp_stage(x, n, width, out, cardinality, stride, activation, f"{p}stage{i + 1}")
        else:
            x = _stage(x, n, width, out, cardinality, stride, activation, f"{p}stage{i + 1}")
    return layers.GlobalAveragePooling2D(name=f"{p}gap")(x)


def build_tw3_classifier(*, csp: bool = False, input_size: int = 224, channels: int = 1,
                         bone_conditioning: str = "heads", bone=None, depths: Sequence[int] = (3, 4, 6, 3),
                         cardinality: int = 32, base_width: int = 4, width_mult: float = 1.0,
                         embed_dim: int = 64, dropout: float = 0.0, input_dtype: str = "uint8",
                         name: str | None = None) -> keras.Model:
    """(CSP-)ResNeXt TW3 stage classifier: "image" (+ "bone") -> "probs" (B, 8). See the module docstring."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if bone_conditioning not in ("heads", "embedding"):
        raise ValueError(f"bone_conditioning must be 'heads' or 'embedding', got {bone_conditioning!r}")
    arch = "csp_resnext50" if csp else "resnext50"
    image = keras.Input((input_size, input_size, channels), dtype=input_dtype, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(image)  # casts uint8 -> float32, 0..1
    feats = resnext_features(x, depths=depths, cardinality=cardinality, base_width=base_width,
                             width_mult=width_mult, csp=csp)
    if dropout:
        feats = layers.Dropout(dropout, name="dropout")(feats)
    if bone is not None:  # one network for one bone
        idx = _bone_index(bone)
        logits = layers.Dense(N_GRADES, name="head")(feats)
        probs = BoneGradeSoftmax(bone_index=idx, name="probs")(logits)
        return keras.Model({"image": image}, {"probs": probs}, name=name or f"{arch}_tw3_{BONES[idx]}")
    bone_in = keras.Input((1,), dtype="int32", name="bone")
    if bone_conditioning == "heads":
        logits = layers.Dense(len(BONES) * N_GRADES, name="heads")(feats)
        logits = layers.Reshape((len(BONES), N_GRADES), name="heads_reshape")(logits)
    else:
        emb = layers.Flatten(name="bone_embed_flat")(layers.Embedding(len(BONES), embed_dim, name="bone_embed")(bone_in))
        logits = layers.Dense(N_GRADES, name="head")(layers.Concatenate(name="fuse")([feats, emb]))
    probs = BoneGradeSoftmax(name="probs")(logits, bone_in)
    return keras.Model({"image": image, "bone": bone_in}, {"probs": probs}, name=name or f"{arch}_tw3")


def build_per_bone_tw3(arch: str = "csp_resnext50", **kwargs) -> dict[str, keras.Model]:
    """The per-bone variant: 13 separate networks (only an "image" input each), keyed by bone name."""
    if arch not in ("resnext50", "csp_resnext50"):
        raise ValueError(f"arch must be 'resnext50' or 'csp_resnext50', got {arch!r}")
    return {b: build_tw3_classifier(csp=arch == "csp_resnext50", bone=b, **kwargs) for b in BONES}


@register_model("resnext50_tw3", task="tw3_stage",
                description="ResNeXt50 32x4d TW3 RUS stage classifier (shared backbone, bone id selects 1 of 13 heads)")
def resnext50_tw3(**kwargs) -> keras.Model:
    """ResNeXt50 32x4d TW3 RUS stage classifier; kwargs as build_tw3_classifier (bone=... for one bone)."""
    return build_tw3_classifier(csp=False, **kwargs)


@register_model("csp_resnext50_tw3", task="tw3_stage",
                description="CSP-ResNeXt50 TW3 RUS stage classifier (paper's lightweight net; shared backbone, 13 heads)")
def csp_resnext50_tw3(**kwargs) -> keras.Model:
    """CSP-ResNeXt50 TW3 RUS stage classifier; kwargs as build_tw3_classifier (bone=... for one bone)."""
    return build_tw3_classifier(csp=True, **kwargs)


# the registry's wrappers take build_tw3_classifier's keywords (but csp): say so, so `edge-boneage models` lists them
_TW3_KNOBS = inspect.signature(build_tw3_classifier)
for _fn in (resnext50_tw3, csp_resnext50_tw3):
    _fn.__signature__ = _TW3_KNOBS.replace(parameters=[p for n, p in _TW3_KNOBS.parameters.items() if n != "csp"])
