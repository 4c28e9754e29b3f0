"""The benchmark plan: variants, runtimes and data sources, the ModelSpec / BenchConfig a run is made of, loading
a config file (JSON / TOML) and checking it before anything runs (one-line errors naming the file).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_boneage import EdgeBoneageError

VARIANTS = ("f32", "fp16", "dynamic", "int8")
RUNTIMES = ("litert", "onnxruntime", "openvino", "keras", "tflite_runtime")
DATA_SOURCES = ("synth", "rsna", "csv")
WORK_MARK = ".edge_boneage_bench_work"  # in each run folder under OUT/work that a benchmark run made
WORK_TOOL = "edge-boneage benchmark"


@dataclass
class ModelSpec:
    model: str  # registry name, or a .keras / .tflite / .onnx path
    name: str | None = None  # label in the table (default: registry name or file stem)
    kwargs: dict = field(default_factory=dict)  # builder kwargs (registry models)
    weights: str | None = None  # .keras or .weights.h5 with trained weights (registry models); none: random weights

    @property
    def label(self) -> str:
        return self.name or (Path(self.model).stem if _is_file_spec(self.model) else self.model)


@dataclass
class BenchConfig:
    models: list[ModelSpec]
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    threads: list[int] = field(default_factory=lambda: [1])
    runtimes: list[str] = field(default_factory=lambda: ["litert", "onnxruntime", "openvino", "keras"])
    data: dict = field(default_factory=lambda: {"source": "synth", "n": 32, "seed": 12345})
    runs: int = 50
    warmup: int = 5
    calib_n: int = 32
    check_n: int = 16
    int8_recipe: str = "tf_int8"  # the int8 variant's recipe (convert.quantize.int8_recipes(), e.g. aeq_int8_float_stem)
    device: str = "local"
    ssh_opts: list[str] = field(default_factory=list)
    remote_python: str = "python3"
    benchmark_model_bin: str | None = None
    out: str = "runs/benchmark"
    compare: list[dict] = field(default_factory=list)  # [{"a": model label, "b": model label, "goal": 1.5}]
    interleave: bool = True  # re-time every local row interleaved in one child per thread count (ratios hold)
    interleave_repeats: int = 15
    interleave_block: int = 10
    export_timeout: float = 3600.0
    run_timeout: float = 900.0
    title: str = "edge-boneage benchmark"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _is_file_spec(s: str) -> bool:
    return s.endswith((".keras", ".tflite", ".onnx"))


def config_from_dict(d: dict, where: str = "config") -> BenchConfig:
    d = dict(d)
    known = {f.name for f in dataclasses.fields(BenchConfig)}
    extra = sorted(set(d) - known - {"name", "description", "_comment"})
    if extra:
        raise EdgeBoneageError(f"{where}: unknown keys {extra}; known: {sorted(known)}")
    models = []
    for i, m in enumerate(d.pop("models", None) or []):
        if isinstance(m, str):
            m = {"model": m}
        if not isinstance(m, dict) or "model" not in m:
            raise EdgeBoneageError(f"{where}: models[{i}] needs a 'model' (registry name or file)")
        bad = sorted(set(m) - {f.name for f in dataclasses.fields(ModelSpec)})
        if bad:
            raise EdgeBoneageError(f"{where}: models[{i}] has unknown keys {bad}")
        m = dict(m)
        # "~/runs/NAME/best.keras" works as a user would expect; relative paths are the caller's (children run
        # in the work folder, so every path they get is absolute)
        if _is_file_spec(str(m["model"])):
            m["model"] = os.path.abspath(os.path.expanduser(str(m["model"])))
        if m.get("weights") and m["weights"] != "auto":  # "auto" is refused by validate with its reason
            m["weights"] = os.path.abspath(os.path.expanduser(str(m["weights"])))
        models.append(ModelSpec(**m))
    if not models:
        raise EdgeBoneageError(f"{where}: no models to benchmark")
    d.pop("name", None), d.pop("description", None), d.pop("_comment", None)
    if isinstance(d.get("data"), dict):  # data paths are the caller's too (the children run in the work folder)
        d["data"] = {k: (os.path.abspath(os.path.expanduser(str(v))) if k in ("rsna_dir", "csv", "image_dir") and v
                         else v) for k, v in d["data"].items()}
    cfg = BenchConfig(models=models, **d)
    validate(cfg, where)
    return cfg


def load_config(path: str | os.PathLike) -> BenchConfig:
    path = Path(path)
    if not path.is_file():
        raise EdgeBoneageError(f"{path}: no such benchmark config")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as exc:
                raise EdgeBoneageError(f"{path}: YAML configs need PyYAML; use the .json form") from exc
            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise EdgeBoneageError(f"{path}: not valid {path.suffix[1:].upper()} ({exc})") from exc
    if not isinstance(d, dict):
        raise EdgeBoneageError(f"{path}: the config must be a mapping")
    return config_from_dict(d, str(path))


def validate(cfg: BenchConfig, where: str = "config") -> None:
    from edge_boneage.bench.devices import check_device

    check_device(cfg.device)  # a bad or hostile --device fails now, not after the export phase
    bad = [v for v in cfg.variants if v not in VARIANTS]
    if bad:
        raise EdgeBoneageError(f"{where}: unknown variants {bad}; choose from {', '.join(VARIANTS)}")
    bad = [r for r in cfg.runtimes if r not in RUNTIMES]
    if bad:
        raise EdgeBoneageError(f"{where}: unknown runtimes {bad}; choose from {', '.join(RUNTIMES)}")
    if not cfg.threads or any(int(t) < 1 for t in cfg.threads):
        raise EdgeBoneageError(f"{where}: threads must be integers >= 1, got {cfg.threads}")
    from edge_boneage.convert.quantize import int8_recipes

    if cfg.int8_recipe not in int8_recipes():
        raise EdgeBoneageError(f"{where}: int8_recipe {cfg.int8_recipe!r}; choose from {', '.join(int8_recipes())}")
    if cfg.data.get("source", "synth") not in DATA_SOURCES:
        raise EdgeBoneageError(f"{where}: data source {cfg.data.get('source')!r}; choose from {', '.join(DATA_SOURCES)}")
    if int(cfg.runs) < 1 or int(cfg.warmup) < 0:
        raise EdgeBoneageError(f"{where}: need runs >= 1 and warmup >= 0")
    labels = [m.label for m in cfg.models]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise EdgeBoneageError(f"{where}: model labels {dup} appear twice; give each a distinct 'name'")
    for m in cfg.models:  # registry names are checked by the exporter child (the parent never imports Keras)
        if _is_file_spec(m.model) and not Path(m.model).is_file():
            raise EdgeBoneageError(f"{where}: {m.model}: no such model file")
        if m.weights == "auto":
            raise EdgeBoneageError(f"{where}: model {m.label}: weights 'auto' (newest file under runs/) is no longer "
                                   f"read; name the .keras / .weights.h5 file, or leave weights out for random weights")
        if m.weights and not Path(m.weights).is_file():
            raise EdgeBoneageError(f"{where}: model {m.label}: weights {m.weights}: no such file")


def child_env() -> dict:
    """The environment every benchmark child process runs with."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env
