"""RSNA ablation (seed 003, Table 2): plain MobileNetV3-Large vs RIL-MobileNetV3-Large with LBP none/default/ror.

Every run of a config (benchmarks/configs/*.json) trains with `edge-boneage train` on the same data, split
(the train engine's stratified split, seed and val fraction from the config: the validation images are never
trained on), epochs, lr and batch; only the model and its builder arguments differ. Then `edge-boneage evaluate
RUN/best.keras --from-run RUN` measures each best checkpoint on the held-out split (MAE months/years, RMSE,
+-1-year accuracy, per sex). The script prints the exact commands it runs, a markdown table, and writes training
curves (train and validation MAE of the age output vs epoch, one colour per run) as a PNG.

Resumable: a run whose run.json records a finished result for the configured epochs is skipped; a run folder with
a committed epoch (state.json) but no finished result is continued with `--resume` (e.g. after a kill); an
evaluation is redone only when its report is missing or older than best.keras.

    .venv/bin/python -m benchmarks.rsna_ablation                             # benchmarks/configs/rsna_cpu100.json
    .venv/bin/python -m benchmarks.rsna_ablation --only plain --dry-run      # print the commands only
    .venv/bin/python -m benchmarks.rsna_ablation --no-train                  # table + curves from what exists

Numbers from a CPU-short configuration (100 px, alpha 0.35, a few epochs) are NOT comparable with the paper's
224 px / 50-80 epoch results; the table prints the paper's values beside ours only as a reference.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "benchmarks" / "configs" / "rsna_cpu100.json"
DEFAULT_CURVES = ROOT / "docs" / "results" / "rsna_ablation_curves.png"


# ----------------------------------------------------------------------------------------------- config


def load_config(path: str | os.PathLike) -> dict:
    from edge_boneage import EdgeBoneageError

    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeBoneageError(f"{path}: cannot read ablation config ({exc})") from exc
    for key in ("common", "runs"):
        if key not in cfg:
            raise EdgeBoneageError(f"{path}: ablation config has no {key!r}")
    names = [r.get("name") for r in cfg["runs"]]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise EdgeBoneageError(f"{path}: every run needs a unique 'name' (got {names})")
    return cfg


def run_spec(cfg: dict, run: dict) -> dict:
    """The merged settings of one run: common settings, model_args merged (run's own win)."""
    spec = {**cfg["common"], **{k: v for k, v in run.items() if k != "model_args"}}
    spec["model_args"] = {**cfg["common"].get("model_args", {}), **run.get("model_args", {})}
    return spec


def _arg_value(v) -> str:
    """A --model-arg value that edge-boneage's parse_model_args reads back as `v` (it turns the bare words
    none/null/true/false into None/False/True and numbers into numbers, so such strings go JSON-quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        try:
            json.loads(v)
            bare_ok = False  # the bare word would parse as a number/literal
        except json.JSONDecodeError:
            bare_ok = v.strip().lower() not in ("true", "false", "none", "null")
        return v if bare_ok else json.dumps(v)
    return json.dumps(v)


def train_command(spec: dict, out: Path, *, resume: bool = False) -> list[str]:
    """`edge-boneage train ...` for a run (argv list; the entry point is `python -m edge_boneage.cli`)."""
    cmd = [sys.executable, "-m", "edge_boneage.cli", "train", "--model", spec["model"]]
    for k, v in sorted(spec["model_args"].items()):
        cmd += ["--model-arg", f"{k}={_arg_value(v)}"]
    cmd += ["--data", spec["data"]]
    if spec.get("rsna_dir"):
        cmd += ["--rsna-dir", str(spec["rsna_dir"])]
    if spec.get("limit"):
        cmd += ["--limit", str(spec["limit"])]
    for key, flag in (("size", "--size"), ("val_fraction", "--val-fraction"), ("seed", "--seed"),
                      ("epochs", "--epochs"), ("batch", "--batch"), ("lr", "--lr"), ("bn_momentum", "--bn-momentum"),
                      ("backend", "--backend")):
        if spec.get(key) is not None:
            cmd += [flag, str(spec[key])]
    cmd += ["--augment" if spec.get("augment", True) else "--no-augment", "--verbose", "2", "--out", str(out)]
    if resume:
        cmd.append("--resume")
    return cmd


def evaluate_command(run_dir: Path, spec: dict) -> list[str]:
    cmd = [sys.executable, "-m", "edge_boneage.cli", "evaluate", str(run_dir / "best.keras"), "--from-run", str(run_dir),
           "--out", str(run_dir / "eval"), "--no-gate"]
    if spec.get("backend"):
        cmd += ["--backend", spec["backend"]]
    return cmd


def show(cmd: list[str]) -> str:
    """The command as a user would type it (relative paths, `edge-boneage` for the module entry point)."""
    parts = list(cmd)
    if parts[:3] == [sys.executable, "-m", "edge_boneage.cli"]:
        parts = ["edge-boneage"] + parts[3:]
    return " ".join(shlex.quote(os.path.relpath(p, ROOT) if p.startswith(str(ROOT) + os.sep) else p) for p in parts)


# ----------------------------------------------------------------------------------------------- run state


def run_status(run_dir: Path, epochs: int) -> str:
    """"finished" (run.json has a result with >= epochs epochs), "partial" (committed epochs to resume from) or
    "new" (nothing committed: start from scratch)."""
    rj, st = run_dir / "run.json", run_dir / "state.json"
    if rj.is_file():
        try:
            info = json.loads(rj.read_text())
        except json.JSONDecodeError:
            info = {}
        res = info.get("result") or {}
        if int(res.get("epochs_done", 0)) >= epochs and (run_dir / "best.keras").is_file():
            return "finished"
    return "partial" if st.is_file() else "new"


def read_log(run_dir: Path) -> list[dict]:
    p = run_dir / "log.csv"
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _env(spec: dict) -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if spec.get("backend"):
        env["KERAS_BACKEND"] = spec["backend"]
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_logged(cmd: list[str], log_path: Path, spec: dict) -> tuple[int, float]:
    """Run cmd with stdout+stderr appended to log_path; returns (exit code, seconds)."""
    t0 = time.time()
    with open(log_path, "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {show(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=_env(spec))
        if "train" in cmd[3:5]:  # lets a user (or the resume demo) kill exactly the training process
            (log_path.parent / "train.pid").write_text(f"{proc.pid}\n")
        rc = proc.wait()
    return rc, time.time() - t0


def _record(run_dir: Path, entry: dict) -> None:
    """Append one invocation (command, start, seconds, exit code) to RUN/ablation_invocations.json."""
    from edge_boneage.fileutil import write_json_atomic

    p = run_dir / "ablation_invocations.json"
    items = json.loads(p.read_text()) if p.is_file() else []
    items.append(entry)
    write_json_atomic(p, items)


def train_run(spec: dict, run_dir: Path, *, dry_run: bool = False) -> str:
    status = run_status(run_dir, int(spec["epochs"]))
    if status == "finished":
        print(f"[{spec['name']}] training finished earlier: skipped")
        return status
    cmd = train_command(spec, run_dir, resume=status == "partial")
    print(f"[{spec['name']}] {'resume' if status == 'partial' else 'train'}: {show(cmd)}", flush=True)
    if dry_run:
        return status
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rc, secs = _run_logged(cmd, run_dir / "train.out", spec)
    _record(run_dir, {"command": show(cmd), "started_utc": started, "seconds": round(secs, 1), "exit_code": rc})
    if rc != 0:
        raise SystemExit(f"[{spec['name']}] training exited with {rc} after {secs:.0f} s (see {run_dir / 'train.out'}); "
                         f"rerun this script to resume from the last committed epoch")
    print(f"[{spec['name']}] trained in {secs / 60:.1f} min", flush=True)
    return "finished"


def evaluate_run(spec: dict, run_dir: Path, *, dry_run: bool = False) -> dict | None:
    best, report = run_dir / "best.keras", run_dir / "eval" / "report.json"
    if not best.is_file():
        print(f"[{spec['name']}] no best.keras yet: not evaluated")
        return None
    if report.is_file() and report.stat().st_mtime >= best.stat().st_mtime:
        return json.loads(report.read_text())
    cmd = evaluate_command(run_dir, spec)
    print(f"[{spec['name']}] evaluate: {show(cmd)}", flush=True)
    if dry_run:
        return None
    rc, secs = _run_logged(cmd, run_dir / "evaluate.out", spec)
    if rc != 0:
        raise SystemExit(f"[{spec['name']}] evaluate exited with {rc} (see {run_dir / 'evaluate.out'})")
    return json.loads(report.read_text())


# ----------------------------------------------------------------------------------------------- reporting


def _f(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def _train_minutes(invocations: list[dict], info: dict) -> float | None:
    """Wall minutes of all training invocations (killed ones included); without this script's record, the
    train engine's own figure for its last invocation (run.json result.seconds)."""
    secs = [i["seconds"] for i in invocations if i["command"].split()[1:2] == ["train"]]
    if secs:
        return sum(secs) / 60
    res = info.get("result") or {}
    return res["seconds"] / 60 if res.get("seconds") else None


def table_rows(cfg: dict, out_root: Path) -> list[dict]:
    rows = []
    for run in cfg["runs"]:
        spec = run_spec(cfg, run)
        d = out_root / spec["name"]
        rep_p = d / "eval" / "report.json"
        rep = json.loads(rep_p.read_text()) if rep_p.is_file() else None
        info = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
        inv = json.loads((d / "ablation_invocations.json").read_text()) if (d / "ablation_invocations.json").is_file() else []
        log = read_log(d)
        rows.append({"name": spec["name"], "model": spec["model"], "lbp": spec["model_args"].get("lbp", "-"),
                     "params": info.get("model_params"), "epochs": len(log), "n_train": info.get("n_train"),
                     "n_val": info.get("n_val"), "best_epoch": (info.get("result") or {}).get("best_epoch"),
                     "report": rep, "train_minutes": _train_minutes(inv, info),
                     "paper": spec.get("paper_mae_years"), "paper_row": spec.get("paper_row")})
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = ("| run | model | LBP | params | epochs | best ep. | val MAE (months) | MAE (years) | RMSE (months) "
            "| ±1 y acc. | MAE male | MAE female | bias | train min | paper Table 2 (years, 224 px, 50 ep.) |")
    lines = [head, "|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|"]
    for r in rows:
        rep = r["report"]
        o = rep["overall"] if rep else {}
        sx = rep["by_sex"] if rep else {}
        paper = "not in Table 2" if r["paper"] is None else f"{r['paper']:.3f} ({r['paper_row']})"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['lbp']} | {_f(r['params'] and r['params'] / 1e6, '.2f')}M | {r['epochs']} "
            f"| {_f(r['best_epoch'], 'd')} | {_f(o.get('mae_months'))} | {_f(o.get('mae_years'), '.3f')} "
            f"| {_f(o.get('rmse_months'))} | {_f(o.get('acc_1y') and 100 * o['acc_1y'], '.1f')}% "
            f"| {_f(sx.get('male', {}).get('mae_months'))} | {_f(sx.get('female', {}).get('mae_months'))} "
            f"| {_f(o.get('bias_months'), '+.2f')} | {_f(r['train_minutes'], '.1f')} | {paper} |")
    return "\n".join(lines)


