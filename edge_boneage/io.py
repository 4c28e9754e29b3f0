"""Read one radiograph (PNG, JPEG or DICOM) as an 8-bit greyscale array, with metadata.

This module runs on edge boxes: it imports only numpy, Pillow and (lazily, for DICOM) pydicom.
No TensorFlow, no Keras, no OpenCV import here.

`read_image(path) -> (img, meta)`:

* `img` is a C-contiguous `uint8` array of shape (H, W): 0 = black, 255 = white, "bone is bright"
  (DICOM MONOCHROME1 is inverted so that it matches MONOCHROME2 / ordinary PNGs).
* `meta` is an :class:`ImageMeta` describing where the pixels came from and what was done to them.

Intensity rules (see docs/PREPROCESSING.md, section "Reading images"):

* 8-bit grey PNG/JPEG: used as is.
* Palette ('P') PNG: palette looked up; a grey palette (R == G == B) gives R exactly; any transparency is ignored.
* RGB / RGBA (PNG, JPEG): ITU-R BT.601 luma in 16-bit fixed point,
  ``grey = (19595*R + 38470*G + 7471*B + 32768) >> 16`` (the formula Pillow uses); alpha is dropped.
* 16-bit grey PNG (and DICOM without a VOI window/LUT): full-range min-max scaling,
  ``grey = floor((v - vmin) * 255 / (vmax - vmin) + 0.5)``; a constant image becomes all 0.
  Min-max (not a fixed 65535 divisor) because 12-bit data stored in 16-bit containers is common and
  would otherwise come out nearly black; not a percentile clip, so nothing is silently saturated.
  16-bit RGB PNGs are reduced to 8 bits per channel by Pillow (the high byte) before the luma step.
* DICOM: Modality LUT (RescaleSlope/RescaleIntercept, or a Modality LUT Sequence) first; then the
  VOI transform: a VOI LUT Sequence if present, else the first WindowCenter/WindowWidth pair
  (VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID, DICOM PS3.3 C.11.2.1.2) mapped to 0..255, else min-max;
  then MONOCHROME1 is inverted (``255 - grey``). PixelSpacing (or ImagerPixelSpacing) is kept in mm.

Every problem with a file raises :class:`edge_boneage.EdgeBoneageError` whose message is one line that
starts with the file path: missing file, empty (0 bytes) file, not an image, truncated/corrupt PNG or JPEG,
absurd size (checked from the header before any pixel is decoded: > MAX_SIDE px a side or > MAX_PIXELS),
multi-frame / 3-D data, DICOM without pixel data, DICOM transfer syntax without an installed decoder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from edge_boneage import EdgeBoneageError

MAX_SIDE = 20_000
"""Largest accepted width or height in pixels (hand radiographs are at most ~4300 px a side)."""
MAX_PIXELS = 100_000_000
"""Largest accepted width*height (a 10 000 x 10 000 image); larger headers are treated as decompression bombs."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_EXTS = {".dcm", ".dicom", ".dic", ".ima"}


@dataclass(frozen=True)
class ImageMeta:
    """What `read_image` found in the file and what it did to the pixels."""

    path: str
    format: str  # "PNG", "JPEG", "DICOM", or another Pillow format name (e.g. "TIFF", "BMP")
    shape: tuple[int, ...]  # shape of the decoded source array before any conversion (H, W) or (H, W, C)
    dtype: str  # numpy dtype of the decoded source array, e.g. "uint8", "uint16", "int16"
    bit_depth: int  # bits per sample in the file (PNG IHDR bit depth, DICOM BitsStored, 8 for JPEG)
    photometric: str  # Pillow mode ("L", "P", "RGB", "I;16", ...) or DICOM PhotometricInterpretation
    pixel_spacing_mm: tuple[float, float] | None = None  # (row spacing, column spacing) in mm
    pixel_spacing_source: str | None = None  # "PixelSpacing" or "ImagerPixelSpacing" (DICOM only)
    inverted: bool = False  # True when MONOCHROME1 was inverted to "bone is bright"
    intensity: str = "none"  # "none", "palette", "luma", "minmax", "window", "voi_lut"
    window: tuple[float, float] | None = None  # (center, width) when a DICOM window was applied
    rescale: tuple[float, float] | None = None  # (slope, intercept) when a DICOM rescale was applied
    transfer_syntax: str | None = None  # DICOM transfer syntax UID
    source_range: tuple[float, float] | None = None  # (min, max) of the values that were scaled to 0..255
    patient_sex: str | None = None  # DICOM PatientSex "M" / "F" (None: absent, "O" or anything else)
    laterality: str | None = None  # DICOM ImageLaterality / Laterality "L" / "R" (None: absent)
    mirrored: bool = False  # True when a right hand (laterality R) was mirrored to look like a left hand
    chronological_age_months: float | None = None  # from PatientAge, else StudyDate - PatientBirthDate
    chronological_age_source: str | None = None  # "PatientAge" or "StudyDate-PatientBirthDate"

    @property
    def height(self) -> int:
        return int(self.shape[0])

    @property
    def width(self) -> int:
        return int(self.shape[1])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


