"""Result rows (one per model x variant x runtime x threads) and the labelled evaluation set every row is measured
on (packed once per task, input size and channels into an .npz: the same file a device gets).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_boneage import EdgeBoneageError


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