def plot_curves(cfg: dict, out_root: Path, path: Path, baseline: float | None = None) -> Path:
    """Train (dashed) and validation (solid) MAE of the age output in months vs epoch, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_boneage.fileutil import atomic_path

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for k, run in enumerate(cfg["runs"]):
        log = read_log(out_root / run["name"])
        if not log:
            continue
        ep = [int(r["epoch"]) + 1 for r in log]
        c = f"C{k}"
        if "age_mae" in log[0]:
            ax.plot(ep, [r["age_mae"] for r in log], "--", color=c, alpha=0.7, label=f"{run['name']} train")
        if "val_age_mae" in log[0]:
            ax.plot(ep, [r["val_age_mae"] for r in log], "-o", color=c, ms=4, label=f"{run['name']} val")
    if baseline is not None:
        ax.axhline(baseline, color="grey", lw=1, ls=":", label=f"mean age per sex ({baseline:.1f})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    c = cfg["common"]
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE of the age output (months)")
    ax.set_title(f"RSNA {c.get('size')} px, alpha {c.get('model_args', {}).get('alpha', 1.0)}, batch {c.get('batch')}, "
                 f"lr {c.get('lr')} (CPU-short; train MAE is with augmentation and dropout)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------- full resolution


def baseline_mae(common: dict) -> float:
    """Validation MAE (months) of a model that knows nothing but the sex: the training split's mean age per sex."""
    import numpy as np

    from edge_boneage.dataconfig import load_split
    from edge_boneage.train_config import TrainConfig

    cfg = TrainConfig(data=common["data"], rsna_dir=common.get("rsna_dir"), size=int(common["size"]),
                      val_fraction=float(common["val_fraction"]), seed=int(common["seed"]))
    tr, va = load_split(cfg)
    means = {m: float(tr.months[tr.male == m].mean()) for m in (0.0, 1.0)}
    pred = np.array([means[float(m)] for m in va.male])
    return float(np.abs(pred - va.months).mean())


