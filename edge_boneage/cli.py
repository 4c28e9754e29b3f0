"""`edge-boneage` command line: a thin dispatcher over the verbs in `edge_boneage.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from edge_boneage import EdgeBoneageError, __version__
from edge_boneage import commands as _commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-boneage",
        description="Bone-age assessment from hand radiographs: data, training, LiteRT export, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"edge-boneage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def _quiet_native_logs() -> None:
    """TensorFlow/LiteRT's C++ INFO lines drown the CLI's own output; users can still override these."""
    for key, value in (("TF_CPP_MIN_LOG_LEVEL", "2"), ("GLOG_minloglevel", "2"), ("ABSL_MIN_LOG_LEVEL", "2")):
        os.environ.setdefault(key, value)


def describe_os_error(exc: OSError) -> str:
    """One line naming the path and the problem (no traceback): '<path>: No space left on device'."""
    import errno

    what = exc.strerror or str(exc)
    hint = {errno.ENOSPC: " (disk full)", errno.EROFS: " (read-only file system)", errno.EACCES: " (permission)",
            errno.ENOTDIR: " (a part of the path is a file, not a folder)"}.get(exc.errno, "")
    if exc.errno == errno.EEXIST and exc.filename and os.path.isfile(exc.filename):
        hint = " (a file, not a folder)"
    paths = [p for p in (exc.filename, getattr(exc, "filename2", None)) if p]
    where = " -> ".join(str(p) for p in paths) if paths else "(no path)"
    return " ".join(f"{where}: {what}{hint}".split())


def main(argv: list[str] | None = None) -> int:
    _quiet_native_logs()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except EdgeBoneageError as exc:
        print(f"edge-boneage {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edge-boneage {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment (disk full, read-only or missing folder, not a directory, permissions)
        print(f"edge-boneage {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
