"""Labelled radiograph lists: loaders with row-level validation and a deterministic stratified split.

Three CSV formats (column names are matched case-insensitively, surrounding spaces ignored, a UTF-8 BOM is fine):

* RSNA training   ``id,boneage,male`` (+ any extra columns, kept in ``Sample.extra``); image ``{image_dir}/{id}.png``;
  ``male`` is True/False (also 1/0, M/F).
* RSNA test       ``Case ID,Sex,Ground truth bone age (months)``; image ``{image_dir}/{Case ID}.png``; Sex M/F.
* generic         ``path,boneage_months,sex`` (+ optional ``id``); ``path`` relative to the CSV's folder (or absolute);
  ``sex`` may be empty (-> ``male=None``, reported as a warning: the models accept sex as optional).

Accepted sex values (case-insensitive): M, MALE, TRUE, T, 1 -> male; F, FEMALE, FALSE, 0 -> female.
Ages must be finite numbers in [0, 240] months.

Row numbers in messages are **1-based data rows** (the header is not counted; data row 1 is the first row
after the header) followed by the file line in brackets, e.g. ``labels.csv data row 3 (line 4): ...``.

Policy: every row is checked and all problems are collected. ``strict=True`` (the default) raises one
:class:`EdgeBoneageError` with the first error line and the number of further errors; ``strict=False``
returns the valid rows together with the problems. File-level problems (missing/empty CSV, no data rows,
missing columns) always raise: there are no rows to return. Warnings (e.g. missing sex in a generic CSV)
never raise; they are in ``LoadResult.warnings``.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_boneage import EdgeBoneageError, vocab

MAX_AGE_MONTHS = 240.0
AGE_BIN_MONTHS = 12

RSNA_TRAIN_COLUMNS = ("id", "boneage", "male")
RSNA_TEST_COLUMNS = ("case id", "sex", "ground truth bone age (months)")
GENERIC_COLUMNS = ("path", "boneage_months", "sex")


@dataclass(frozen=True)
class Sample:
    """One labelled radiograph."""

    id: str
    path: Path
    boneage_months: float
    male: bool | None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    where: str | None = field(default=None, compare=False, hash=False)  # "labels.csv data row 3 (line 4)"

    @property
    def sex(self) -> str | None:
        return None if self.male is None else ("M" if self.male else "F")


@dataclass(frozen=True)
class Problem:
    """One validation finding. `row` is the 1-based data row (None for file-level findings)."""

    file: str
    row: int | None
    line: int | None
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" data row {self.row}"
            if self.line is not None:
                where += f" (line {self.line})"
        return f"{where}: {self.message}"


@dataclass
class LoadResult:
    """Valid samples plus the problems found (errors for rejected rows, warnings for accepted ones)."""

    samples: list[Sample]
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    format: str = ""
    rows_read: int = 0

    @property
    def problems(self) -> list[Problem]:
        return sorted(self.errors + self.warnings, key=lambda p: (p.row or 0, p.severity))

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


# 'M'/'F'/'True'/'False'/'1'/'0'/'male'/'female' (any case) -> True/False; empty -> None; else ValueError
parse_sex = vocab.parse_sex


def parse_age(value: str | None) -> float:
    v = "" if value is None else str(value).strip()
    if v == "":
        raise ValueError("bone age is empty")
    try:
        age = float(v)
    except ValueError:
        raise ValueError(f"bone age {value!r} is not a number") from None
    if not math.isfinite(age):
        raise ValueError(f"bone age {value!r} is not a finite number")
    if age < 0 or age > MAX_AGE_MONTHS:
        raise ValueError(f"bone age {age:g} months is outside 0-{MAX_AGE_MONTHS:g} months")
    return age


def _read_rows(csv_path: Path) -> tuple[dict[str, str], list[tuple[int, int, dict[str, str]]]]:
    """Return ({normalised column name: original name}, [(data_row, line, {original name: value})])."""
    if not csv_path.exists():
        raise EdgeBoneageError(f"{csv_path}: file not found")
    if csv_path.is_dir():
        raise EdgeBoneageError(f"{csv_path}: is a directory, not a CSV file")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EdgeBoneageError(f"{csv_path}: not a UTF-8 text CSV ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise EdgeBoneageError(f"{csv_path}: cannot read ({exc.strerror or exc})") from None
    if not text.strip():
        raise EdgeBoneageError(f"{csv_path}: empty file (no header, no rows)")
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise EdgeBoneageError(f"{csv_path}: cannot parse the header ({exc})") from None
    names = [h.strip() for h in header]
    columns: dict[str, str] = {}
    for n in names:
        key = n.lower()
        if key in columns and key:
            raise EdgeBoneageError(f"{csv_path}: column {n!r} appears twice in the header")
        columns[key] = n
    rows = []
    data_row = 0
    try:
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue  # blank lines are not rows
            data_row += 1
            rec = {names[i]: (values[i].strip() if i < len(values) else "") for i in range(len(names))}
            if len(values) > len(names):
                rec["\0extra_fields"] = str(len(values) - len(names))
            rows.append((data_row, reader.line_num, rec))
    except csv.Error as exc:
        raise EdgeBoneageError(f"{csv_path} line {reader.line_num}: cannot parse CSV ({exc})") from None
    if not rows:
        raise EdgeBoneageError(f"{csv_path}: no data rows (only a header)")
    return columns, rows


def _require(csv_path: Path, columns: dict[str, str], needed: Sequence[str], fmt: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        have = ", ".join(columns.values()) or "(none)"
        raise EdgeBoneageError(
            f"{csv_path}: missing column(s) {', '.join(missing)} for the {fmt} format (header has: {have})"
        )


def detect_format(columns: Iterable[str]) -> str:
    cols = {c.strip().lower() for c in columns}
    if set(RSNA_TRAIN_COLUMNS) <= cols:
        return "rsna-train"
    if set(RSNA_TEST_COLUMNS) <= cols or "case id" in cols:
        return "rsna-test"
    if "path" in cols:
        return "generic"
    if "id" in cols and "boneage" in cols:
        return "rsna-train"
    raise ValueError(
        "cannot tell the CSV format from its header: expected id,boneage,male (RSNA training), "
        "Case ID,Sex,Ground truth bone age (months) (RSNA test) or path,boneage_months,sex (generic)"
    )


def _finish(csv_path: Path, result: LoadResult, strict: bool) -> LoadResult:
    if strict and result.errors:
        first = result.errors[0]
        more = len(result.errors) - 1
        tail = f" (and {more} more error{'s' if more != 1 else ''}; use strict=False or `edge-boneage data check` to list all)" if more else ""
        raise EdgeBoneageError(f"{first}{tail}")
    return result


def _load(
    csv_path: Path,
    fmt: str,
    image_dir: Path | None,
    strict: bool,
    check_files: bool,
) -> LoadResult:
    columns, rows = _read_rows(csv_path)
    if fmt == "rsna-train":
        _require(csv_path, columns, RSNA_TRAIN_COLUMNS, "RSNA training (id,boneage,male)")
        k_id, k_age, k_sex = (columns[c] for c in RSNA_TRAIN_COLUMNS)
        k_path = None
    elif fmt == "rsna-test":
        _require(csv_path, columns, RSNA_TEST_COLUMNS, "RSNA test (Case ID,Sex,Ground truth bone age (months))")
        k_id, k_sex, k_age = (columns[c] for c in RSNA_TEST_COLUMNS)
        k_path = None
    elif fmt == "generic":
        _require(csv_path, columns, GENERIC_COLUMNS, "generic (path,boneage_months,sex)")
        k_path, k_age, k_sex = (columns[c] for c in GENERIC_COLUMNS)
        k_id = columns.get("id")
    else:
        raise ValueError(f"unknown CSV format {fmt!r}")
    used = {k for k in (k_id, k_age, k_sex, k_path) if k}
    base = csv_path.parent
    image_dir = Path(image_dir) if image_dir is not None else base
    if k_path is None and check_files and not image_dir.is_dir():
        raise EdgeBoneageError(f"{image_dir}: image folder not found (for {csv_path})")

    name = str(csv_path)
    result = LoadResult(samples=[], format=fmt, rows_read=len(rows))
    seen: dict[str, int] = {}
    for data_row, line, rec in rows:
        errs: list[str] = []
        if "\0extra_fields" in rec:
            errs.append(f"{rec.pop(chr(0) + 'extra_fields')} more field(s) than the header has columns")
        # identity and path
        if k_path is not None:
            raw_path = rec.get(k_path, "")
            if not raw_path:
                errs.append("path is empty")
                path = None
            else:
                p = Path(raw_path)
                path = p if p.is_absolute() else base / p
            sid = (rec.get(k_id) or "") if k_id else ""
            sid = sid or raw_path
        else:
            sid = rec.get(k_id, "")
            path = image_dir / f"{sid}.png" if sid else None
            if not sid:
                errs.append("id is empty")
            elif any(c in sid for c in "/\\") or sid in (".", ".."):
                errs.append(f"id {sid!r} contains a path separator")
                path = None
        if sid:
            if sid in seen:
                errs.append(f"duplicate id {sid!r} (first at data row {seen[sid]})")
            else:
                seen[sid] = data_row
        # label
        age = None
        try:
            age = parse_age(rec.get(k_age))
        except ValueError as exc:
            errs.append(str(exc))
        male = None
        sex_raw = rec.get(k_sex, "")
        try:
            male = parse_sex(sex_raw)
            if male is None:
                if fmt == "generic":
                    result.warnings.append(Problem(name, data_row, line, "sex is missing (kept as unknown)", "warning"))
                else:
                    errs.append("sex is empty")
        except ValueError as exc:
            errs.append(str(exc))
        # file
        if path is not None and check_files and not path.is_file():
            errs.append(f"image not found: {path}")
        if errs:
            result.errors.extend(Problem(name, data_row, line, e) for e in errs)
            continue
        extra = {k: v for k, v in rec.items() if k not in used}
        result.samples.append(Sample(id=sid, path=path, boneage_months=age, male=male, extra=extra,
                                     where=f"{name} data row {data_row} (line {line})"))
    return _finish(csv_path, result, strict)


def load_rsna_csv(
    csv_path: str | os.PathLike, image_dir: str | os.PathLike, *, strict: bool = True, check_files: bool = True
) -> LoadResult:
    """RSNA training format `id,boneage,male` (extra columns such as rsna_split kept in Sample.extra)."""
    return _load(Path(csv_path), "rsna-train", Path(image_dir), strict, check_files)


def load_rsna_test_csv(
    csv_path: str | os.PathLike, image_dir: str | os.PathLike, *, strict: bool = True, check_files: bool = True
) -> LoadResult:
    """RSNA test format `Case ID,Sex,Ground truth bone age (months)`, images `{Case ID}.png`."""
    return _load(Path(csv_path), "rsna-test", Path(image_dir), strict, check_files)


def load_generic_csv(csv_path: str | os.PathLike, *, strict: bool = True, check_files: bool = True) -> LoadResult:
    """Generic format `path,boneage_months,sex` with paths relative to the CSV's folder."""
    return _load(Path(csv_path), "generic", None, strict, check_files)


