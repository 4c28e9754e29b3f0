"""Keras -> LiteRT conversion with post-training quantisation: float32, fp16, dynamic-range and full int8.

Full int8 keeps "float islands" automatically: the layers whose outputs integer arithmetic cannot reproduce
(STACK.md) stay in float32 inside an otherwise int8 graph:

* ``LocalBinaryPattern``: the LBP code is a comparison of neighbour - centre against a 2.5e-4 tolerance; an int8
  activation (scale ~1 grey level) turns ~50 % of the codes wrong.
* ``AffineGridSampler``: the gather indices are computed from the affine grid; quantised, the indices run out of
  range and the interpreter aborts the whole process (SIGABRT) in ``invoke()``.

How (TF 2.21, verified): the model is written as a SavedModel with Keras' ExportArchive (the same path
``model.export(format="litert")`` takes), converted with ``TFLiteConverter.from_saved_model`` in calibrate-only
mode (``experimental_mlir_quantizer = True``, ``_experimental_calibrate_only = True``), and the calibrated model
is quantised with ``tensorflow.lite.python.convert.mlir_quantize(..., fully_quantize=True,
denylisted_nodes=[...])`` - the call ``tf.lite.experimental.QuantizationDebugger.get_nondebug_quantized_model``
makes, plus the input/output types the debugger does not pass. The denylisted nodes are the output tensor
names of every operator whose TF name scope is one of the island layers (``<model>/<layer>_N/...``); the
quantiser then leaves those operators float and puts QUANTIZE/DEQUANTIZE at the island borders.

Dynamic-range quantisation needs no denylist: the converter only quantises weight tensors with >= 1024
elements, and the LBP kernels (72 and 64 weights) and the sampler (no weights) stay float32; the exported
model's parity check confirms it. fp16 stores weights as float16 (dequantised to float32 at load time).

Builtin LiteRT ops only, always (``TFLITE_BUILTINS`` / ``TFLITE_BUILTINS_INT8``; Keras' own default would
silently allow Flex ops).
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

QUANTIZATIONS = ("float32", "fp16", "dynamic", "int8")
IO_TYPES = ("int8", "uint8", "float32")

#: custom layer class -> why it must stay float under full-integer quantisation
FLOAT_ISLAND_TYPES = {
    "LocalBinaryPattern": "LBP codes compare neighbour - centre with a 2.5e-4 tolerance; int8 breaks ~50 % of them",
    "AffineGridSampler": "gather indices from the affine grid; int8 indices abort the interpreter (SIGABRT)",
    "SoftmaxExpectation": "age = sum_k p_k c_k with centres up to ~222 months: int8 probabilities (steps of 1/256) "
                          "move it by several months (5.2 months MAE vs Keras on a trained EfficientNet-Lite0)",
    "FeatureResidual": "the quality gate's distance: an int8 output saturates at the calibration images' largest "
                       "residual, below the threshold, so no outlier could ever be flagged",
}
#: why the layer that makes the probabilities of a SoftmaxExpectation stays float with it
_FEEDS_EXPECTATION = "the softmax layer feeding SoftmaxExpectation (its int8 output would carry the same error)"


# ---------------------------------------------------------------------------------------------------------------
# Which layers stay float


def _walk_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


def _inbound_layers(layer) -> list:
    out = []
    for node in getattr(layer, "_inbound_nodes", []) or []:
        for t in getattr(node, "input_tensors", []) or []:
            hist = getattr(t, "_keras_history", None)
            if hist is not None and getattr(hist, "operation", None) is not None:
                out.append(hist.operation)
    return out


def float_island_layers(model) -> dict[str, str]:
    """{layer name: layer class} of the layers full int8 must keep in float (see FLOAT_ISLAND_TYPES), plus the layer
    that feeds each SoftmaxExpectation (the probabilities)."""
    keep = {layer.name: type(layer).__name__ for layer in _walk_layers(model)
            if type(layer).__name__ in FLOAT_ISLAND_TYPES}
    for layer in _walk_layers(model):
        if type(layer).__name__ == "SoftmaxExpectation":
            for src in _inbound_layers(layer):
                if type(src).__name__ not in ("InputLayer",):
                    keep.setdefault(src.name, type(src).__name__)
    return keep


from edge_boneage.convert.scopes import scope_pattern as _scope_pattern  # noqa: E402  (shared with convert.aeq)


def _op_table(model_bytes: bytes) -> list[dict]:
    """[{"op": type, "outputs": [tensor names], "out_dtypes": [...], "in_dtypes": [...]}] without delegates."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=model_bytes,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    rows = []
    for op in it._get_ops_details():
        outs = [tensors[i] for i in op["outputs"] if i in tensors]
        ins = [tensors[i] for i in op["inputs"] if i >= 0 and i in tensors]
        rows.append({"op": op["op_name"], "outputs": [t["name"] for t in outs],
                     "out_dtypes": [np.dtype(t["dtype"]).name for t in outs],
                     "in_dtypes": [np.dtype(t["dtype"]).name for t in ins]})
    return rows


