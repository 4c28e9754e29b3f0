"""What `pip install` puts into site-packages: edge_boneage and keras_models only (the convert/ folder installs as
edge_boneage.convert; benchmarks/ is not installed), checked on a wheel built from a copy of the source."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_only_edge_boneage_and_keras_models(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    skip_big = shutil.ignore_patterns("__pycache__", "*.keras", "*.tflite")  # weights: size only, not layout
    for d in ("edge_boneage", "keras_models", "convert", "benchmarks"):
        shutil.copytree(ROOT / d, src / d, ignore=skip_big)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edge_boneage-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"edge_boneage", "keras_models"}, top
    assert "edge_boneage/convert/budget.py" in names and "edge_boneage/convert/litert.py" in names
    assert "edge_boneage/bench/harness.py" in names and "edge_boneage/data/tw3_rus.json" in names
    assert "edge_boneage/tw3_pipeline/__init__.py" in names  # a subpackage must be listed in pyproject.toml
    assert not any(n.startswith(("convert/", "benchmarks/")) for n in names)
