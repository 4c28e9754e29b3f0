"""edge_boneage.io.read_image: formats, DICOM intensity handling, and one-line errors for every bad file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from benchmarks.bad_inputs import dicom_dataset, make_bad_inputs, write_dicom
from edge_boneage import EdgeBoneageError
from edge_boneage.io import MAX_PIXELS, MAX_SIDE, read_image, window_to_uint8


def _ramp(h=30, w=20, dtype=np.uint8, hi=255):
    v = np.linspace(0, hi, h * w).reshape(h, w)
    return np.round(v).astype(dtype)


# ------------------------------------------------------------------ PNG / JPEG


def test_png_8bit_grey_roundtrip(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (37, 23), dtype=np.uint8)
    p = tmp_path / "g.png"
    Image.fromarray(a).save(p)
    img, meta = read_image(p)
    assert img.dtype == np.uint8 and img.shape == (37, 23)
    np.testing.assert_array_equal(img, a)
    assert (meta.format, meta.photometric, meta.bit_depth, meta.intensity) == ("PNG", "L", 8, "none")
    assert meta.shape == (37, 23) and meta.pixel_spacing_mm is None and not meta.inverted


def test_png_16bit_minmax(tmp_path):
    # 12-bit data in a 16-bit container: min-max must spread it over 0..255 (not come out near-black).
    a = (np.arange(40 * 10).reshape(40, 10) * 10 + 100).astype(np.uint16)  # 100 .. 4090
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    img, meta = read_image(p)
    expected = np.floor((a.astype(np.float64) - 100) * 255 / (4090 - 100) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(img, expected)
    assert meta.bit_depth == 16 and meta.dtype == "uint16" and meta.intensity == "minmax"
    assert meta.source_range == (100.0, 4090.0)
    assert img.min() == 0 and img.max() == 255


def test_png_16bit_constant_is_zero(tmp_path):
    p = tmp_path / "c16.png"
    Image.fromarray(np.full((5, 6), 1234, np.uint16)).save(p)
    img, _ = read_image(p)
    assert img.shape == (5, 6) and not img.any()


def test_palette_png_grey_and_colour(tmp_path):
    idx = np.random.default_rng(2).integers(0, 256, (16, 12), dtype=np.uint8)
    grey = Image.fromarray(idx, mode="L").convert("P")  # grey palette
    pal = np.arange(256, dtype=np.uint8)[::-1]  # inverted grey palette: value = 255 - index
    im = Image.fromarray(idx, mode="P")
    im.putpalette(np.repeat(pal, 3).tolist())
    p = tmp_path / "pal.png"
    im.save(p)
    img, meta = read_image(p)
    assert meta.photometric == "P" and meta.intensity == "palette"
    np.testing.assert_array_equal(img, 255 - idx)
    # colour palette -> BT.601 luma, identical to Pillow's own P->L conversion
    rgbpal = np.random.default_rng(3).integers(0, 256, (256, 3), dtype=np.uint8)
    im.putpalette(rgbpal.ravel().tolist())
    p2 = tmp_path / "pal_colour.png"
    im.save(p2)
    img2, _ = read_image(p2)
    np.testing.assert_array_equal(img2, np.asarray(Image.open(p2).convert("L")))
    assert grey.mode == "P"


def test_rgb_and_rgba_png_use_pillow_luma(tmp_path):
    rgb = np.random.default_rng(4).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    p = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(p)
    img, meta = read_image(p)
    np.testing.assert_array_equal(img, np.asarray(Image.fromarray(rgb).convert("L")))
    assert meta.intensity == "luma" and meta.shape == (9, 11, 3)
    rgba = np.concatenate([rgb, np.full((9, 11, 1), 7, np.uint8)], axis=2)  # alpha ignored
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(p)
    img_a, meta_a = read_image(p)
    np.testing.assert_array_equal(img_a, img)
    assert meta_a.photometric == "RGBA"


def test_jpeg_grey_and_colour(tmp_path):
    a = _ramp(48, 64)
    p = tmp_path / "g.jpg"
    Image.fromarray(a).save(p, quality=95)
    img, meta = read_image(p)
    assert meta.format == "JPEG" and img.shape == (48, 64)
    assert np.abs(img.astype(int) - a).max() <= 6  # lossy, but close
    p2 = tmp_path / "c.jpg"
    Image.fromarray(np.stack([a, a, a], axis=2)).save(p2, quality=95)
    img2, meta2 = read_image(p2)
    assert meta2.photometric == "RGB" and img2.shape == (48, 64)
    assert np.abs(img2.astype(int) - a).max() <= 8


def test_real_rsna_fullres_pngs(rsna_dir):
    files = sorted((rsna_dir / "fullres").glob("*.png"))
    modes = {f: Image.open(f).mode for f in files}
    chosen = [f for f in files if modes[f] == "P"][:2] + [f for f in files if modes[f] == "L"][:3]
    assert any(modes[f] == "P" for f in chosen), "expected palette PNGs among the fullres images"
    for f in chosen:
        img, meta = read_image(f)
        ref = np.asarray(Image.open(f).convert("L"))
        assert img.dtype == np.uint8 and img.shape == ref.shape
        assert min(img.shape) >= 1500 and meta.format == "PNG"
        np.testing.assert_array_equal(img, ref)
        assert img.std() > 10  # a real radiograph, not a blank


# ------------------------------------------------------------------ DICOM


def test_dicom_monochrome2_no_window_is_minmax(tmp_path):
    a = (np.arange(24 * 16).reshape(24, 16) * 3 + 50).astype(np.uint16)
    p = write_dicom(tmp_path / "m2.dcm", dicom_dataset(a, PixelSpacing=[0.143, 0.15]))
    img, meta = read_image(p)
    np.testing.assert_array_equal(img, np.floor((a - 50.0) * 255 / (a.max() - 50.0) + 0.5).astype(np.uint8))
    assert meta.format == "DICOM" and meta.photometric == "MONOCHROME2" and not meta.inverted
    assert meta.pixel_spacing_mm == pytest.approx((0.143, 0.15)) and meta.pixel_spacing_source == "PixelSpacing"
    assert meta.intensity == "minmax" and meta.bit_depth == 16
    assert meta.transfer_syntax == "1.2.840.10008.1.2.1"


def test_dicom_monochrome1_is_inverted(tmp_path):
    a = _ramp(10, 10, np.uint16, 1000)
    img2, _ = read_image(write_dicom(tmp_path / "m2.dcm", dicom_dataset(a)))
    img1, meta1 = read_image(write_dicom(tmp_path / "m1.dcm", dicom_dataset(a, PhotometricInterpretation="MONOCHROME1")))
    assert meta1.inverted and meta1.photometric == "MONOCHROME1"
    np.testing.assert_array_equal(img1, 255 - img2)
    assert img1[0, 0] == 255 and img1[-1, -1] == 0  # low raw value = bright in MONOCHROME1


def test_dicom_rescale_then_window(tmp_path):
    raw = np.array([[0, 100, 200, 300], [400, 500, 600, 1000]], dtype=np.uint16)
    # HU-like: value = 2*raw - 1000 -> [-1000 .. 1000]; window centre 0 width 801 -> [-400.5, 400.5]
    ds = dicom_dataset(raw, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=801)
    img, meta = read_image(write_dicom(tmp_path / "w.dcm", ds))
    v = raw * 2.0 - 1000
    # PS3.3 C.11.2.1.2.1, LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 inside the window
    lin = ((v + 0.5) / 800 + 0.5) * 255
    expected = np.where(v <= -0.5 - 400, 0, np.where(v > -0.5 + 400, 255, np.floor(lin + 0.5))).astype(np.uint8)
    np.testing.assert_array_equal(img, expected)
    assert meta.window == (0.0, 801.0) and meta.rescale == (2.0, -1000.0) and meta.intensity == "window"
    assert img[0, 0] == 0 and img[1, 3] == 255 and img[0, 3] == 0 and 0 < img[1, 1] < 255


def test_dicom_window_differs_from_minmax(tmp_path):
    a = _ramp(8, 8, np.uint16, 4000)
    narrow, _ = read_image(write_dicom(tmp_path / "a.dcm", dicom_dataset(a, WindowCenter=2000, WindowWidth=500)))
    full, _ = read_image(write_dicom(tmp_path / "b.dcm", dicom_dataset(a)))
    assert (narrow == 0).sum() > (full == 0).sum() and (narrow == 255).sum() > (full == 255).sum()


def test_dicom_voi_lut_sequence_preferred_over_window(tmp_path):
    import pydicom

    a = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], dtype=np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4, 2, 8]  # 4 entries, first mapped value 2, 8-bit output
    item.LUTData = np.array([10, 20, 200, 255], "<u2").tobytes()  # OW: 16-bit words
    ds = dicom_dataset(a, WindowCenter=3, WindowWidth=2)
    ds.VOILUTSequence = pydicom.Sequence([item])
    img, meta = read_image(write_dicom(tmp_path / "lut.dcm", ds))
    assert meta.intensity == "voi_lut"
    # below the first mapped value -> first entry, above the last -> last entry
    np.testing.assert_array_equal(img, [[10, 10, 10, 20], [200, 255, 255, 255]])


def test_dicom_imager_pixel_spacing_and_signed(tmp_path):
    a = (np.arange(12).reshape(3, 4) * 100 - 600).astype(np.int16)
    img, meta = read_image(write_dicom(tmp_path / "s.dcm", dicom_dataset(a, ImagerPixelSpacing=[0.1, 0.2])))
    assert meta.pixel_spacing_mm == pytest.approx((0.1, 0.2)) and meta.pixel_spacing_source == "ImagerPixelSpacing"
    assert meta.dtype == "int16" and img[0, 0] == 0 and img[-1, -1] == 255


def test_window_function_sigmoid_and_exact():
    x = np.array([-1e6, 0.0, 1e6])
    np.testing.assert_array_equal(window_to_uint8(x, 0, 100, "SIGMOID"), [0, 128, 255])
    np.testing.assert_array_equal(window_to_uint8(np.array([-50.0, 0.0, 50.0]), 0, 100, "LINEAR_EXACT"), [0, 128, 255])


# ------------------------------------------------------------------ bad inputs


def test_every_bad_input_raises_one_line_naming_the_file(tmp_path):
    cases = make_bad_inputs(tmp_path)
    assert len(cases) >= 15
    for label, (path, phrase) in cases.items():
        with pytest.raises(EdgeBoneageError) as info:
            read_image(path)
        msg = str(info.value)
        assert "\n" not in msg, label
        assert msg.startswith(str(path) + ": "), (label, msg)
        assert phrase.lower() in msg.lower(), (label, msg)


def test_size_limits_are_the_documented_ones():
    assert MAX_SIDE == 20_000 and MAX_PIXELS == 100_000_000


def test_bomb_is_refused_before_decoding(tmp_path):
    from benchmarks.bad_inputs import png_bytes_claiming

    p = tmp_path / "b.png"
    p.write_bytes(png_bytes_claiming(12_000, 9_000))  # 108 Mpx, each side < 20000: pixel-count limit
    with pytest.raises(EdgeBoneageError, match="refusing to decode"):
        read_image(p)
    p.write_bytes(png_bytes_claiming(9_000, 9_000))  # 81 Mpx: allowed by the header check -> decode fails (truncated)
    with pytest.raises(EdgeBoneageError, match="truncated or corrupt"):
        read_image(p)


def test_io_module_imports_no_tensorflow_keras_or_cv2():
    code = (
        "import sys, edge_boneage.io as m, numpy as np\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'keras', 'jax', 'torch')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_style_bad_file_has_no_traceback(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code = f"from edge_boneage.io import read_image\nread_image({str(p)!r})\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0 and "EdgeBoneageError" in res.stderr and "corrupt PNG" in res.stderr


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEG2000Lossless"])
def test_compressed_dicom_decodes_pixel_exact_with_the_dicom_extra(tmp_path, syntax):
    """The [dicom] extra (pylibjpeg + its openjpeg / libjpeg / rle plugins) decodes compressed transfer syntaxes
    that are refused without it; lossless ones give back the very pixels."""
    import pydicom
    from pydicom import uid
    from pydicom.pixels import get_decoder

    ts = getattr(uid, syntax)
    if not get_decoder(ts).is_available:
        pytest.skip(f"no {ts.name} decoder: pip install 'edge-boneage[dicom]'")
    img = np.random.default_rng(1).integers(0, 256, (64, 48)).astype(np.uint8)  # openjpeg needs >= 32 px per side
    p = write_dicom(tmp_path / "c.dcm", dicom_dataset(img))
    ds = pydicom.dcmread(p)
    ds.compress(ts, encoding_plugin="pylibjpeg" if syntax == "JPEG2000Lossless" else None)
    ds.save_as(p)
    out, meta = read_image(p)
    assert meta.transfer_syntax == str(ts)
    np.testing.assert_array_equal(out, img)
