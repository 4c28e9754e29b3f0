"""Atomic writes: all-or-nothing, no temp files left behind, normal permissions."""

import os
import stat

import pytest

from edge_boneage.fileutil import atomic_path, write_json_atomic, write_text_atomic


def test_success_renames_and_uses_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_json_atomic(target, {"x": 1})
    assert target.read_text().strip().startswith("{")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "b.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
