"""benchmarks.record: a section is replaced by what its command printed, keeps its heading unless told, and a
failing command changes nothing."""

from __future__ import annotations

import sys

from benchmarks.record import main


def test_record_replaces_a_section_keeps_its_title_and_leaves_the_file_alone_on_failure(tmp_path):
    f = tmp_path / "B.md"
    f.write_text("# B\n\n<!-- BEGIN s -->\n## The old heading\nold text\n<!-- END s -->\n\ntail\n")
    assert main(["s", "--file", str(f), "--", sys.executable, "-c", "print('figure 42')"]) == 0
    text = f.read_text()
    assert "## The old heading" in text and "figure 42" in text and "old text" not in text and text.endswith("tail\n")
    assert main(["s", "--file", str(f), "--title", "New", "--", sys.executable, "-c", "print(7)"]) == 0
    assert "## New\n" in f.read_text() and "The old heading" not in f.read_text()
    before = f.read_text()
    assert main(["s", "--file", str(f), "--", sys.executable, "-c", "import sys; print(1); sys.exit(3)"]) == 3
    assert f.read_text() == before
    assert main(["t", "--file", str(f), "--", sys.executable, "-c", "print('new section')"]) == 0
    assert "<!-- BEGIN t -->\n## t\n" in f.read_text()
