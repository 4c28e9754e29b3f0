"""A small orientation classifier: which of the 8 rotations / mirrorings of an upright LEFT hand an image shows.

Classes (edge_boneage.orientation.CLASSES): c = k + 4 m, the image = rot90(U, k) of the upright left hand U, mirrored
left-right first when m = 1 (a right hand). Input: the whole decoded radiograph squeezed to S x S uint8 grey (no hand
crop: the crop box is computed on an upright frame). Plain convolutions + ReLU + global pooling (int8-friendly).
"""

from __future__ import annotations

import keras
from keras import layers

from keras_models.mobilenet import CastToFloat
from keras_models.registry import register_model

NUM_ORIENTATIONS = 8


@register_model("orientation_net", task="orientation",
                description="8-way rotation / mirror classifier of a hand radiograph (squeezed to 64 px)")
def orientation_net(input_size: int = 64, width: int = 16, preprocess=None) -> keras.Model:
    """Five stride-2 3x3 conv + BN + ReLU stages (width, 2w, 4w, 8w, 8w), global average pooling, 8-way softmax."""
    image = keras.Input((input_size, input_size, 1), name="image", dtype="uint8")
    x = CastToFloat(preprocess=preprocess, name="to_float")(image)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    for i, f in enumerate((width, 2 * width, 4 * width, 8 * width, 8 * width)):
        x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}b")(x)
        x = layers.BatchNormalization(name=f"bn{i}b")(x)
        x = layers.ReLU(name=f"relu{i}b")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    out = layers.Dense(NUM_ORIENTATIONS, activation="softmax", name="orient")(x)
    return keras.Model(image, {"orient": out}, name="orientation_net")
