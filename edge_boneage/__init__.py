"""edge-boneage: bone-age assessment from a left-hand radiograph, from Keras training to LiteRT on a phone."""

__version__ = "0.1.0"


class EdgeBoneageError(Exception):
    """A user-facing error: its message is one clear line naming the file/row and the problem."""
