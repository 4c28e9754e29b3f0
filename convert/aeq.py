"""Full-integer recipes through Google's maintained LiteRT quantiser (``ai-edge-quantizer``), applied to the
float32 .tflite the project exports.

Why this and not only the TensorFlow converter's private calls (convert.quantize._full_int8): the quantiser takes
per-op recipes (a regex on the op's output tensor name + op type), no-quantise islands and int16 activations,
which is what a search over recipes needs (convert.budget). Weights are symmetric per-channel int8 (what the
LiteRT kernels support), int8 activations asymmetric per-tensor, int16 activations symmetric.

Calibration uses the GLOBAL min / max over the calibration set (``qsv_utils.min_max_update``), not the
quantiser's default moving average of per-batch ranges: on the packaged EfficientNet-Lite0 the moving average
clipped residual-stream outliers and cost +1.67 months of validation MAE (static int8, probabilities and
expectation float), global min / max +0.19 (measured 2026-12-02, protocol validation split, n=1130).

Recipes (RECIPES): every one keeps the model's float islands (LBP codes, the grid sampler: convert.quantize.
FLOAT_ISLAND_TYPES) in float32; they differ in what else stays float or gets 16-bit activations.
"""

from __future__ import annotations

from edge_boneage import EdgeBoneageError

#: recipe name -> (what it does, extra float scopes, int16-activation scopes, head int8)
#:   the model's float islands (convert.quantize.float_island_layers: LBP, grid sampler, and the softmax ->
#:   expected-age head) stay float32 unless the recipe says "head int8" (then only LBP / sampler stay float)
RECIPES = {
    "aeq_int8": ("int8 except the model's float islands (LBP, sampler, probabilities and expected age)", (), (), False),
    "aeq_int8_head": ("int8 including the probabilities and the expected age (LBP / sampler still float)", (), (),
                      True),
    "aeq_int8_float_stem": ("int8, the islands and the stem (input cast, normalisation, first conv) float32",
                            ("stem",), (), False),
    "aeq_int16x8": ("int16 activations, int8 weights, islands float (XNNPACK has no int16 kernels)", (), ("all",),
                    False),
}
#: layer types of the expected-age head among the islands (what "head int8" quantises)
HEAD_TYPES = ("SoftmaxExpectation", "Dense")
#: tensor-name scopes (the exported graph's names are "<model>_1/<layer>_1/<op>" of the Keras layers)
SCOPES = {
    "stem": r"(?:^|/|;)(?:to_float|imagenet_norm|grey_to_rgb|stem_[a-z0-9_]*?)(?:_\d+)?/",
}


def available() -> bool:
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError:
        return False
    return True


def _recipe(name: str, island_regex: str | None):
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.recipe_manager import RecipeManager

    _desc, floats, a16, _head = RECIPES[name]
    ALL = qtyping.TFLOperationName.ALL_SUPPORTED
    rm = RecipeManager()
    rm.add_static_config(".*", ALL, 16 if "all" in a16 else 8, 8)  # weights: symmetric per-channel int8
    for scope in floats:
        rm.add_quantization_config(SCOPES[scope], ALL, None, AlgorithmName.NO_QUANTIZE)
    if island_regex:
        rm.add_quantization_config(island_regex, ALL, None, AlgorithmName.NO_QUANTIZE)
    return rm


def _output_tensor_names(float_tflite: bytes, islands: dict) -> list[str]:
    """Tensor names of the model outputs written by an island layer (signature output key = the layer's name)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=bytes(float_tflite))
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    det = it.get_signature_runner().get_output_details()
    return [names[det[k]["index"]] for k in islands if k in det]


def quantize(float_tflite: bytes, recipe: str, calibration: list[dict], *, island_layers: dict | None = None,
             where: str = "model") -> tuple[bytes, dict]:
    """Quantise float32 .tflite bytes with `recipe`; `calibration` = input dicts of batch 1 (the model's names);
    `island_layers` = {layer name: layer class} of the model's float islands. Returns (bytes, info); info
    "float_layers" = the islands that stayed float."""
    if recipe not in RECIPES:
        raise EdgeBoneageError(f"{where}: unknown quantisation recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    if not available():
        raise EdgeBoneageError(f"{where}: recipe {recipe} needs ai-edge-quantizer (pip install 'edge-boneage[quant]')")
    if not calibration:
        raise EdgeBoneageError(f"{where}: recipe {recipe} needs calibration data")
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    from edge_boneage.convert.scopes import scope_pattern as _scope_pattern

    islands = dict(island_layers or {})
    if RECIPES[recipe][3]:
        islands = {n: t for n, t in islands.items() if t not in HEAD_TYPES}
    pat = _scope_pattern(list(islands))
    regex = pat.pattern if pat is not None else None
    outs = _output_tensor_names(float_tflite, islands)
    if regex and outs:
        # an island's last op (the softmax, the expectation's sum, the residual's sqrt) writes a model output, which
        # the converter renames "StatefulPartitionedCall_1:k" (no layer scope); the quantizer's scope of an op is
        # its output names each followed by ";" (so is the graph's output op's: float outputs)
        import re

        regex += "|" + "|".join(f"(?:^|;){re.escape(n)};" for n in outs)
    rm = _recipe(recipe, regex)
    try:
        qt = quantizer.Quantizer(bytearray(float_tflite))
        qt.load_quantization_recipe(rm.get_quantization_recipe())
        cal = calibrator.Calibrator(bytearray(float_tflite), num_threads=2,
                                    mode=calibrator.CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS,
                                    qsv_update_func=qsv_utils.min_max_update)
        cal.calibrate({"serving_default": list(calibration)}, qt._recipe_manager)  # noqa: SLF001 - see docstring
        data = qt.quantize(calibration_result=cal.get_model_qsvs()).quantized_model
    except EdgeBoneageError:
        raise
    except Exception as exc:
        msg = " ".join(str(exc).split())[:300]
        raise EdgeBoneageError(f"{where}: ai-edge-quantizer recipe {recipe} failed ({type(exc).__name__}: {msg})") from exc
    from importlib.metadata import version

    info = {"method": f"ai-edge-quantizer {version('ai-edge-quantizer')} recipe {recipe}: {RECIPES[recipe][0]}; "
                      "weights symmetric per-channel int8, global min/max calibration",
            "recipe": recipe, "float_scopes": list(RECIPES[recipe][1]) + (["islands"] if pat is not None else []),
            "calibration_samples": len(calibration), "float_layers": islands}
    return bytes(data), info