def island_nodes(model_bytes: bytes, layer_names) -> list[str]:
    """Output tensor names of the operators inside the given layers' name scopes (for denylisted_nodes)."""
    pat = _scope_pattern(layer_names)
    if pat is None:
        return []
    return [name for row in _op_table(model_bytes) for name in row["outputs"] if pat.search(name)]


def op_precision_summary(model_bytes: bytes, layer_names=()) -> dict:
    """How the ops of a converted model compute: {"ops": n, "int8_ops": n, "float_ops": n, "quantize": n,
    "dequantize": n, "float_op_types": {type: n}, "island_ops": n, "island_float_ops": n}.

    An op counts as int8 when any input or output is int8/uint8/int16-quantised, float when its outputs are
    float32/float16 (shape/index ops with only int32/bool outputs count as neither)."""
    pat = _scope_pattern(layer_names)
    s = Counter()
    float_types = Counter()
    for row in _op_table(model_bytes):
        s["ops"] += 1
        if row["op"] == "QUANTIZE":
            s["quantize"] += 1
            continue
        if row["op"] == "DEQUANTIZE":
            s["dequantize"] += 1
            continue
        dts = set(row["out_dtypes"]) | set(row["in_dtypes"])
        is_int8 = bool(dts & {"int8", "uint8", "int16"}) and row["op"] != "CAST"
        is_float = not is_int8 and bool(set(row["out_dtypes"]) & {"float32", "float16"})
        s["int8_ops"] += is_int8
        s["float_ops"] += is_float
        if is_float:
            float_types[row["op"]] += 1
        if pat is not None and any(pat.search(n) for n in row["outputs"]):
            s["island_ops"] += 1
            s["island_float_ops"] += not is_int8
    out = {k: int(s[k]) for k in ("ops", "int8_ops", "float_ops", "quantize", "dequantize", "island_ops",
                                   "island_float_ops")}
    out["float_op_types"] = dict(sorted(float_types.items()))
    return out


# ---------------------------------------------------------------------------------------------------------------
# XNNPACK-friendly hard-swish for int8

# Why full int8 MobileNetV3 was SLOWER than float here (measured, ai-edge-litert 2.3, 1 thread): the XNNPACK
# delegate of this interpreter takes int8 CONV/DEPTHWISE/ADD/MUL/MEAN but not an int8 HARD_SWISH. Each of the 20
# HARD_SWISH ops of MobileNetV3-Large then runs on the builtin int8 kernel and cuts the XNNPACK graph: the int8
# model had 22 delegate partitions (the float model: 1). Writing hard-swish as relu6(x + 3) * (x / 6) - an order
# the converter does not fuse back into HARD_SWISH (x * relu6(x + 3) / 6 is fused) - gives ADD(+RELU6), MUL, MUL,
# all delegated: one partition. Mathematically identical; the parity gate checks the result against the original.


