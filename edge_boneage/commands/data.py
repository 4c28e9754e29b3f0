"""`edge-boneage data summary|check`: describe and validate labelled radiograph lists (no TensorFlow)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from edge_boneage import EdgeBoneageError


def _add_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rsna", type=Path, metavar="DIR", help="RSNA data folder (labels.csv + img100/, fullres.csv + fullres/)")
    p.add_argument("--csv", type=Path, metavar="F", help="a labels CSV (RSNA training, RSNA test or generic format)")
    p.add_argument("--images", type=Path, metavar="DIR", help="image folder for --csv in an RSNA format (default: the CSV's folder)")
    p.add_argument("--no-file-check", action="store_true", help="do not check that every image file exists")


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="summarise or validate labelled image lists (CSV + images)")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    s = sub.add_parser("summary", help="counts, age range/mean, sex split, age-band histogram")
    _add_sources(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=_summary)
    c = sub.add_parser(
        "check",
        help="validate every row and decode every image (--decode N: a sample); exit 1 if any error",
        description="Validate every row; print each problem with its 1-based data row. Exit 1 if any error "
        "(warnings, e.g. missing sex in a generic CSV, are printed but do not fail the check).",
    )
    _add_sources(c)
    c.add_argument("--decode", type=int, default=-1, metavar="N",
                   help="decode every image with read_image (default), or only N randomly chosen ones per list")
    c.add_argument("--seed", type=int, default=0, help="seed for choosing the images to decode")
    c.add_argument("--limit", type=int, default=200, help="print at most this many problems per list (default 200)")
    c.set_defaults(func=_check)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _load_all(args, strict: bool):
    from edge_boneage.datasets import load_csv, load_rsna_dir

    if not args.rsna and not args.csv:
        raise EdgeBoneageError("give --rsna DIR and/or --csv F")
    check = not args.no_file_check
    out = {}
    if args.rsna:
        for name, res in load_rsna_dir(args.rsna, strict=strict, check_files=check).items():
            out[f"{args.rsna}/{name}"] = res
    if args.csv:
        out[str(args.csv)] = load_csv(args.csv, args.images, strict=strict, check_files=check)
    return out


def _summary(args) -> int:
    from edge_boneage.datasets import summarize

    results = _load_all(args, strict=False)
    report = {}
    for name, res in results.items():
        summ = summarize(res.samples)
        summ.update(format=res.format, rows=res.rows_read, rejected_rows=len({p.row for p in res.errors}),
                    warnings=len(res.warnings))
        report[name] = summ
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, s in report.items():
        print(f"== {name}  ({s['format']})")
        print(f"rows {s['rows']}, usable {s['count']}, rejected {s['rejected_rows']} (run `data check` for details), "
              f"warnings {s['warnings']}")
        if s["count"]:
            print(f"bone age {s['age_min']:g}-{s['age_max']:g} months, mean {s['age_mean']:.1f}, sd {s['age_std']:.1f}")
            n = s["count"]
            print(f"sex: male {s['male']} ({100 * s['male'] / n:.1f} %), female {s['female']} "
                  f"({100 * s['female'] / n:.1f} %), unknown {s['sex_unknown']}")
            top = max(b["count"] for b in s["age_bands"]) or 1
            for b in s["age_bands"]:
                bar = "#" * round(40 * b["count"] / top)
                lo, hi = b["from_months"] // 12, b["to_months"] // 12
                print(f"  {lo:2d}-{hi:2d} y {b['count']:6d} {bar}")
        print()
    return 0


def _check(args) -> int:
    from edge_boneage.datasets import Problem
    from edge_boneage.io import read_image

    results = _load_all(args, strict=False)
    n_err = n_warn = 0
    for name, res in results.items():
        problems = list(res.errors) + list(res.warnings)
        samples = list(res.samples)
        k = len(samples) if args.decode < 0 else min(args.decode, len(samples))
        for s in random.Random(args.seed).sample(samples, k) if k else []:
            try:
                read_image(s.path)
            except EdgeBoneageError as exc:
                problems.append(Problem(name, None, None, f"id {s.id}: {exc}"))
        errors = [p for p in problems if p.severity == "error"]
        warns = [p for p in problems if p.severity != "error"]
        n_err += len(errors)
        n_warn += len(warns)
        status = "OK" if not errors else "FAILED"
        print(f"{name} ({res.format}): {res.rows_read} rows, {len(samples)} valid, "
              f"{len(errors)} error(s), {len(warns)} warning(s), "
              f"{'all ' + str(k) if k == len(samples) else f'a random sample of {k} of {len(samples)}'} image(s) "
              f"decoded: {status}")
        shown = sorted(problems, key=lambda p: (p.row or 0, p.severity))
        for p in shown[: args.limit]:
            print(f"  {p.severity}: {p}")
        if len(shown) > args.limit:
            print(f"  ... and {len(shown) - args.limit} more")
    print(f"total: {n_err} error(s), {n_warn} warning(s) (data rows are 1-based, header not counted)")
    return 1 if n_err else 0
