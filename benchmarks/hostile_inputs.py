"""Every hostile input tried on the CLI as a user would: what it printed, its exit code, what it left on disk.

    python -m benchmarks.hostile_inputs [--rsna-dir ../shared/data/rsna] [--keep DIR]

Each case runs `edge-boneage ...` in a child process (the installed CLI, no Python API shortcuts) inside a fresh
folder, and lists the files that folder holds afterwards (so a half-written file, a left-over temporary or a
deleted user file shows). A case FAILS (exit 1 at the end) when the output holds a Python traceback, or when it
breaks the expectation written beside it (exit code, a phrase that must appear, files that must stay or vanish).
Disk full is simulated with a file-size limit (``ulimit -f``: writes fail with EFBIG, as on a full disk a
write fails with ENOSPC); read-only with /proc (root ignores file permissions, so chmod cannot make one here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edge_boneage.cli"]
MODEL = HERE / "edge_boneage" / "pretrained" / "boneage_age.tflite"
KERAS = HERE / "edge_boneage" / "pretrained" / "boneage_age.keras"


def write_png(path: Path, img: np.ndarray) -> Path:
    import cv2

    cv2.imwrite(str(path), img)
    return path


def write_dicom(path: Path, img: np.ndarray, **tags) -> Path:
    from benchmarks.bad_inputs import dicom_dataset, write_dicom as _write

    return _write(path, dicom_dataset(np.ascontiguousarray(img, np.uint8), Modality="CR", PatientID=None, **tags))


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) + ("/" if p.is_dir() else "") for p in d.rglob("*"))


def run(case: dict, d: Path) -> dict:
    cmd = case["cmd"]
    shell = case.get("ulimit_kb")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(HERE)}
    if shell:
        line = f"ulimit -f {int(shell)}; exec " + " ".join(f"'{c}'" for c in cmd)
        proc = subprocess.run(["bash", "-c", line], cwd=d, capture_output=True, text=True, env=env, timeout=900)
    else:
        proc = subprocess.run(cmd, cwd=d, capture_output=True, text=True, env=env, timeout=900)
    out = (proc.stdout + proc.stderr).strip()
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(("W0000", "I0000", "WARNING: All"))
             and "absl::InitializeLog" not in ln and "oneDNN" not in ln and "XNNPACK" not in ln]
    files = listing(d)
    problems = []
    if "Traceback" in out:
        problems.append("traceback")
    if "rc" in case and proc.returncode != case["rc"]:
        problems.append(f"exit {proc.returncode}, expected {case['rc']}")
    for phrase in case.get("says", []):
        if phrase not in out:
            problems.append(f"missing {phrase!r}")
    for f in case.get("keeps", []):
        if f not in files:
            problems.append(f"{f} was deleted")
    for f in case.get("not_left", []):
        if any(x == f or x.startswith(f) for x in files):
            problems.append(f"{f} left behind")
    if any(".tmp" in f for f in files):
        problems.append("temporary file left")
    keep = [ln for i, ln in enumerate(lines) if i == 0 or any(w in ln for w in ("error", "WARNING", "skipped",
                                                                                "turned", "Error"))]
    return {"case": case["name"], "cmd": " ".join(Path(c).name if c.startswith("/") else c for c in cmd[3:]),
            "printed": [ln[:260] for ln in keep[:3]], "rc": proc.returncode, "files": files, "problems": problems}


def cases(work: Path, rsna_dir: Path | None) -> list[dict]:
    from edge_boneage.orientation import apply_orientation
    from edge_boneage.synth import generate

    rng = np.random.default_rng(0)
    hand = None
    if rsna_dir is not None and (rsna_dir / "fullres" / "1380.png").is_file():
        from edge_boneage.io import read_image

        hand = read_image(rsna_dir / "fullres" / "1380.png")[0]
    if hand is None:  # a synthetic hand stands in when ../shared is absent
        hand = generate(1, size=512, seed=3).images[0]
    P = ["predict", "--model", str(MODEL)]
    files = {
        "tiny_1x1.png": np.full((1, 1), 128, np.uint8), "black.png": np.zeros((512, 512), np.uint8),
        "noise.png": rng.integers(0, 256, (512, 512), dtype=np.uint8),
        "hand_rot90.png": apply_orientation(hand, 1), "hand_rot180.png": apply_orientation(hand, 2),
        "right_hand.png": apply_orientation(hand, 4), "hand.png": hand,
    }
    shapes = np.full((400, 600, 3), (30, 160, 220), np.uint8)
    import cv2

    cv2.circle(shapes, (200, 200), 120, (20, 40, 230), -1)
    cv2.rectangle(shapes, (330, 80), (560, 330), (40, 200, 40), -1)
    for name, img in files.items():
        write_png(work / name, img)
    cv2.imwrite(str(work / "shapes_photo.png"), shapes)
    write_dicom(work / "female.dcm", hand, PatientSex="F", PatientAge="010Y")
    write_dicom(work / "right_tagged.dcm", hand[:, ::-1], PatientSex="M", ImageLaterality="R")
    (work / "bad.csv").write_text("id,boneage,male\nhand,120,True\ncorrupt,100,False\nhand_rot90,90,True\n")
    shutil.copy(work / "hand.png", work / "-dash.png")
    (work / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    return [
        {"name": "1x1 image", "cmd": CLI + P + ["tiny_1x1.png", "--sex", "M"], "rc": 0, "says": ["WARNING"]},
        {"name": "1x1 image, --strict", "cmd": CLI + P + ["tiny_1x1.png", "--sex", "M", "--strict"], "rc": 2},
        {"name": "all-black image", "cmd": CLI + P + ["black.png", "--sex", "M"], "rc": 0, "says": ["WARNING"]},
        {"name": "random noise", "cmd": CLI + P + ["noise.png", "--sex", "F"], "rc": 0, "says": ["WARNING"]},
        {"name": "photo of coloured shapes", "cmd": CLI + P + ["shapes_photo.png", "--sex", "F"], "rc": 0,
         "says": ["WARNING"]},
        {"name": "radiograph turned 90 degrees", "cmd": CLI + P + ["hand_rot90.png", "--sex", "M"], "rc": 0,
         "says": ["turned to an upright left hand"]},
        {"name": "radiograph upside down", "cmd": CLI + P + ["hand_rot180.png", "--sex", "M"], "rc": 0,
         "says": ["turned to an upright left hand"]},
        {"name": "untagged right hand", "cmd": CLI + P + ["right_hand.png", "--sex", "M"], "rc": 0,
         "says": ["turned to an upright left hand"]},
        {"name": "DICOM, PatientSex F, PatientAge, no --sex", "cmd": CLI + P + ["female.dcm"], "rc": 0,
         "says": ["from DICOM PatientSex", "chronological age"]},
        {"name": "DICOM, --sex contradicts PatientSex", "cmd": CLI + P + ["female.dcm", "--sex", "M"], "rc": 1,
         "says": ["contradicts"]},
        {"name": "DICOM ImageLaterality R", "cmd": CLI + P + ["right_tagged.dcm", "--json"], "rc": 0,
         "says": ['"mirrored": true']},
        {"name": "no sex, model needs one", "cmd": CLI + P + ["hand.png"], "rc": 0, "says": ["if male", "if female"]},
        {"name": "disk full while exporting (ulimit -f 64 KiB)", "ulimit_kb": 64,
         "cmd": CLI + ["export", str(KERAS), "--out", "out.tflite", "--check-n", "2"], "rc": 1,
         "not_left": ["out.tflite"]},
        {"name": "export into a read-only place (/proc)", "cmd": CLI + ["export", str(KERAS), "--out",
                                                                      "/proc/edge_boneage.tflite", "--check-n", "2"],
         "rc": 1},
        {"name": "export --out under a file (not a directory)", "cmd": CLI + ["export", str(KERAS), "--out",
                                                                            "hand.png/x.tflite", "--check-n", "2"],
         "rc": 1, "keeps": ["hand.png"]},
        {"name": "evaluate, CSV with an unreadable image, --skip-bad",
         "cmd": CLI + ["evaluate", str(MODEL), "--data", "csv", "--csv", "bad.csv", "--image-dir", ".", "--out",
                       "ev", "--skip-bad", "--no-plots"], "rc": 0, "says": ["row 2"]},
        {"name": "evaluate, same CSV without --skip-bad",
         "cmd": CLI + ["evaluate", str(MODEL), "--data", "csv", "--csv", "bad.csv", "--image-dir", ".", "--out",
                       "ev2", "--no-plots"], "rc": 1, "says": ["row 2"], "not_left": ["ev2/report.json"]},
        {"name": "benchmark --device ssh:-oProxyCommand=x", "cmd": CLI + ["benchmark", "--model", str(MODEL),
                                                                         "--device", "ssh:-oProxyCommand=touch_pwned"],
         "rc": 1, "says": ["-oProxyCommand"], "not_left": ["touch_pwned"]},
        {"name": "image named '-dash.png' (after --)", "cmd": CLI + P + ["--sex", "M", "--", "-dash.png"], "rc": 0,
         "says": ["-dash.png: bone age"]},
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rsna-dir", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the case folders here")
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="edge_boneage_hostile_")) if a.keep is None else a.keep
    src = root / "inputs"
    src.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, case in enumerate(cases(src, a.rsna_dir)):
        d = root / f"case{i:02d}"
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(src, d)
        before = set(listing(d))
        r = run(case, d)
        r["new_files"] = sorted(set(r["files"]) - before)
        r["gone"] = sorted(before - set(r["files"]))
        rows.append(r)
    print("| input | command | printed (last lines) | exit | left on disk (new / removed) | verdict |")
    print("|---|---|---|---:|---|---|")
    for r in rows:
        printed = "<br>".join(f"`{ln.replace('|', '/')}`" for ln in r["printed"]) or "(nothing)"
        disk = (", ".join(r["new_files"]) or "nothing new") + ("; removed: " + ", ".join(r["gone"]) if r["gone"] else "")
        verdict = "ok" if not r["problems"] else "FAIL: " + "; ".join(r["problems"])
        print(f"| {r['case']} | `{r['cmd']}` | {printed} | {r['rc']} | {disk} | {verdict} |")
    if a.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    bad = [r for r in rows if r["problems"]]
    if bad:
        print(f"\n{len(bad)} case(s) failed", file=sys.stderr)
        print(json.dumps(bad, indent=1), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
