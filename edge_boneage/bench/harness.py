"""The benchmark plan and its execution: models x variants x runtimes x threads -> one row each.

Phases (the parent imports neither TensorFlow nor Keras; everything that could crash runs in a child process):

1. export: for each Keras model (registry name built with kwargs and optional weights, or a .keras file) ONE
   exporter child (``python -m edge_boneage.bench.worker export``) writes the f32/fp16/dynamic/int8 .tflite files
   through convert.export's parity gate (force=True: a model that fails the gate is still written and its row is
   marked "validation failed") and the .onnx (Keras' own ONNX export, when tf2onnx is installed). If the child dies,
   the variant it was on becomes an "export failed" row and a fresh child continues with the rest.
2. data: the labelled evaluation set is packed once per (task, input size, channels) into an .npz of preprocessed
   uint8 images + labels (the same file a device gets).
3. run: every (variant, runtime, threads) runs in its own child process: LiteRT rows through
   edge_boneage/device_runner.py (locally or on the device), ONNX Runtime and Keras rows through the worker.
   A crash is a row ("validation failed", the signal named), never a dead harness.

Intermediate files go to a fresh folder OUT/work/run_<time>_<id>/ that the run makes and marks as its own
(WORK_MARK); a later run removes earlier marked run folders and nothing else, so a file in OUT or OUT/work that
this tool did not make is never deleted, and no run reuses another run's files.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError, __version__

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


# --------------------------------------------------------------------------------------------------------------
# rows


def new_row(model: str, variant: str, runtime: str, threads, device: str, status: str, error=None, file=None) -> dict:
    return {"model": model, "variant": variant, "runtime": runtime, "threads": threads, "device": device,
            "status": status, "size_mb": (os.path.getsize(file) / 2**20) if file and Path(file).is_file() else None,
            "gmacs": None, "mae_months": None, "acc_1y": None, "stage_acc": None, "init_ms": None, "first_ms": None,
            "warmup_ms": None, "mean_ms": None, "p50_ms": None, "p90_ms": None, "peak_mem_mb": None,
            "gmacs_per_s": None, "error": error, "file": str(file) if file else None}


def fill_row(row: dict, res: dict, macs: int | None) -> dict:
    """Copy a runner/worker result into a row (ms, MB, GMAC/s); a failed result makes it 'validation failed'."""
    row["result"] = res
    if not res.get("ok"):
        row["status"] = "validation failed"
        row["error"] = (f"{row['error']}; " if row.get("error") else "") + str(res.get("error"))
        row["crashed"] = bool(res.get("crashed"))
        return row
    t = res.get("timing_us") or {}
    ms = {k: (t.get(k) / 1000.0 if t.get(k) is not None else None) for k in
          ("init", "first", "warmup_avg", "avg", "p50", "p90")}
    row.update({"init_ms": ms["init"], "first_ms": ms["first"], "warmup_ms": ms["warmup_avg"], "mean_ms": ms["avg"],
                "p50_ms": ms["p50"], "p90_ms": ms["p90"]})
    mem = res.get("memory") or {}
    if mem.get("peak_rss_kb") or mem.get("maxrss_kb"):
        row["peak_mem_mb"] = (mem.get("peak_rss_kb") or mem["maxrss_kb"]) / 1024.0
    elif mem.get("peak_mb") is not None:
        row["peak_mem_mb"] = mem["peak_mb"]
    if res.get("delegate"):
        row["delegate"] = res["delegate"]
    acc = res.get("accuracy") or {}
    row["mae_months"], row["acc_1y"], row["stage_acc"] = acc.get("mae_months"), acc.get("acc_1y"), acc.get("stage_acc")
    graph = (res.get("macs") or {}).get("macs") if isinstance(res.get("macs"), dict) else None
    macs = graph or macs
    if macs:
        row["gmacs"] = macs / 1e9
        if ms["avg"]:
            row["gmacs_per_s"] = macs / (ms["avg"] / 1000.0) / 1e9
    if res.get("outputs_finite") is False and row["status"] == "ok":
        row["status"] = "validation failed"
        row["error"] = "non-finite outputs"
    return row


# --------------------------------------------------------------------------------------------------------------
# evaluation data


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _age_arrays(data: dict, size: int, spec: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Images (preprocessed by the model's contract `spec` when given), ages, sexes, description."""
    from edge_boneage import train as T

    src_kind = data.get("source", "synth")
    n = int(data.get("n", 32))
    contract = {}
    if spec:
        contract = {"frame": spec.get("frame", "letterbox"), "crop": spec.get("crop"),
                    "enhance": spec.get("enhance") or data.get("enhance")}  # (crop margin: the default, as trained)
    cfg = T.TrainConfig(data=src_kind, synth_n=n, rsna_dir=data.get("rsna_dir"), labels_csv=data.get("csv"),
                        image_dir=data.get("image_dir"), limit=n, size=size,
                        **({"enhance": data.get("enhance")} if not spec else {}), **contract,
                        seed=int(data.get("seed", 12345)))
    split = data.get("split")
    if split:  # the fixed protocol's test (or validation) split: images that chose nothing
        if src_kind != "rsna" or split not in ("test", "val"):
            raise EdgeBoneageError(f"data split {split!r}: use 'test' or 'val' with source rsna (the fixed protocol)")
        cfg.limit = None
        full = T.load_source(cfg)
        _tr, va_s, te_s = T.protocol_split(full.samples, Path(data["rsna_dir"]))  # the protocol (seed 0), as trained
        pos = {s.id: i for i, s in enumerate(full.samples)}
        picked = [pos[s.id] for s in (te_s if split == "test" else va_s)][: n or None]
        src = full.subset(np.array(picked, np.int64))
    else:
        src = T.load_source(cfg)
    images = np.stack([src.image(i) for i in range(len(src))]).astype(np.uint8)
    desc = f"{src_kind}(n={len(src)}, size={size}" + (f", seed={cfg.seed})" if src_kind == "synth" else
                                                       f", {data.get('rsna_dir') or data.get('csv')}"
                                                       + (f", protocol {split} split)" if split else ")"))
    return images, np.asarray(src.months, np.float32), np.asarray(src.male, np.float32), desc


