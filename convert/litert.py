"""LiteRT files: op listing, XNNPACK int8 checks, and running a converted model in a child process.

Exporting lives in convert.export (its FORMATS table, one gate for every format); this module neither imports
TensorFlow nor Keras. ``run_in_child`` is the child-process runner the gate uses for every runtime (LiteRT here,
ONNX Runtime in convert.onnx): a crash (SIGABRT in invoke) cannot take the exporter down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------------
# Op listing


def _ops_from_flatbuffer(path: str | os.PathLike) -> list[str]:
    """Op type of every operator in every subgraph, read from the flatbuffer (custom ops by their custom code)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == schema.BuiltinOperator.CUSTOM:
            codes.append((oc.CustomCode() or b"CUSTOM").decode())
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    ops = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        ops.extend(codes[sg.Operators(j).OpcodeIndex()] for j in range(sg.OperatorsLength()))
    return ops


def _ops_from_interpreter(path: str | os.PathLike) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # no default delegates, or XNNPACK's fused node would hide the real op types
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return [d["op_name"] for d in it._get_ops_details()]


def list_ops(path: str | os.PathLike) -> list[str]:
    """Op type names of a .tflite, one per operator (builtins upper case, e.g. CONV_2D; Flex/custom by name).

    Uses the interpreter's op details; falls back to parsing the flatbuffer when the interpreter cannot load the
    model (e.g. Flex ops it cannot resolve) or lacks `_get_ops_details`.
    """
    if not Path(path).is_file():
        raise EdgeBoneageError(f"{path}: no such .tflite file")
    try:
        return _ops_from_interpreter(path)
    except (ValueError, RuntimeError, AttributeError, ImportError, TypeError):
        return _ops_from_flatbuffer(path)


def non_builtin_ops(path: str | os.PathLike) -> list[str]:
    """Sorted op types that are not LiteRT builtins (Flex*/custom ops the stock interpreter cannot run)."""
    from ai_edge_litert import schema_py_generated as schema

    builtin = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")} - {"CUSTOM", "DELEGATE"}
    return sorted({op for op in list_ops(path) if op not in builtin})


def op_counts(path: str | os.PathLike) -> dict[str, int]:
    """{op type: number of operators}, sorted by name."""
    return dict(sorted(Counter(list_ops(path)).items()))


# XNNPACK's int8 ADD takes input_scale / output_scale only in [2^-10, 2^8) for each input, its int8 MUL
# a_scale * b_scale / output_scale only in [2^-16, 2^8) (the ranges its fixed-point requantisation supports). Ops
# outside them run on LiteRT's reference kernels and split the XNNPACK graph into more partitions, each boundary
# costing time: e.g. the `x + 3` of hard-swish when calibration found x in a tiny range (typical of RANDOM weights,
# whose activations vanish or explode with depth; trained networks have far fewer).
XNNPACK_INT8_RATIO = {"ADD": (2.0 ** -10, 2.0 ** 8), "MUL": (2.0 ** -16, 2.0 ** 8)}


def xnnpack_int8_ratio_ok(op: str, in_scales, out_scale: float) -> bool:
    """Whether XNNPACK's int8 `op` (ADD or MUL) accepts these per-tensor scales (see XNNPACK_INT8_RATIO)."""
    lo, hi = XNNPACK_INT8_RATIO[op]
    ratios = [s / out_scale for s in in_scales] if op == "ADD" else [in_scales[0] * in_scales[1] / out_scale]
    return all(lo <= r < hi for r in ratios)


def xnnpack_int8_rejects(path: str | os.PathLike) -> dict[str, int]:
    """{op type: number of int8 ADD/MUL ops whose scales XNNPACK refuses} for a .tflite (empty when none)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in it.get_tensor_details()}

    def scale(i):
        q = tensors[i]["quantization_parameters"]["scales"]
        return float(q[0]) if len(q) == 1 and tensors[i]["dtype"] == np.int8 else None

    out = Counter()
    for op in it._get_ops_details():
        if op["op_name"] not in XNNPACK_INT8_RATIO or len(op["inputs"]) != 2:
            continue
        scales = [scale(i) for i in op["inputs"]] + [scale(op["outputs"][0])]
        if None not in scales and not xnnpack_int8_ratio_ok(op["op_name"], scales[:2], scales[2]):
            out[op["op_name"]] += 1
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------------------------------------------
# Validation in a child process

_CHILD = r"""
import sys, numpy as np
from edge_boneage.runtime import LiteRTModel
data = np.load(sys.argv[2])
model = LiteRTModel(sys.argv[1], num_threads=int(sys.argv[4]))
out = model({k: data[k] for k in data.files})
np.savez(sys.argv[3], **out)
"""


def validate_in_subprocess(path: str | os.PathLike, inputs: dict, *, timeout: float = 300.0,
                           num_threads: int = 1) -> dict[str, np.ndarray]:
    """Load and run a .tflite in a child process (a crash, e.g. SIGABRT in invoke, cannot take the caller down).

    Returns {output name: array}; raises EdgeBoneageError with the signal / last error line on failure.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: no such .tflite file")
    return run_in_child(_CHILD, path, inputs, "LiteRT interpreter", timeout=timeout, num_threads=num_threads,
                        what="LiteRT validation")


def run_in_child(code: str, path: Path, inputs: dict, runtime: str, *, timeout: float = 300.0,
                 num_threads: int = 1, what: str = "validation") -> dict[str, np.ndarray]:
    """Run `code` (argv: model, inputs.npz, outputs.npz, threads) in a child Python; {output name: array}."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="edge_boneage_validate_") as tmp:
        in_file, out_file = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(in_file, **{k: np.asarray(v) for k, v in inputs.items()})
        cmd = [sys.executable, "-c", code, str(path), str(in_file), str(out_file), str(int(num_threads))]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise EdgeBoneageError(f"{path}: {what} timed out after {timeout:g} s") from exc
        if proc.returncode != 0:
            if proc.returncode < 0:
                try:
                    how = f"crashed with {signal.Signals(-proc.returncode).name}"
                except ValueError:
                    how = f"was killed by signal {-proc.returncode}"
            else:
                how = f"failed (exit code {proc.returncode})"
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            last = lines[-1].strip() if lines else "no error output"
            raise EdgeBoneageError(f"{path}: {runtime} {how}: {last}")
        with np.load(out_file) as out:
            return {k: out[k] for k in out.files}