def _fail(path: Path | str, problem: str) -> EdgeBoneageError:
    # One line, always: collapse any newline an underlying library put in its message.
    problem = " ".join(str(problem).split())
    return EdgeBoneageError(f"{path}: {problem}")


def _check_size(path: Path, width: int, height: int, what: str = "header") -> None:
    if width <= 0 or height <= 0:
        raise _fail(path, f"{what} claims an empty image ({width}x{height} px)")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise _fail(
            path,
            f"{what} claims {width}x{height} px ({width * height / 1e6:.1f} Mpx); refusing to decode "
            f"(limit {MAX_SIDE} px a side and {MAX_PIXELS // 1_000_000} Mpx; possible decompression bomb)",
        )


def _png_ihdr(head: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from a PNG's IHDR, or None when the header is too short/odd."""
    if len(head) < 29 or head[12:16] != b"IHDR":
        return None
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    return width, height, bit_depth, colour_type


def minmax_to_uint8(values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Full-range min-max scaling to 0..255 with round-half-up; a constant image gives zeros."""
    v = np.asarray(values, dtype=np.float64)
    vmin, vmax = float(v.min()), float(v.max())
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmax <= vmin:
        return np.zeros(v.shape, dtype=np.uint8), (vmin, vmax)
    out = np.floor((v - vmin) * (255.0 / (vmax - vmin)) + 0.5)
    return np.clip(out, 0, 255).astype(np.uint8), (vmin, vmax)


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in 16-bit fixed point (Pillow's formula): (19595 R + 38470 G + 7471 B + 32768) >> 16."""
    c = rgb.astype(np.uint32)
    return ((19595 * c[..., 0] + 38470 * c[..., 1] + 7471 * c[..., 2] + 32768) >> 16).astype(np.uint8)


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read a PNG, JPEG or DICOM radiograph as (uint8 HxW grey array, ImageMeta). See the module docstring."""
    path = Path(path)
    try:
        if not path.exists():
            raise _fail(path, "file not found")
        if path.is_dir():
            raise _fail(path, "is a directory, not an image file")
        size = path.stat().st_size
        if size == 0:
            raise _fail(path, "empty file (0 bytes)")
        with open(path, "rb") as fh:
            head = fh.read(132)
    except PermissionError:
        raise _fail(path, "permission denied") from None
    except OSError as exc:
        if isinstance(exc, EdgeBoneageError):
            raise
        raise _fail(path, f"cannot read file: {exc.strerror or exc}") from None

    if head[128:132] == b"DICM":
        return _read_dicom(path, force=False)
    if head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC):
        return _read_raster(path, head)
    if path.suffix.lower() in _DICOM_EXTS:
        # DICOM written without the 128-byte preamble ("DICM" missing): try a forced parse.
        return _read_dicom(path, force=True)
    return _read_raster(path, head)


# --------------------------------------------------------------------------------------------- PNG / JPEG


def _read_raster(path: Path, head: bytes) -> tuple[np.ndarray, ImageMeta]:
    is_png = head.startswith(_PNG_MAGIC)
    is_jpeg = head.startswith(_JPEG_MAGIC)
    kind = "PNG" if is_png else "JPEG" if is_jpeg else "image"
    png_bits = None
    if is_png:
        ihdr = _png_ihdr(head)
        if ihdr is None:
            raise _fail(path, "truncated or corrupt PNG (no valid IHDR header)")
        _check_size(path, ihdr[0], ihdr[1], "PNG header")
        png_bits = ihdr[2]

    # Never decode a truncated file into a half-grey image (a process-wide Pillow flag someone may have set).
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise _fail(path, "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to read possibly truncated images")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning (we apply our own limits) and palette notes
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise _fail(path, f"{kind} header claims an absurd size; refusing to decode ({exc})") from None
    except UnidentifiedImageError:
        if is_png or is_jpeg:
            raise _fail(path, f"truncated or corrupt {kind} (header unreadable)") from None
        raise _fail(path, "not an image file (unrecognised format; expected PNG, JPEG or DICOM)") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise _fail(path, f"truncated or corrupt {kind} ({exc})") from None

    with im:
        fmt = im.format or kind
        width, height = im.size
        _check_size(path, width, height, f"{fmt} header")
        n_frames = getattr(im, "n_frames", 1)
        if n_frames > 1:
            raise _fail(path, f"{fmt} has {n_frames} frames; only single 2-D images are supported (no volumes/animations)")
        mode = im.mode
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
            raise _fail(path, f"truncated or corrupt {fmt} ({exc})") from None
        except Image.DecompressionBombError as exc:  # pragma: no cover - caught at open already
            raise _fail(path, f"absurd size ({exc})") from None

        if mode == "P":
            arr_src = np.asarray(im)
            palette = np.array(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
            if palette.size == 0:
                raise _fail(path, "palette image without a palette")
            lut = np.zeros((256, 3), dtype=np.uint8)
            lut[: len(palette)] = palette[:256]
            rgb = lut[arr_src]
            grey_palette = bool(np.all(lut[:, 0] == lut[:, 1]) and np.all(lut[:, 1] == lut[:, 2]))
            img = rgb[..., 0].copy() if grey_palette else rgb_to_grey(rgb)
            intensity = "palette"
            src_shape, src_dtype = arr_src.shape, arr_src.dtype
            bits = png_bits or 8
            source_range = None
        else:
            if mode in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F"):
                conv = im
            elif mode in ("PA",):
                conv = im.convert("RGBA")
            else:  # CMYK, YCbCr, LAB, HSV, ...: let Pillow produce RGB first
                conv = im.convert("RGB")
            arr_src = np.asarray(conv)
            src_shape, src_dtype = arr_src.shape, arr_src.dtype
            source_range = None
            if arr_src.ndim == 3:
                if arr_src.shape[2] in (3, 4):
                    img = rgb_to_grey(arr_src[..., :3])
                    intensity = "luma"
                else:  # LA: grey + alpha
                    img = arr_src[..., 0].astype(np.uint8)
                    intensity = "none"
            elif arr_src.dtype == np.bool_:
                img = arr_src.astype(np.uint8) * 255
                intensity = "minmax"
            elif arr_src.dtype == np.uint8:
                img = arr_src
                intensity = "none"
            else:
                img, source_range = minmax_to_uint8(arr_src)
                intensity = "minmax"
            bits = png_bits or (16 if arr_src.dtype == np.uint16 else 8 * arr_src.dtype.itemsize)
    return np.ascontiguousarray(img, dtype=np.uint8), ImageMeta(
        path=str(path),
        format=fmt,
        shape=tuple(int(s) for s in src_shape),
        dtype=str(src_dtype),
        bit_depth=int(bits),
        photometric=mode,
        intensity=intensity,
        source_range=source_range,
    )


# --------------------------------------------------------------------------------------------- DICOM


def _dicom_float_list(value) -> list[float]:
    if value is None:
        return []
    try:
        if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
            return [float(v) for v in value]
        return [float(value)]
    except (TypeError, ValueError):
        return []


def window_to_uint8(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) mapped to output range 0..255, rounded half up."""
    x = np.asarray(values, dtype=np.float64)
    function = (function or "LINEAR").strip().upper()
    ymax = 255.0
    if function == "SIGMOID":
        y = ymax / (1.0 + np.exp(np.clip(-4.0 * (x - center) / width, -700, 700)))
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError("window width must be > 0 for LINEAR_EXACT")
        y = np.where(
            x <= center - width / 2, 0.0, np.where(x > center + width / 2, ymax, ((x - center) / width + 0.5) * ymax)
        )
    else:  # LINEAR (the default)
        if width < 1:
            raise ValueError("window width must be >= 1 for LINEAR")
        lo = center - 0.5 - (width - 1) / 2
        hi = center - 0.5 + (width - 1) / 2
        if width == 1:
            y = np.where(x <= lo, 0.0, ymax)
        else:
            y = np.where(x <= lo, 0.0, np.where(x > hi, ymax, ((x - (center - 0.5)) / (width - 1) + 0.5) * ymax))
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def voi_lut_to_uint8(values: np.ndarray, item) -> np.ndarray:
    """Apply one VOI LUT Sequence item (LUTDescriptor [entries, first mapped value, bits], LUTData) and scale to 0..255.

    Inputs below the first mapped value take the first entry, above the last take the last entry
    (PS3.3 C.11.2.1.1); the LUT output range 0..2**bits-1 is mapped linearly to 0..255 (round half up).
    """
    desc = [int(v) for v in item.LUTDescriptor]
    n_entries = desc[0] or 65536
    first, out_bits = desc[1], desc[2]
    lut = np.asarray(item.LUTData if not isinstance(item.LUTData, bytes) else np.frombuffer(item.LUTData, "<u2"))
    lut = lut.astype(np.float64).ravel()[:n_entries]
    if lut.size == 0:
        raise ValueError("empty LUTData")
    idx = np.clip(np.floor(np.asarray(values, np.float64)) - first, 0, lut.size - 1).astype(np.int64)
    y = lut[idx] * (255.0 / (2**out_bits - 1))
    return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)


def _read_dicom(path: Path, force: bool) -> tuple[np.ndarray, ImageMeta]:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
        from pydicom.pixels import apply_modality_lut, get_decoder
    except ImportError:  # pragma: no cover - pydicom is a core dependency
        raise _fail(path, "is a DICOM file but pydicom is not installed (pip install pydicom)") from None

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=force)
    except InvalidDicomError as exc:
        raise _fail(path, f"not a valid DICOM file ({exc})") from None
    except Exception as exc:  # pydicom raises many types on corrupt data
        raise _fail(path, f"truncated or corrupt DICOM ({type(exc).__name__}: {exc})") from None

    has_pixels = any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if force and not has_pixels and not any(int(t.group) in (0x0008, 0x0010, 0x0020, 0x0028) for t in ds.keys()):
        raise _fail(path, "not an image file (unrecognised format; expected PNG, JPEG or DICOM)")
    if not has_pixels:
        raise _fail(path, "DICOM has no pixel data (no (7FE0,0010) element; e.g. a structured report or header-only file)")
    if "PixelData" not in ds:
        raise _fail(path, "DICOM float/double pixel data is not supported")

    tsyntax = None
    if getattr(ds, "file_meta", None) is not None and "TransferSyntaxUID" in ds.file_meta:
        tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise _fail(path, "DICOM lacks valid Rows/Columns") from None
    _check_size(path, cols, rows, "DICOM header")
    frames_list = _dicom_float_list(ds.get("NumberOfFrames"))
    frames = int(frames_list[0]) if frames_list else 1
    if frames > 1:
        raise _fail(path, f"DICOM has {frames} frames (a multi-frame/3-D volume); only single 2-D images are supported")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()

    if tsyntax is not None:
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            raise _fail(path, f"unsupported DICOM transfer syntax {tsyntax} ({tsyntax.name}): no pixel decoder exists") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise _fail(
                path, f"unsupported DICOM transfer syntax {tsyntax.name} ({tsyntax}): no decoder installed (needs {missing})"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:
        ts_txt = f" (transfer syntax {tsyntax.name})" if tsyntax is not None else ""
        why = " ".join(re.sub(r" ?<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)).split())  # drop object addresses: stable messages
        why = why.replace("Unable to decode as exceptions were raised by all available plugins: ", "all decoders failed: ")
        raise _fail(path, f"cannot decode DICOM pixel data{ts_txt}: {why}") from None

    src_shape, src_dtype = arr.shape, arr.dtype
    expected_ndim = 3 if samples > 1 else 2
    if arr.ndim != expected_ndim:
        raise _fail(path, f"DICOM pixel array has shape {arr.shape}; only single 2-D images are supported")

    spacing, spacing_src = None, None
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        vals = _dicom_float_list(ds.get(tag))
        if len(vals) == 2 and all(v > 0 and math.isfinite(v) for v in vals):
            spacing, spacing_src = (vals[0], vals[1]), tag
            break

    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    window = rescale = source_range = None
    inverted = False
    if samples > 1:  # colour DICOM: pydicom returns RGB (YBR converted); reduce to grey like an RGB PNG
        if arr.dtype != np.uint8:
            arr, source_range = minmax_to_uint8(arr)
            arr = np.repeat(arr[..., :1], 3, axis=2) if arr.ndim == 2 else arr
        img = rgb_to_grey(arr)
        intensity = "luma"
    else:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        if "RescaleSlope" in ds or "RescaleIntercept" in ds:
            rescale = (slope, intercept)
        try:
            values = apply_modality_lut(arr, ds).astype(np.float64)
        except Exception as exc:
            raise _fail(path, f"invalid DICOM modality LUT/rescale: {exc}") from None
        if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
            try:
                img = voi_lut_to_uint8(values, ds.VOILUTSequence[0])
            except Exception as exc:
                raise _fail(path, f"invalid DICOM VOI LUT Sequence: {exc}") from None
            intensity = "voi_lut"
        else:
            centers = _dicom_float_list(ds.get("WindowCenter"))
            widths = _dicom_float_list(ds.get("WindowWidth"))
            func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
            if centers and widths and widths[0] >= 1:
                window = (centers[0], widths[0])
                img = window_to_uint8(values, centers[0], widths[0], func)
                intensity = "window"
            else:
                img, source_range = minmax_to_uint8(values)
                intensity = "minmax"
        if photometric == "MONOCHROME1":
            img = (255 - img).astype(np.uint8)
            inverted = True

    sex, laterality, age, age_src = dicom_patient_tags(ds)
    mirrored = laterality == "R"
    if mirrored:  # the models are trained on left hands: a tagged right hand is mirrored to a left one
        img = img[:, ::-1]
    return np.ascontiguousarray(img, dtype=np.uint8), ImageMeta(
        path=str(path),
        format="DICOM",
        shape=tuple(int(s) for s in src_shape),
        dtype=str(src_dtype),
        bit_depth=bits,
        photometric=photometric,
        pixel_spacing_mm=spacing,
        pixel_spacing_source=spacing_src,
        inverted=inverted,
        intensity=intensity,
        window=window,
        rescale=rescale,
        transfer_syntax=str(tsyntax) if tsyntax is not None else None,
        source_range=source_range,
        patient_sex=sex,
        laterality=laterality,
        mirrored=mirrored,
        chronological_age_months=age,
        chronological_age_source=age_src,
    )


def _dicom_date(value):
    import datetime

    text = str(value or "").strip()
    try:
        return datetime.date(int(text[0:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 else None
    except ValueError:
        return None


def dicom_patient_tags(ds) -> tuple[str | None, str | None, float | None, str | None]:
    """(sex "M"/"F"/None, laterality "L"/"R"/None, chronological age in months or None, its source) of a dataset.

    PatientAge is "nnnD|W|M|Y" (DICOM AS); without it, StudyDate (or AcquisitionDate / SeriesDate) minus
    PatientBirthDate, in months of 30.4375 days. Malformed values count as absent.
    """
    sex = str(ds.get("PatientSex", "") or "").strip().upper()[:1] or None
    sex = sex if sex in ("M", "F") else None
    lat = None
    for tag in ("ImageLaterality", "Laterality"):
        v = str(ds.get(tag, "") or "").strip().upper()
        if v in ("L", "R"):
            lat = v
            break
    age, src = None, None
    a = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(a) == 4 and a[:3].isdigit() and a[3] in "DWMY":
        n = int(a[:3])
        age = {"D": n / 30.4375, "W": n * 7 / 30.4375, "M": float(n), "Y": 12.0 * n}[a[3]]
        src = "PatientAge"
    else:
        birth = _dicom_date(ds.get("PatientBirthDate"))
        study = next((d for d in (_dicom_date(ds.get(t)) for t in ("StudyDate", "AcquisitionDate", "SeriesDate"))
                      if d is not None), None)
        if birth is not None and study is not None and study >= birth:
            age, src = (study - birth).days / 30.4375, "StudyDate-PatientBirthDate"
    return sex, lat, (round(age, 2) if age is not None else None), src


__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "ImageMeta",
    "minmax_to_uint8",
    "read_image",
    "rgb_to_grey",
    "window_to_uint8",
]