def load_csv(
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    *,
    strict: bool = True,
    check_files: bool = True,
) -> LoadResult:
    """Detect the format from the header and load. For the RSNA formats `image_dir` defaults to the CSV's folder."""
    csv_path = Path(csv_path)
    columns, _ = _read_rows(csv_path)
    try:
        fmt = detect_format(columns)
    except ValueError as exc:
        raise EdgeBoneageError(f"{csv_path}: {exc}") from None
    return _load(csv_path, fmt, Path(image_dir) if image_dir is not None else None, strict, check_files)


def load_rsna_dir(rsna_dir: str | os.PathLike, *, strict: bool = True, check_files: bool = True) -> dict[str, LoadResult]:
    """The shared RSNA folder: {'img100': labels.csv + img100/, 'fullres': fullres.csv + fullres/} (those present)."""
    d = Path(rsna_dir)
    out = {}
    for name, csv_name in (("img100", "labels.csv"), ("fullres", "fullres.csv")):
        if (d / csv_name).is_file():
            out[name] = load_rsna_csv(d / csv_name, d / name, strict=strict, check_files=check_files)
    if not out:
        raise EdgeBoneageError(f"{d}: no labels.csv or fullres.csv found (expected the RSNA data folder)")
    return out


# --------------------------------------------------------------------------------------------- split


