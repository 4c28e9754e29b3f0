"""Run a benchmark command and put its output, command, date and machine into one section of BENCHMARKS.md.

    python -m benchmarks.record SECTION [--title T] [--md] -- COMMAND [ARGS...]

The command runs as given (its output is also shown live). On exit status 0 the text between
``<!-- BEGIN SECTION -->`` and ``<!-- END SECTION -->`` in BENCHMARKS.md is replaced (atomically) by a block holding
the exact command, the date, the machine and the command's standard output; a new section is appended when the
markers are absent. A failed command changes nothing. So every figure in BENCHMARKS.md is what a command printed,
never a number typed in by hand. ``--md`` keeps the output as Markdown (tables render); otherwise it is fenced text.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every block below was written by `python -m benchmarks.record` from the output of the command it names, on the\n"
    "machine and date it names (nothing here is typed in by hand). Re-run a block's command line to refresh it.\n"
)


def machine() -> str:
    """One line: CPU model, logical CPUs, load average, Python, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    load = " | load avg %.1f at start" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (f"{cpu} | {os.cpu_count()} logical CPUs{load} | Python {platform.python_version()} | "
            f"{platform.system()} {platform.machine()}")


def versions() -> str:
    """Installed versions of the packages whose speed or numbers the benchmarks depend on (no imports)."""
    from importlib import metadata

    out = []
    for name in ("numpy", "keras", "tensorflow-cpu", "jax", "ai-edge-litert", "onnxruntime", "opencv-python-headless"):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def block(section: str, title: str, command: list[str], output: str, *, markdown: bool, started: str,
          seconds: float, machine_line: str) -> str:
    body = output.rstrip("\n")
    if not markdown:
        fence = "```"
        while fence in body:
            fence += "`"
        body = f"{fence}text\n{body}\n{fence}"
    return (f"<!-- BEGIN {section} -->\n## {title}\n\n"
            f"- command: `{shlex.join(command)}`\n"
            f"- date: {started} ({seconds / 60:.1f} min)\n"
            f"- machine: {machine_line}\n"
            f"- packages: {versions()}\n\n"
            f"{body}\n<!-- END {section} -->")


def replace_section(text: str, section: str, new_block: str) -> str:
    """Replace the marked section (markers included) or append it; other sections are left untouched."""
    pat = re.compile(rf"<!-- BEGIN {re.escape(section)} -->.*?<!-- END {re.escape(section)} -->", re.S)
    if pat.search(text):
        return pat.sub(lambda _m: new_block, text, count=1)
    return text.rstrip("\n") + "\n\n" + new_block + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m benchmarks.record SECTION [--title T] [--md] [--file F] -- COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("section", help="section id (letters, digits, '_' and '-')")
    ap.add_argument("--title", help="heading of the section (default: the existing section's heading, else its id)")
    ap.add_argument("--md", action="store_true", help="the output is Markdown: insert it as is, not fenced")
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    args = ap.parse_args(argv[:split])
    command = argv[split + 1:]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.section):
        ap.error(f"section {args.section!r}: use letters, digits, '_' and '-' only")
    if not command:
        ap.error("no command after --")

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine_line = machine()  # before the command: the load average should be the one it started under
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    rc = proc.wait()
    seconds = time.perf_counter() - t0
    if rc != 0:
        print(f"record: {shlex.join(command)} exited {rc}: {args.file} left unchanged", file=sys.stderr)
        return rc
    from edge_boneage.fileutil import write_text_atomic

    old = args.file.read_text() if args.file.exists() else HEADER
    m = re.search(rf"<!-- BEGIN {re.escape(args.section)} -->\n## (.*)\n", old)
    title = args.title or (m.group(1) if m else args.section)
    new = block(args.section, title, command, "".join(lines), markdown=args.md,
                started=started, seconds=seconds, machine_line=machine_line)
    write_text_atomic(args.file, replace_section(old, args.section, new))
    print(f"record: section {args.section!r} of {args.file} updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
