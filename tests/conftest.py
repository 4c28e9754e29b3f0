"""Shared test fixtures. Tests needing ../shared (real RSNA data) skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_BONEAGE_SHARED", REPO.parent / "shared"))
RSNA = SHARED / "data" / "rsna"


@pytest.fixture(scope="session")
def rsna_dir() -> Path:
    if not (RSNA / "labels.csv").is_file():
        pytest.skip(f"real RSNA data not found at {RSNA} (CI has ../shared beside the clone; a user's clone does not)")
    return RSNA


@pytest.fixture(scope="session")
def rsna_dir_or_none() -> Path | None:
    """The RSNA folder when present, else None: for tests that add real images to a suite that runs without them."""
    return RSNA if (RSNA / "labels.csv").is_file() else None