def _hard_swish_layer_class():
    import keras

    class HardSwishXNN(keras.layers.Layer):
        """hard_swish(x) = relu6(x + 3) * (x / 6), in an op order the LiteRT converter keeps unfused."""

        def call(self, x):
            return keras.ops.relu6(x + 3.0) * (x * (1.0 / 6.0))

        def compute_output_shape(self, input_shape):
            return input_shape

    return HardSwishXNN


def _is_hard_swish(layer) -> bool:
    import keras

    act = getattr(layer, "activation", None)
    return (type(layer) is keras.layers.Activation and act is not None
            and getattr(act, "__name__", "") in ("hard_swish", "hard_silu"))


def decompose_hard_swish(model):
    """(clone sharing all weights, n): every Activation("hard_swish") layer replaced by HardSwishXNN."""
    import keras

    cls = _hard_swish_layer_class()
    n = 0

    def clone(layer):
        nonlocal n
        if _is_hard_swish(layer):
            n += 1
            return cls(name=f"{layer.name}_xnn")
        return layer  # the same layer object: weights shared, nothing copied

    if not any(_is_hard_swish(layer) for layer in _walk_layers(model)):
        return model, 0
    try:
        cloned = keras.models.clone_model(model, clone_function=clone)
    except Exception:  # a subclassed model cannot be cloned: keep it as it is
        return model, 0
    return cloned, n


# ---------------------------------------------------------------------------------------------------------------
# Conversion


def _input_signature(model):
    from keras.src.export.export_utils import get_input_signature

    sig = get_input_signature(model)
    return sig if isinstance(sig, (list, tuple)) else [sig]


def _write_saved_model(model, directory: str) -> None:
    """SavedModel with one "serving_default" endpoint, exactly as Keras' LiteRT exporter writes it."""
    from keras import export as keras_export

    archive = keras_export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                         input_signature=_input_signature(model))
    archive.write_out(directory, verbose=False)


def _tf_dtype(io: str):
    import tensorflow as tf

    return {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io]