def _held_out_ids(common: dict) -> set[str]:
    """Ids of the validation split the config's runs hold out (the train engine's split, recomputed)."""
    from edge_boneage.dataconfig import load_split
    from edge_boneage.train_config import TrainConfig

    cfg = TrainConfig(data=common["data"], rsna_dir=common.get("rsna_dir"), size=int(common["size"]),
                      val_fraction=float(common["val_fraction"]), seed=int(common["seed"]))
    _, val = load_split(cfg)
    return set(val.ids)


def _stretched_predictions(model, rsna_dir: Path, rows: list[dict]) -> dict[str, float]:
    """Ages for the full-resolution images squeezed to SxS WITHOUT letterbox (cv2.INTER_AREA), i.e. the way the
    img100 training images were made (aspect ratio not preserved): measures what the letterbox/stretch mismatch
    between the training images and `edge-boneage predict`'s preprocessing costs. Not how predict works."""
    import cv2
    import numpy as np

    from edge_boneage.io import read_image
    from edge_boneage.predict import AgePredictor
    from edge_boneage.pretrained import default_model_path

    pred = AgePredictor(model or default_model_path())
    out = {}
    for r in rows:
        img, _ = read_image(rsna_dir / "fullres" / f"{r['id']}.png")
        x = cv2.resize(img, (pred.size, pred.size), interpolation=cv2.INTER_AREA)
        out[r["id"]] = float(np.asarray(pred.run(x, 1.0 if r["male"] == "True" else 0.0)["age"]).reshape(-1)[0])
    return out


