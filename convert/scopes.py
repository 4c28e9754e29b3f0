"""Which converted ops belong to which Keras layers: the converter names tensors "<model>_1/<layer>_1/<op>"."""

from __future__ import annotations

import re


def scope_pattern(layer_names) -> re.Pattern | None:
    """A regex matching the tensor names of ops inside the given layers' name scopes (None for no layers)."""
    if not layer_names:
        return None
    alts = "|".join(re.escape(n) for n in sorted(layer_names, key=len, reverse=True))
    # converter tensor names look like "<model>_1/<layer>_1/GatherV2_2;..." (name scope + Keras' call suffix)
    return re.compile(rf"(?:^|/|;)(?:{alts})(?:_\d+)?/")
