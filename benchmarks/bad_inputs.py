"""Make every kind of bad image file and bad CSV row, read each and print markdown tables "input | error line".

    .venv/bin/python -m benchmarks.bad_inputs            # table to stdout
    .venv/bin/python -m benchmarks.bad_inputs --keep DIR # also keep the generated files in DIR

Each row must be a one-line EdgeBoneageError that names the file; any other exception (a traceback)
or a file that reads without error is reported as FAIL and makes the script exit 1.
`make_bad_inputs` is also used by tests/test_io.py, so the table and the tests cover the same files.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims width x height (8-bit grey) but whose IDAT holds 1 row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * min(width, 64))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _hand_like(h: int = 64, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = 40 + 150 * np.exp(-(((x - w / 2) / (w / 4)) ** 2 + ((y - h / 2) / (h / 3)) ** 2))
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def dicom_dataset(pixels: np.ndarray, transfer_syntax=None, **elements):
    """A minimal single-frame greyscale DICOM dataset (Secondary Capture) holding `pixels` (uint8 or uint16)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientID = "TEST"
    pixels = np.asarray(pixels)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = pixels.tobytes()
    for key, value in elements.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def write_dicom(path: Path, ds) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def make_bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """Write each bad input into `folder`. Returns {label: (path, phrase the error line must contain)}."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000, JPEGLSLossless

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    good = _hand_like()

    out["missing file"] = (folder / "does_not_exist.png", "file not found")

    p = folder / "empty.png"
    p.write_bytes(b"")
    out["0-byte file"] = (p, "empty file")

    p = folder / "notes.txt"
    p.write_text("id,boneage,male\n1,12,True\n")
    out["text file (.txt)"] = (p, "not an image")

    p = folder / "text_named.png"
    p.write_text("this is not a PNG, just text with a .png name\n")
    out["text file named .png"] = (p, "not an image")

    p = folder / "folder.png"
    p.mkdir(exist_ok=True)
    out["a directory"] = (p, "is a directory")

    buf = io.BytesIO()
    Image.fromarray(_hand_like(256, 200)).save(buf, format="PNG")
    data = buf.getvalue()
    p = folder / "truncated.png"
    p.write_bytes(data[: len(data) // 2])
    out["truncated PNG (half)"] = (p, "truncated")

    p = folder / "header_only.png"
    p.write_bytes(data[:20])
    out["PNG cut inside IHDR"] = (p, "truncated")

    buf = io.BytesIO()
    Image.fromarray(_hand_like(256, 200)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    p = folder / "truncated.jpg"
    p.write_bytes(data[: len(data) // 2])
    out["truncated JPEG (half)"] = (p, "truncated")

    p = folder / "bomb.png"
    p.write_bytes(png_bytes_claiming(30_000, 30_000))
    out["PNG header claiming 30000x30000"] = (p, "refusing to decode")

    p = folder / "too_wide.png"
    p.write_bytes(png_bytes_claiming(25_000, 10))
    out["PNG header claiming 25000x10"] = (p, "refusing to decode")

    p = folder / "animated.png"
    frames = [Image.fromarray(good), Image.fromarray(255 - good)]
    frames[0].save(p, format="PNG", save_all=True, append_images=frames[1:])
    out["animated PNG (2 frames)"] = (p, "frames")

    p = folder / "stack.tif"
    frames[0].save(p, format="TIFF", save_all=True, append_images=frames[1:])
    out["multi-page TIFF (2 pages)"] = (p, "frames")

    ds = dicom_dataset(np.stack([good, good]), NumberOfFrames=2)
    out["DICOM multi-frame volume"] = (write_dicom(folder / "volume.dcm", ds), "frames")

    ds = dicom_dataset(good)
    del ds.PixelData
    out["DICOM without pixel data"] = (write_dicom(folder / "no_pixels.dcm", ds), "no pixel data")

    # Compressed transfer syntaxes need encapsulated pixel data; the "frame" here is raw pixels, not a codestream.
    ds = dicom_dataset(good, transfer_syntax=JPEG2000)
    ds.PixelData = encapsulate([good.tobytes()])
    out["DICOM JPEG 2000 UID, raw bytes"] = (write_dicom(folder / "j2k_raw.dcm", ds), "JPEG 2000")

    ds = dicom_dataset(good, transfer_syntax=JPEGLSLossless)
    ds.PixelData = encapsulate([good.tobytes()])
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:  # the [dicom] extra: the decoder runs and refuses the bytes
        out["DICOM JPEG-LS UID, raw bytes"] = (write_dicom(folder / "jpegls.dcm", ds), "cannot decode DICOM pixel data")
    else:
        out["DICOM JPEG-LS (no decoder)"] = (write_dicom(folder / "jpegls.dcm", ds), "unsupported DICOM transfer syntax")

    ds = dicom_dataset(good)
    ds.PixelData = good.tobytes()[: good.size // 3]
    out["DICOM truncated pixel data"] = (write_dicom(folder / "short_pixels.dcm", ds), "cannot decode")

    ds = dicom_dataset(good, Rows=40_000, Columns=40_000)
    out["DICOM header claiming 40000x40000"] = (write_dicom(folder / "bomb.dcm", ds), "refusing to decode")

    p = folder / "garbage.dcm"
    p.write_bytes(b"\x00\x01\x02 definitely not DICOM " * 4)
    out["garbage named .dcm"] = (p, "")
    return out


def run(folder: Path) -> tuple[list[tuple[str, str, bool]], bool]:
    from edge_boneage import EdgeBoneageError
    from edge_boneage.io import read_image

    rows, all_ok = [], True
    for label, (path, phrase) in make_bad_inputs(folder).items():
        try:
            read_image(path)
            line, ok = "FAIL: read without error", False
        except EdgeBoneageError as exc:
            line = str(exc)
            ok = "\n" not in line and str(path) in line and phrase.lower() in line.lower()
        except Exception as exc:  # a crash: exactly what this script exists to catch
            line, ok = f"FAIL: {type(exc).__name__}: {exc}", False
        rows.append((label, line.replace(str(folder) + "/", ""), ok))
        all_ok &= ok
    return rows, all_ok


BAD_CSV_ROWS = [  # (what is wrong, generic CSV data row, phrase the error must contain)
    ("good row (control)", "ok.png,120,M", None),
    ("image file missing", "missing.png,120,F", "image not found"),
    ("duplicate id", "ok.png,121,M", "duplicate id"),
    ("non-numeric age", "ok2.png,ten,M", "not a number"),
    ("age empty", "ok3.png,,F", "bone age is empty"),
    ("age outside 0-240 months", "ok4.png,300,F", "outside 0-240"),
    ("negative age", "ok5.png,-3,M", "outside 0-240"),
    ("age NaN", "ok6.png,nan,M", "not a finite number"),
    ("sex not M/F/True/False", "ok7.png,120,X", "not one of M/F"),
    ("sex missing (generic CSV: a warning, row kept)", "ok8.png,120,", "sex is missing"),
    ("path empty", ",120,M", "path is empty"),
    ("more fields than the header", "ok9.png,120,M,extra", "more field(s)"),
]


def run_csv(folder: Path) -> tuple[list[tuple[str, str, bool]], bool]:
    """Write a generic CSV holding BAD_CSV_ROWS (one image per row where the row needs one), load it with
    strict=False and pair each row with the problem reported for its 1-based data row."""
    from edge_boneage.datasets import load_csv

    folder.mkdir(parents=True, exist_ok=True)
    for i in ["", *range(2, 10)]:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"ok{i}.png")
    csv_path = folder / "labels.csv"
    csv_path.write_text("path,boneage_months,sex\n" + "".join(r + "\n" for _, r, _ in BAD_CSV_ROWS))
    res = load_csv(csv_path, strict=False)
    by_row: dict[int, list[str]] = {}
    for p in res.problems:
        by_row.setdefault(p.row, []).append(str(p).replace(str(folder) + "/", ""))
    out, all_ok = [], True
    for i, (label, row, phrase) in enumerate(BAD_CSV_ROWS, start=1):
        found = by_row.get(i, [])
        if phrase is None:
            ok, line = not found and any(s.id == "ok.png" for s in res.samples), "(accepted)"
        else:
            line = " / ".join(found) or "FAIL: no problem reported"
            ok = len(found) == 1 and phrase.lower() in found[0].lower() and f"data row {i}" in found[0]
        out.append((f"{label}: `{row}`", line, ok))
        all_ok &= ok
    return out, all_ok


def _print_table(head: str, rows) -> None:
    print(f"| {head} | error line |")
    print("|---|---|")
    for label, line, good in rows:
        mark = "" if good else " **(FAIL)**"
        print(f"| {label} | `{line.replace('|', '/')}`{mark} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="write the bad files here (kept) instead of a temporary folder")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        rows, ok = run(folder)
        csv_rows, csv_ok = run_csv(folder / "csv")
    _print_table("image file", rows)
    print("\nRows of a generic CSV (`path,boneage_months,sex`), loaded with `load_csv(strict=False)` (the `data check`"
          " path; strict loading raises the first error with a count of the rest):\n")
    _print_table("CSV row", csv_rows)
    return 0 if ok and csv_ok else 1


if __name__ == "__main__":
    sys.exit(main())