def _stage_arrays(data: dict, size: int):
    from edge_boneage.synth import iter_bone_crops

    if data.get("source", "synth") != "synth":
        raise EdgeBoneageError("TW3 stage models need stage labels: only synthetic data has them (data.source synth)")
    n_images = max(1, -(-int(data.get("n", 32)) // 13))
    seed = int(data.get("seed", 12345))
    crops, grades, bones = [], [], []
    for c, g, b, _m in iter_bone_crops(n_images, size=max(4 * size, 256), crop=size, seed=seed):
        crops.append(c), grades.append(g), bones.append(b)
    return (np.concatenate(crops).astype(np.uint8), np.concatenate(grades).astype(np.int64),
            np.concatenate(bones).astype(np.int32), f"synth bone crops(images={n_images}, crop={size}, seed={seed})")


def pack_eval_set(task: str, size: int, channels: int, data: dict, path: Path, spec: dict | None = None) -> dict:
    """Write the evaluation .npz for one (task, size, channels[, input contract]); returns {"path", "n", "desc"}."""
    from edge_boneage.fileutil import atomic_path

    if task == "age":
        images, months, male, desc = _age_arrays(data, size, spec)
        arrays = {"image": images[..., None], "sex": male.reshape(-1, 1).astype(np.float32),
                  "label_age_months": months.astype(np.float64)}
    elif task == "tw3_stage":
        crops, grades, bones, desc = _stage_arrays(data, size)
        arrays = {"image": crops[..., None], "bone": bones.reshape(-1, 1), "label_grade": grades}
    else:
        raise EdgeBoneageError(f"unknown model task {task!r}")
    if channels > 1:
        arrays["image"] = np.repeat(arrays["image"], channels, axis=-1)
    arrays["task"] = np.array(task)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return {"path": str(path), "n": int(arrays["image"].shape[0]), "desc": desc}


# --------------------------------------------------------------------------------------------------------------
# export phase


def _signal_text(rc: int) -> str:
    from edge_boneage.bench.devices import describe_exit

    return describe_exit(rc)[0]


def export_model(spec: ModelSpec, cfg: BenchConfig, work: Path, want_onnx: bool, log=print) -> dict:
    """Run the exporter child(ren) for one Keras model; returns {"info", "variants": {v: result}, "onnx": result}."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.label)
    weights = spec.weights
    job = {"source": spec.model, "kwargs": spec.kwargs, "weights": weights,
           "workdir": str(work), "stem": stem,
           "variants": list(cfg.variants), "onnx": want_onnx, "int8_recipe": cfg.int8_recipe,
           "calib": "rsna" if cfg.data.get("source") == "rsna"
           else "synth", "rsna_dir": cfg.data.get("rsna_dir"), "calib_n": cfg.calib_n, "check_n": cfg.check_n}
    job_path = work / f"{stem}.job.json"
    job_path.write_text(json.dumps(job, indent=1))
    crash_notes: dict[str, str] = {}
    for attempt in range(len(cfg.variants) + 2):
        t0 = time.time()
        try:
            proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.worker", "export", str(job_path)],
                                  capture_output=True, text=True, timeout=cfg.export_timeout, env=_child_env(),
                                  cwd=str(work))
            rc, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, f"timed out after {cfg.export_timeout:g} s"
        log(f"  exporter for {spec.label}: {'ok' if rc == 0 else ('exit ' + str(rc))} in {time.time() - t0:.0f} s")
        info_path = work / f"{stem}.info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {"error": f"exporter {rc}: "
                                                                                       f"{(err or '').strip()[-300:]}"}
        if "error" in info:
            break
        pending = [v for v in cfg.variants if not (work / f"{stem}_{v}.export.json").is_file()]
        onnx_pending = want_onnx and not (work / f"{stem}.onnx.export.json").is_file()
        if rc == 0 or not (pending or onnx_pending):
            break
        culprit = next((v for v in pending if (work / f"{stem}_{v}.started").is_file()), None)
        how = _signal_text(rc) if rc is not None else err
        if culprit is None and onnx_pending and (work / f"{stem}_onnx.started").is_file():
            (work / f"{stem}.onnx.export.json").write_text(json.dumps(
                {"status": "export failed", "error": f"exporter {how} during the ONNX export"}))
        elif culprit is not None:
            crash_notes[culprit] = how
            (work / f"{stem}_{culprit}.export.json").write_text(json.dumps(
                {"status": "export failed", "error": f"exporter {how} during the {culprit} export", "crashed": True}))
        else:
            break
    variants = {}
    for v in cfg.variants:
        p = work / f"{stem}_{v}.export.json"
        variants[v] = json.loads(p.read_text()) if p.is_file() else \
            {"status": "export failed", "error": (info.get("error") if "error" in info else "exporter did not finish")}
        f = work / f"{stem}_{v}.tflite"
        variants[v]["file"] = str(f) if f.is_file() and variants[v]["status"] != "export failed" else None
    onnx = None
    if want_onnx:
        p = work / f"{stem}.onnx.export.json"
        onnx = json.loads(p.read_text()) if p.is_file() else {"status": "export failed", "error": info.get(
            "error", "exporter did not finish")}
        f = work / f"{stem}.onnx"
        onnx["file"] = str(f) if f.is_file() and onnx["status"] == "ok" else None
    return {"info": info, "variants": variants, "onnx": onnx, "stem": stem, "weights": info.get("weights_note")}


def _tflite_info(path: str) -> dict:
    """Task and inputs of a .tflite from its interpreter (+ edge_boneage metadata when present)."""
    from edge_boneage import device_runner as R

    Interpreter, _ = R.interpreter_class()
    ins, outs = R.io_details(Interpreter(model_path=path))
    inputs = {k: {"shape": [int(s) for s in d.get("shape_signature", d["shape"])][1:],
                  "dtype": np.dtype(d["dtype"]).name} for k, d in ins.items()}
    task = "age" if "age" in outs else "tw3_stage"
    variant = "file"
    try:
        from edge_boneage.tflite_meta import read_metadata

        meta = read_metadata(path) or {}
        mode = (meta.get("quantization") or {}).get("mode")
        variant = {"float32": "f32"}.get(mode, mode or "file")
        task = (meta.get("model") or {}).get("task") or task
    except Exception:  # noqa: BLE001 - metadata is optional
        pass
    return {"task": task, "inputs": inputs, "variant": variant}


def spec_file(m: dict) -> str | None:
    return m["spec"].model if _is_file_spec(m["spec"].model) and Path(m["spec"].model).is_file() else None


def _onnx_info(path: str) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = {i.name: {"shape": list(i.shape[1:]), "dtype": i.type} for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    return {"task": "age" if "age" in outs else "tw3_stage", "inputs": inputs}


# --------------------------------------------------------------------------------------------------------------
# run phase


def run_worker(runtime: str, model: str, eval_npz: str, threads: int, cfg: BenchConfig, work: Path) -> dict:
    from edge_boneage.bench.devices import run_child

    tag = f"{Path(model).stem}_{runtime}_t{threads}"
    run_cfg = {"runtime": runtime, "model": model, "eval": eval_npz, "threads": threads, "runs": cfg.runs,
               "warmup": cfg.warmup, "out": str(work / f"{tag}.result.json")}
    (work / f"{tag}.run.json").write_text(json.dumps(run_cfg))
    out = Path(run_cfg["out"])
    out.unlink(missing_ok=True)
    return run_child([sys.executable, "-m", "edge_boneage.bench.worker", "run", str(work / f"{tag}.run.json")], out,
                     timeout=cfg.run_timeout, env=_child_env())


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _is_our_work(d: Path) -> bool:
    """Whether `d` is a run folder a benchmark run made (a real folder holding a WORK_MARK that names this tool)."""
    mark = d / WORK_MARK
    if d.is_symlink() or not d.is_dir() or mark.is_symlink() or not mark.is_file():
        return False
    try:
        return json.loads(mark.read_text()).get("tool") == WORK_TOOL
    except (OSError, ValueError, AttributeError):
        return False


def new_work_dir(out: Path, log=print) -> Path:
    """Remove the run folders earlier runs made under OUT/work (only those: any other file stays) and make a fresh,
    marked one for this run: every number comes from this run, never from a stale file."""
    root = out / "work"
    if (root.exists() or root.is_symlink()) and not root.is_dir():
        raise EdgeBoneageError(f"{root}: exists and is not a folder; move it away or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    for d in sorted(root.iterdir()):
        if _is_our_work(d):
            shutil.rmtree(d)
            log(f"removed the earlier run's work folder {d}")
    work = root / f"run_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
    work.mkdir()
    (work / WORK_MARK).write_text(json.dumps({"tool": WORK_TOOL, "version": __version__, "pid": os.getpid()}))
    return work


def run_benchmark(cfg: BenchConfig, log=print) -> dict:
    """Export, run and report; returns the report dict (rows, ratios, environment, files)."""
    from edge_boneage.bench import report as Rep
    from edge_boneage.bench.devices import LocalBackend, make_backend

    validate(cfg)
    out = Path(cfg.out).expanduser().resolve()  # absolute: children run in the work folder, not the caller's
    work = new_work_dir(out, log)
    t_start = time.time()
    load_before = _load_average()
    device = cfg.device or "local"
    remote = device != "local"
    runtimes = list(cfg.runtimes)
    if remote and any(r != "litert" for r in runtimes):  # noqa: SIM102
        log(f"device {device}: only LiteRT rows run on the device; {[r for r in runtimes if r != 'litert']} skipped")
        runtimes = ["litert"]
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    have_tflite_rt = importlib.util.find_spec("tflite_runtime") is not None
    have_ov = importlib.util.find_spec("openvino") is not None

    # 1. export
    models = []
    for spec in cfg.models:
        entry = {"spec": spec, "label": spec.label}
        if spec.model.endswith((".tflite", ".onnx")):  # given files: nothing to export, a bad file fails validation
            try:
                if spec.model.endswith(".tflite"):
                    info = _tflite_info(spec.model)
                else:
                    info = _onnx_info(spec.model) if have_ort else {"error": "onnxruntime not installed"}
            except Exception as exc:  # noqa: BLE001 - a row, not a dead harness
                info = {"error": f"{spec.model}: cannot load ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"}
            info["given_file"] = True
            entry.update(info=info, variants=None, weights=None,
                         onnx={"status": "ok", "file": spec.model} if spec.model.endswith(".onnx") else None)
            if spec.model.endswith(".tflite"):
                entry["direct_tflite"] = spec.model
        else:
            log(f"export {spec.label} ({', '.join(cfg.variants)}{', onnx' if 'onnxruntime' in runtimes else ''}) ...")
            want_onnx = ("onnxruntime" in runtimes and have_ort) or ("openvino" in runtimes and have_ov)
            entry.update(export_model(spec, cfg, work, want_onnx, log=log))
        models.append(entry)

    # 2. evaluation sets
    eval_sets: dict[tuple, dict] = {}
    for m in models:
        info = m["info"]
        if "error" in info:
            continue
        shape = info["inputs"]["image"]["shape"]
        spec = info.get("preprocess") or None
        ckey = json.dumps({k: (spec or {}).get(k) for k in ("frame", "crop", "crop_margin", "enhance")}, sort_keys=True)
        key = (info["task"], int(shape[0]), int(shape[-1]), ckey)
        if key not in eval_sets:
            path = work / f"eval_{key[0]}_{key[1]}_c{key[2]}_{len(eval_sets)}.npz"
            eval_sets[key] = pack_eval_set(*key[:3], cfg.data, path, spec)
            log(f"evaluation set {path.name}: {eval_sets[key]['desc']}")
        m["eval"] = eval_sets[key]

    # 3. run
    backend = make_backend(device, ssh_opts=cfg.ssh_opts, remote_python=cfg.remote_python,
                           benchmark_model_bin=cfg.benchmark_model_bin)
    rows: list[dict] = []
    evals: dict[str, str] = {}
    try:
        backend.prepare([e["path"] for e in eval_sets.values()])
        for m in models:
            label, info = m["label"], m["info"]
            if "error" in info:
                status = "validation failed" if info.get("given_file") else "export failed"
                rows.append(new_row(label, "-", "-", "-", device, status, info["error"], spec_file(m)))
                continue
            ev = m["eval"]["path"]
            evals[label] = ev
            f32_macs = None
            tfl = {}
            if m.get("direct_tflite"):
                tfl[info["variant"]] = {"status": "ok", "file": m["direct_tflite"]}
            elif m.get("variants"):
                tfl = m["variants"]
            for variant, ex in tfl.items():
                if ex["status"] == "export failed" or not ex.get("file"):
                    rows.append(new_row(label, variant, "litert", "-", device, "export failed", ex.get("error")))
                    continue
                lite_runtimes = [r for r in runtimes if r in ("litert", "tflite_runtime")]
                for rt in lite_runtimes:
                    if rt == "tflite_runtime" and not have_tflite_rt:
                        continue
                    for t in cfg.threads:
                        row = new_row(label, variant, rt, int(t), device, ex["status"], ex.get("error"), ex["file"])
                        log(f"run {label} {variant} {rt} t{t} on {backend.name} ...")
                        if rt == "tflite_runtime":
                            res = LocalBackend(env={**_child_env(), "EDGE_BONEAGE_FORCE_TFLITE_RUNTIME": "1"}) \
                                .run_tflite(ex["file"], ev, threads=t, runs=cfg.runs, warmup=cfg.warmup,
                                            timeout=cfg.run_timeout)
                        else:
                            res = backend.run_tflite(ex["file"], ev, threads=t, runs=cfg.runs, warmup=cfg.warmup,
                                                     timeout=cfg.run_timeout)
                        fill_row(row, res, None)
                        row["parity"] = ex.get("parity")
                        if variant == "f32" and row.get("gmacs"):
                            f32_macs = row["gmacs"] * 1e9
                        rows.append(row)
            if "tflite_runtime" in runtimes and not have_tflite_rt:
                rows.append(new_row(label, "-", "tflite_runtime", "-", device, "skipped",
                                    "tflite-runtime is not installed (it fails with numpy 2; see STACK.md)"))
            fallback_macs = f32_macs or ((info.get("keras_macs") or {}).get("macs"))
            for ort_rt, have, missing in (("onnxruntime", have_ort, "onnxruntime is not installed"),
                                          ("openvino", have_ov, "openvino is not installed (pip install "
                                                                "'edge-boneage[openvino]')")):
                if ort_rt not in runtimes:  # both read the one exported ONNX file
                    continue
                ox = m.get("onnx")
                if not have:
                    rows.append(new_row(label, "f32", ort_rt, "-", device, "skipped", missing))
                elif ox is None:
                    pass
                elif ox["status"] != "ok" or not ox.get("file"):
                    rows.append(new_row(label, "f32", ort_rt, "-", device, ox["status"], ox.get("error")))
                else:
                    for t in cfg.threads:
                        log(f"run {label} onnx {ort_rt} t{t} ...")
                        row = new_row(label, "f32", ort_rt, int(t), device, "ok", None, ox["file"])
                        rows.append(fill_row(row, run_worker(ort_rt, ox["file"], ev, int(t), cfg, work),
                                             fallback_macs))
            if "keras" in runtimes and info.get("keras_path"):
                for t in cfg.threads:
                    log(f"run {label} keras t{t} ...")
                    row = new_row(label, "f32", "keras", int(t), device, "ok", None, info["keras_path"])
                    rows.append(fill_row(row, run_worker("keras", info["keras_path"], ev, int(t), cfg, work),
                                         fallback_macs))
    finally:
        backend.close()

    spreads = {}
    if cfg.interleave and not remote:
        log("interleaved timing of every ok row (one child per thread count) ...")
        spreads = interleave_rows(rows, evals, cfg, work, log)
    peak = Rep.cpu_peak() if not remote else None
    ratios = Rep.compute_ratios(rows, pairs=cfg.compare, peak=peak)
    for q in ratios:
        q.update(spreads.get((q["name"], q["model"], q["threads"]), {}))
    env = {"python": sys.version.split()[0], "edge_boneage": __version__, "platform": os.uname().sysname + " " +
           os.uname().machine, "cpus": os.cpu_count(), "load_average_before": load_before,
           "load_average_after": _load_average(), "seconds": round(time.time() - t_start, 1),
           "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    for mod in ("ai_edge_litert", "onnxruntime", "tensorflow", "keras", "numpy", "tf2onnx"):
        env[mod] = _dist_version(mod)
    models_meta = {m["label"]: {"source": m["spec"].model, "kwargs": m["spec"].kwargs, "weights": m.get("weights"),
                                "task": m["info"].get("task"), "params": m["info"].get("params"),
                                "keras_macs": (m["info"].get("keras_macs") or {}).get("macs"),
                                "eval_set": (m.get("eval") or {}).get("desc")} for m in models}
    text = Rep.format_table(rows)
    if ratios:
        text += "\n\nratios (latency statistic p50 unless noted):\n" + Rep.format_ratios(ratios)
    if peak:
        text += (f"\n\nCPU peak estimate: {peak['cpu']}, {peak['isa']}: {peak['fp32_macs_per_cycle']} fp32 MAC/cycle x "
                 f"{peak['mhz']} MHz = {peak['peak_gmacs_per_core'] or 0:.1f} GMAC/s per core")
    text += (f"\nload average before/after: {env['load_average_before']} / {env['load_average_after']} "
             f"({env['cpus']} CPUs)")
    for label, mm in models_meta.items():
        if mm["weights"]:
            text += f"\n{label}: {mm['weights']}"
    text += "".join(f"\n{line}" for line in _delegate_notes(rows))
    text += "".join(f"\n{line}" for line in _xnnpack_int8_notes(rows))
    report = {"title": cfg.title, "config": _jsonable(cfg.to_json()), "device": device, "work_dir": str(work),
              "environment": env, "cpu_peak": peak, "models": models_meta, "rows": _jsonable(rows), "ratios": ratios,
              "text": text}
    Rep.write_outputs(report, out)
    return report


INTERLEAVE_KINDS = ("litert", "onnxruntime", "openvino", "keras")


def interleave_rows(rows: list[dict], evals: dict, cfg: BenchConfig, work: Path, log=print) -> dict:
    """Time every ok local LiteRT / ONNX Runtime / Keras row again, all rows of one thread count in ONE child
    (edge_boneage.bench.interleave: shuffled blocks), and replace the row's latency statistics with those (p10 /
    p50 / p90 / mean; the sequential run's p50 stays as ``seq_p50_ms``). Returns the spread over repeats of each
    ratio compute_ratios reports, {(name, model, threads): {"ratio_p10", "ratio_p90", "repeats"}}."""
    spreads = {}
    for t in sorted({r["threads"] for r in rows if isinstance(r.get("threads"), int)}):
        sel = {str(i): r for i, r in enumerate(rows) if r.get("status") == "ok" and r.get("threads") == t
               and r.get("runtime") in INTERLEAVE_KINDS and r.get("file") and r["model"] in evals}
        if not sel:
            continue
        key = {(r["model"], r["variant"], r["runtime"]): i for i, r in sel.items()}
        pairs = {}
        for (m, v, rt), i in key.items():
            f32 = key.get((m, "f32", "litert"))
            if v == "int8" and rt == "litert" and f32:
                pairs[("int8_vs_f32", m, t)] = (i, f32)
            if v == "f32" and rt == "onnxruntime" and f32:
                pairs[("litert_vs_onnxruntime", m, t)] = (f32, i)
        for p in cfg.compare:
            a, b = key.get((p["a"], "f32", "litert")), key.get((p["b"], "f32", "litert"))
            if a and b:
                pairs[(p.get("name", f"{p['a']}_vs_{p['b']}"), f"{p['a']} / {p['b']}", t)] = (a, b)
        job = {"rows": [{"label": i, "kind": r["runtime"], "path": r["file"], "threads": t, "eval": evals[r["model"]]}
                        for i, r in sel.items()], "repeats": cfg.interleave_repeats, "block": cfg.interleave_block,
               "pairs": [list(v) for v in pairs.values()]}
        jp, op = work / f"interleave_t{t}.job.json", work / f"interleave_t{t}.result.json"
        jp.write_text(json.dumps(job))
        try:
            proc = subprocess.run([sys.executable, "-m", "edge_boneage.bench.interleave", str(jp), str(op)],
                                  capture_output=True, text=True, timeout=cfg.run_timeout, env=_child_env())
            res = json.loads(op.read_text()) if proc.returncode == 0 and op.is_file() else None
        except subprocess.TimeoutExpired:
            res, proc = None, None
        if res is None:
            why = "timed out" if proc is None else _signal_text(proc.returncode)
            log(f"  interleaved timing t{t}: child {why}; the rows keep their sequential timings")
            continue
        for i, r in sel.items():
            st = res["rows"].get(i)
            if st is None:
                r["error"] = (f"{r['error']}; " if r.get("error") else "") + \
                    f"interleaved timing: {res['errors'].get(i, 'did not run')}"
                continue
            r.update(seq_p50_ms=r.get("p50_ms"), p10_ms=st["p10_ms"], p50_ms=st["p50_ms"], p90_ms=st["p90_ms"],
                     mean_ms=st["mean_ms"], timing="interleaved", interleaved_calls=st["calls"])
            if r.get("gmacs") and st["mean_ms"]:
                r["gmacs_per_s"] = r["gmacs"] / (st["mean_ms"] / 1000.0)
        by_pair = {(q["a"], q["b"]): q for q in res["ratios"]}
        for name_key, (a, b) in pairs.items():
            q = by_pair.get((a, b))
            if q:
                spreads[name_key] = {"ratio_p10": q["ratio_p10"], "ratio_p90": q["ratio_p90"],
                                     "ratio_repeats": q["repeats"], "interleaved": True}
    return spreads


def _delegate_notes(rows: list[dict]) -> list[str]:
    """One line per LiteRT file: its XNNPACK partitions and the ops left to the builtin kernels."""
    out, seen = [], set()
    for r in rows:
        d = r.get("delegate")
        if r.get("runtime") != "litert" or not d or "partitions" not in d or r.get("file") in seen:
            continue
        seen.add(r.get("file"))
        rest = ", ".join(f"{n} {op}" for op, n in d["outside"].items()) or "none"
        out.append(f"{r['model']} {r['variant']}: XNNPACK {d['partitions']} partition(s), {d['delegated']} of "
                   f"{d['ops']} ops delegated; outside: {rest}")
    return out


def _xnnpack_int8_notes(rows: list[dict]) -> list[str]:
    """One line per int8 .tflite with int8 ADD/MUL ops XNNPACK refuses (convert.litert.xnnpack_int8_rejects): why
    such a file can be slower than float32 on a CPU."""
    from edge_boneage.convert.litert import xnnpack_int8_rejects

    out, seen = [], set()
    for r in rows:
        f = r.get("file")
        if r.get("variant") != "int8" or r.get("runtime") != "litert" or not f or f in seen or not Path(f).is_file():
            continue
        seen.add(f)
        try:
            bad = xnnpack_int8_rejects(f)
        except Exception as exc:  # diagnosis only: never fail the report over it
            out.append(f"{r['model']} int8: could not read its quantisation scales ({type(exc).__name__})")
            continue
        if bad:
            out.append(f"{r['model']} int8: {', '.join(f'{n} {op}' for op, n in bad.items())} outside XNNPACK's int8 "
                       f"requantisation range (reference kernels, extra XNNPACK partitions); typical of random "
                       f"weights, so time int8 with trained weights")
    return out


def _dist_version(mod: str):
    from importlib import metadata

    for name in ({"ai_edge_litert": "ai-edge-litert", "tensorflow": "tensorflow-cpu"}.get(mod, mod), mod):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