def _summarise_error(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    keep = [ln for ln in lines if ln.startswith(("TF Select ops:", "Custom ops:"))] or lines[:1]
    return "; ".join(keep)[:500]


#: full-int8 recipes: the TensorFlow converter's (below) and ai-edge-quantizer's (convert.aeq.RECIPES)
TF_INT8_RECIPE = "tf_int8"


def int8_recipes() -> list[str]:
    from edge_boneage.convert.aeq import RECIPES

    return [TF_INT8_RECIPE, *RECIPES]


def convert_model(model, quantization: str = "float32", *, representative=None, io: str = "int8",
                  keep_float="auto", xnnpack_hard_swish: bool = True, recipe: str = TF_INT8_RECIPE,
                  where: str = "model") -> tuple[bytes, dict]:
    """Convert a Keras model (TensorFlow backend) to .tflite bytes; returns (bytes, info).

    quantization: float32 | fp16 | dynamic | int8. For int8: `representative` = a list of input dicts
    ({"image": uint8 (1,S,S,1), "sex": float32 (1,1)}, ...) drawn from the training distribution; `io` = type of
    the float inputs/outputs (int8, uint8 or float32; the uint8 "image" input stays uint8 in every mode);
    `keep_float` = "auto" (the model's FLOAT_ISLAND_TYPES layers), or an explicit list of layer names (empty =
    quantise everything, which can produce a model that crashes: always validate in a child process);
    `xnnpack_hard_swish` (int8 only): write hard-swish as ADD/MUL ops the XNNPACK int8 path runs (see above).
    `recipe` (int8 only): "tf_int8" (the TensorFlow converter, `io` as given) or an ai-edge-quantizer recipe of
    convert.aeq.RECIPES, applied to the float32 conversion (float I/O; the uint8 image input stays uint8).
    info: {"quantization", "io", "float_layers", "float_layer_types", "denylisted_nodes", "method", "ops"}.
    """
    import keras
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise EdgeBoneageError(f"{where}: unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if io not in IO_TYPES:
        raise EdgeBoneageError(f"{where}: unknown I/O type {io!r}; choose one of {', '.join(IO_TYPES)}")
    if keras.backend.backend() != "tensorflow":
        raise EdgeBoneageError(f"{where}: LiteRT conversion needs KERAS_BACKEND=tensorflow "
                               f"(current backend: {keras.backend.backend()})")
    islands = float_island_layers(model)
    if keep_float == "auto":
        keep = dict(islands)
    else:
        all_layers = {layer.name: type(layer).__name__ for layer in _walk_layers(model)}
        unknown = [n for n in keep_float if n not in all_layers]
        if unknown:
            raise EdgeBoneageError(f"{where}: keep_float names unknown layers {unknown}")
        keep = {n: all_layers[n] for n in keep_float}
    info = {"quantization": quantization, "io": "float32" if quantization != "int8" else io,
            "float_layers": [], "float_layer_types": {}, "denylisted_nodes": 0, "method": None}
    if quantization == "int8" and recipe != TF_INT8_RECIPE:
        from edge_boneage.convert import aeq

        if recipe not in aeq.RECIPES:
            raise EdgeBoneageError(f"{where}: unknown int8 recipe {recipe!r}; choose from {', '.join(int8_recipes())}")
        if xnnpack_hard_swish:
            model, info["hard_swish_decomposed"] = decompose_hard_swish(model)
        float_data, _ = convert_model(model, "float32", keep_float=keep_float, where=where)
        data, extra = aeq.quantize(float_data, recipe, list(representative or []), island_layers=keep, where=where)
        kept = extra.pop("float_layers")
        info.update(extra, io="float32", float_layers=sorted(kept), float_layer_types=dict(sorted(kept.items())))
        info["ops"] = op_precision_summary(data, kept)
        return data, info

    if quantization == "int8" and xnnpack_hard_swish:
        model, info["hard_swish_decomposed"] = decompose_hard_swish(model)
    with tempfile.TemporaryDirectory(prefix="edge_boneage_convert_") as tmp:
        try:
            _write_saved_model(model, tmp)
        except Exception as exc:  # e.g. a full disk: TensorFlow raises its own error types, not OSError
            raise EdgeBoneageError(f"{where}: could not write the temporary SavedModel in {tmp} "
                                   f"({_summarise_error(exc)}; is the disk full?)") from exc
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        try:
            if quantization == "float32":
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                info["method"] = "TFLiteConverter.from_saved_model, TFLITE_BUILTINS"
                data = conv.convert()
            elif quantization == "fp16":
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                float_data = conv.convert() if keep else None
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.target_spec.supported_types = [tf.float16]
                data = conv.convert()
                info["method"] = "Optimize.DEFAULT + supported_types=[float16] (fp16 weights, float32 compute)"
                if keep:
                    data, restored = restore_float32_weights(data, float_data, list(keep))
                    info["method"] += (f"; the {restored} fp16 weight tensors of the float layers restored to "
                                       "float32 (fp16-rounded LBP kernels flip ~0.2 % of the LBP codes)")
                    info["float_layers"] = sorted(keep)
                    info["float_layer_types"] = dict(sorted(keep.items()))
                    info["restored_float32_weights"] = restored
            elif quantization == "dynamic":
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                info["method"] = ("Optimize.DEFAULT without representative data (int8 weights >= 1024 elements, "
                                  "float activations; smaller weights such as the LBP kernels stay float32)")
                data = conv.convert()
                info["float_layers"] = sorted(islands)
                info["float_layer_types"] = dict(sorted(islands.items()))
            else:
                data = _full_int8(conv, representative, io, keep, info, where)
        except EdgeBoneageError:
            raise
        except Exception as exc:
            raise EdgeBoneageError(f"{where}: LiteRT conversion ({quantization}) failed: {_summarise_error(exc)}") from exc
    info["ops"] = op_precision_summary(data, keep or islands)
    return data, info


def _full_int8(conv, representative, io, keep: dict, info: dict, where: str) -> bytes:
    import tensorflow as tf
    from tensorflow.lite.python import convert as tf_convert

    if not representative:
        raise EdgeBoneageError(f"{where}: full int8 needs representative (calibration) data")
    samples = list(representative)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: iter(samples)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True  # noqa: SLF001 - the documented QuantizationDebugger path
    calibrated = conv.convert()
    nodes = island_nodes(calibrated, list(keep))
    if keep and not nodes:
        raise EdgeBoneageError(f"{where}: found no converted ops for the float layers {sorted(keep)}")
    data = tf_convert.mlir_quantize(
        calibrated, disable_per_channel=False, fully_quantize=True,
        input_data_type=_tf_dtype(io), output_data_type=_tf_dtype(io),
        denylisted_nodes=nodes or None)
    info["float_layers"] = sorted(keep)
    info["float_layer_types"] = dict(sorted(keep.items()))
    info["denylisted_nodes"] = len(nodes)
    info["method"] = ("calibrate-only TFLiteConverter (TFLITE_BUILTINS_INT8, per-channel) + "
                      "mlir_quantize(fully_quantize=True, denylisted_nodes=<ops of the float layers>) "
                      "- the QuantizationDebugger path")
    return bytes(data)


def restore_float32_weights(fp16_model: bytes, float32_model: bytes, layer_names) -> tuple[bytes, int]:
    """Put the float32 weights of the given layers back into an fp16-weight model; returns (bytes, count).

    The fp16 converter stores every float weight as float16 + a DEQUANTIZE op and has no denylist. For each
    DEQUANTIZE whose output lies in one of the layers' name scopes, the output tensor gets the float32 buffer of the
    constant named like the DEQUANTIZE input in the float32 conversion of the same SavedModel, and the DEQUANTIZE op is dropped.
    """
    import flatbuffers

    from edge_boneage.tflite_meta import _schema

    schema = _schema()
    pat = _scope_pattern(layer_names)
    ref = schema.Model.GetRootAs(float32_model, 0)
    originals = {}
    for s in range(ref.SubgraphsLength()):
        sg = ref.Subgraphs(s)
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            b = ref.Buffers(t.Buffer())
            if t.Type() == schema.TensorType.FLOAT32 and b is not None and b.DataLength():
                originals[(s, t.Name().decode())] = b.DataAsNumpy().copy()
    mt = schema.ModelT.InitFromPackedBuf(bytearray(fp16_model), 0)
    deq = {i for i, oc in enumerate(mt.operatorCodes)
           if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == schema.BuiltinOperator.DEQUANTIZE}
    restored = 0
    for s, sg in enumerate(mt.subgraphs):
        kept_ops = []
        for op in sg.operators:
            if op.opcodeIndex in deq and pat is not None:
                t_in, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
                name = t_in.name.decode() if isinstance(t_in.name, bytes) else str(t_in.name)  # the float name
                if t_in.type == schema.TensorType.FLOAT16 and pat.search(name) and (s, name) in originals:
                    buf = schema.BufferT()
                    buf.data = originals[(s, name)]
                    mt.buffers.append(buf)
                    t_out.buffer = len(mt.buffers) - 1
                    restored += 1
                    continue
            kept_ops.append(op)
        sg.operators = kept_ops
    builder = flatbuffers.Builder(len(fp16_model) * 2 + 1024)
    builder.Finish(mt.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), restored


def non_builtin_ops_bytes(model_bytes: bytes) -> list[str]:
    """Non-builtin op types of a .tflite given as bytes (see convert.litert.non_builtin_ops)."""
    from edge_boneage.convert.litert import non_builtin_ops

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "m.tflite"
        p.write_bytes(model_bytes)
        return non_builtin_ops(p)