def age_bin(age_months: float) -> int:
    """12-month age band index 0..19 (240 months falls in the last band)."""
    return min(int(age_months // AGE_BIN_MONTHS), int(MAX_AGE_MONTHS // AGE_BIN_MONTHS) - 1)


def _natural_key(s: str):
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def stratified_split(
    samples: Sequence[Sample],
    fractions: Sequence[float] | None = None,
    *,
    val_fraction: float | None = None,
    seed: int = 0,
) -> tuple[list[Sample], ...]:
    """Deterministic split stratified by (12-month age band, sex).

    `fractions` (default (0.8, 0.1, 0.1)) gives one list per fraction; `val_fraction=v` is shorthand for
    fractions (1 - v, v). Algorithm (same result on every run, platform and Python version):
      1. sort samples by id (numeric ids numerically, then others as strings);
      2. group into strata (age_bin, sex) and order the strata by key;
      3. shuffle inside each stratum with numpy.random.Generator(PCG64(seed)).permutation, strata in order;
      4. walk the concatenated order and give each sample to the split with the largest deficit
         fraction_k * (i + 1) - count_k (ties -> earlier split): every split's size is within 1 of its
         exact share overall and each stratum is spread proportionally.
    Each returned list is sorted by id. Sample ids must be unique.
    """
    if val_fraction is not None:
        if fractions is not None:
            raise ValueError("give either fractions or val_fraction, not both")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        fractions = (1.0 - val_fraction, val_fraction)
    if fractions is None:
        fractions = (0.8, 0.1, 0.1)
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or len(fr) < 1 or (fr < 0).any() or not math.isclose(float(fr.sum()), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {tuple(fractions)}")
    ids = [s.id for s in samples]
    dup = [i for i, c in Counter(ids).items() if c > 1]
    if dup:
        raise ValueError(f"stratified_split: duplicate sample ids, e.g. {dup[0]!r}")
    ordered = sorted(samples, key=lambda s: _natural_key(str(s.id)))
    strata: dict[tuple[int, int], list[Sample]] = {}
    for s in ordered:
        sex_code = 2 if s.male is None else int(bool(s.male))
        strata.setdefault((age_bin(s.boneage_months), sex_code), []).append(s)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    walk: list[Sample] = []
    for key in sorted(strata):
        group = strata[key]
        perm = rng.permutation(len(group))
        walk.extend(group[i] for i in perm)
    counts = np.zeros(len(fr), dtype=np.int64)
    splits: list[list[Sample]] = [[] for _ in fr]
    for i, s in enumerate(walk):
        k = int(np.argmax(fr * (i + 1) - counts))
        counts[k] += 1
        splits[k].append(s)
    return tuple(sorted(part, key=lambda s: _natural_key(str(s.id))) for part in splits)


# --------------------------------------------------------------------------------------------- summary


AGE_BANDS_MONTHS = tuple(range(0, 241, 24))  # 0-2 y, 2-4 y, ..., 18-20 y


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts, age range/mean/std, sex split and a 24-month age-band histogram."""
    ages = np.array([s.boneage_months for s in samples], dtype=np.float64)
    n = len(samples)
    males = sum(1 for s in samples if s.male is True)
    females = sum(1 for s in samples if s.male is False)
    bands = []
    for lo, hi in zip(AGE_BANDS_MONTHS[:-1], AGE_BANDS_MONTHS[1:]):
        last = hi == AGE_BANDS_MONTHS[-1]
        count = int(((ages >= lo) & ((ages <= hi) if last else (ages < hi))).sum()) if n else 0
        bands.append({"from_months": lo, "to_months": hi, "count": count})
    return {
        "count": n,
        "age_min": float(ages.min()) if n else None,
        "age_max": float(ages.max()) if n else None,
        "age_mean": float(ages.mean()) if n else None,
        "age_std": float(ages.std()) if n else None,
        "male": males,
        "female": females,
        "sex_unknown": n - males - females,
        "age_bands": bands,
    }


__all__ = [
    "AGE_BIN_MONTHS",
    "LoadResult",
    "Problem",
    "Sample",
    "age_bin",
    "detect_format",
    "load_csv",
    "load_generic_csv",
    "load_rsna_csv",
    "load_rsna_dir",
    "load_rsna_test_csv",
    "parse_age",
    "parse_sex",
    "stratified_split",
    "summarize",
]