def fullres_check(model: str | None, rsna_dir: Path, out: Path, *, held_out_ids: set[str] | None = None) -> dict:
    """`edge-boneage predict --json` (the packaged model unless `model`) on every image of RSNA_DIR/fullres.csv,
    one call per sex; MAE vs the labels overall and split by whether the image's 100x100 version was in the
    held-out validation split (`held_out_ids`) or in the training split."""
    import numpy as np

    from edge_boneage.fileutil import write_json_atomic

    rows = list(csv.DictReader(open(rsna_dir / "fullres.csv", newline="")))
    by_sex = {"M": [r for r in rows if r["male"] == "True"], "F": [r for r in rows if r["male"] != "True"]}
    preds, commands = {}, []
    for sex, group in by_sex.items():
        if not group:
            continue
        cmd = [sys.executable, "-m", "edge_boneage.cli", "predict", "--json", "--sex", sex]
        cmd += (["--model", str(model)] if model else []) + [str(rsna_dir / "fullres" / f"{r['id']}.png") for r in group]
        commands.append(show(cmd[:7] + (["--model", str(model)] if model else [])) + f" <the {len(group)} "
                        f"fullres/ID.png with sex {sex}>")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env({}))
        if r.returncode != 0:
            raise SystemExit(f"predict failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        for line in r.stdout.splitlines():
            d = json.loads(line)
            preds[Path(d["image"]).stem] = d
    stretched = _stretched_predictions(model, rsna_dir, rows)
    items = []
    for r in rows:
        p = preds[r["id"]]
        items.append({"id": r["id"], "male": r["male"] == "True", "true_months": float(r["boneage"]),
                      "pred_months": p["age_months"], "image_shape": p["image_meta"].get("shape"),
                      "photometric": p["image_meta"].get("photometric"),
                      "held_out": None if held_out_ids is None else r["id"] in held_out_ids,
                      "latency_ms": p["latency_ms"], "pred_months_stretched": stretched[r["id"]]})

    def mae(sel):
        return float(np.mean([abs(i["pred_months"] - i["true_months"]) for i in sel])) if sel else None

    summary = {"n": len(items), "mae_months": mae(items), "model": next(iter(preds.values()))["model"],
               "commands": commands,
               "by_sex": {"male": mae([i for i in items if i["male"]]), "female": mae([i for i in items if not i["male"]])},
               "mae_months_stretched": float(np.mean([abs(i["pred_months_stretched"] - i["true_months"]) for i in items]))}
    if held_out_ids is not None:
        ho = [i for i in items if i["held_out"]]
        tr = [i for i in items if not i["held_out"]]
        summary.update({"n_held_out": len(ho), "mae_held_out": mae(ho), "n_in_train_split": len(tr), "mae_in_train_split": mae(tr)})
    write_json_atomic(out, {"summary": summary, "items": items})
    return summary


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="ablation config JSON")
    ap.add_argument("--out", help="run folder root (default: the config's 'out')")
    ap.add_argument("--only", action="append", help="run only this run name (repeatable)")
    ap.add_argument("--no-train", action="store_true", help="only evaluate existing best.keras files and report")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--curves", default=str(DEFAULT_CURVES), help="training-curve PNG (default docs/results/...)")
    ap.add_argument("--fullres", nargs="?", const="", metavar="MODEL",
                    help="only run `edge-boneage predict` on RSNA_DIR/fullres/ (the packaged model, or MODEL) and "
                         "report MAE vs fullres.csv, split by the config's validation split")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    out_root = Path(args.out or cfg.get("out", "runs/rsna_ablation"))
    if not out_root.is_absolute():
        out_root = ROOT / out_root
    names = [r["name"] for r in cfg["runs"]]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        raise SystemExit(f"--only {unknown}: not in {args.config} (runs: {names})")
    if args.fullres is not None:
        common = cfg["common"]
        held = _held_out_ids(common)
        rsna = Path(common["rsna_dir"])
        summary = fullres_check(args.fullres or None, rsna, out_root / "fullres_predict.json", held_out_ids=held)
        print(json.dumps(summary, indent=2))
        print(f"per image: {out_root / 'fullres_predict.json'}")
        return 0
    for run in cfg["runs"]:
        if args.only and run["name"] not in args.only:
            continue
        spec = run_spec(cfg, run)
        d = out_root / spec["name"]
        if not args.no_train:
            train_run(spec, d, dry_run=args.dry_run)
        evaluate_run(spec, d, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    rows = table_rows(cfg, out_root)
    base = baseline_mae(cfg["common"])
    md = markdown_table(rows) + (f"\n\nBaseline on the same validation images: predicting the training split's mean "
                                 f"age for the sex gives MAE {base:.2f} months ({base / 12:.3f} years).")
    print()
    print(md)
    from edge_boneage.fileutil import write_text_atomic

    write_text_atomic(out_root / "results.md", md + "\n")
    curves = plot_curves(cfg, out_root, Path(args.curves), baseline=base)
    print(f"\ntable: {out_root / 'results.md'}\ncurves: {curves}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
