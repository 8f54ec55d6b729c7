"""Tests for veil.io: loading every kind of input, writing metadata-free
outputs, and the independent metadata scanner.

Test files are built at run time by ``_imagefiles`` (no binary fixtures).
Real photos from ../shared/data/faces are used only where present.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import random
import struct
import sys
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _imagefiles as F
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

try:
    import veil.io as vio
except ImportError:  # the compiled core is not built: io.py is pure Python, load it on its own
    _spec = importlib.util.spec_from_file_location(
        "veil_io_standalone", Path(__file__).resolve().parents[1] / "python" / "veil" / "io.py"
    )
    vio = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = vio
    _spec.loader.exec_module(vio)

ImageError = vio.ImageError


def _has_heif_encoder() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    return bool(pillow_heif.libheif_info().get("HEIF"))


HEIF_ENCODER = _has_heif_encoder()
OUTPUT_FORMATS = list(vio.WRITABLE_FORMATS)

# Raw byte strings that must never appear in any output.
SECRETS = [
    F.SECRET_SERIAL,
    F.SECRET_OWNER,
    F.SECRET_MAKERNOTE[:15],
    F.SECRET_MAKE,
    F.SECRET_XMP,
    F.SECRET_IPTC,
    F.SECRET_COMMENT,
    F.SECRET_TRAILER,
    F.SECRET_PNG_TEXT,
    F.SECRET_PNG_ITXT,
    F.SECRET_PNG_ZTXT,
    F.SECRET_ICC_DESC,
    F.GPS_RATIONAL_BYTES,
    b"Exif\x00\x00",
    b"http://ns.adobe.com/xap",
    b"Photoshop 3.0",
    b"8BIM",
    b"MPF\x00",
    b"ICC_PROFILE",
    b"eXIf",
    b"tEXt",
    b"iTXt",
    b"zTXt",
    b"tIME",
    b"XMP ",
]

# Width, length, bits per sample, compression, photometric, strip offsets,
# samples per pixel, rows per strip, strip byte counts, planar configuration,
# predictor, extra samples (alpha), sample format.
TIFF_LAYOUT_TAGS = {256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 338, 339}


def assert_clean(data: bytes, fmt: str) -> None:
    """The output is clean by the scanner, by raw byte search, and by Pillow."""
    assert vio.scan_metadata(data) == [], vio.scan_metadata(data)
    for secret in SECRETS:
        assert secret not in data, f"{secret!r} survived into the {fmt} output"
    # Exactly one JPEG (the image itself) in a JPEG output, none elsewhere:
    # no thumbnail, no MPF secondary image, no hidden original.
    assert data.count(F.SOI) == (1 if fmt == "JPEG" else 0)
    if fmt == "JPEG":
        assert data.endswith(b"\xff\xd9")
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == fmt
        if fmt == "TIFF":  # a TIFF's own directory holds its layout tags; nothing else
            assert set(im.getexif()) <= TIFF_LAYOUT_TAGS, sorted(set(im.getexif()) - TIFF_LAYOUT_TAGS)
        else:
            assert len(im.getexif()) == 0
        for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment", "photoshop", "mp", "mpoffset"):
            assert not im.info.get(key), f"{key} in {fmt} output"
        assert not getattr(im, "text", {}), "PNG text chunks in output"
        assert getattr(im, "n_frames", 1) == 1


# --------------------------------------------------------------------------
# Stripping: dirty inputs in, clean outputs out
# --------------------------------------------------------------------------

DIRTY_INPUTS = {
    "jpeg-everything": lambda: F.dirty_jpeg(),
    "jpeg-exif-gps-serial-makernote-thumbnail": lambda: F.jpeg_with_exif(
        thumbnail=F.encode_with_pillow(F.thumbnail_pattern(), "JPEG")
    ),
    "jpeg-xmp": lambda: F.insert_jpeg_segments(F.plain_jpeg(), [F.xmp_segment()]),
    "jpeg-iptc": lambda: F.insert_jpeg_segments(F.plain_jpeg(), [F.iptc_segment()]),
    "jpeg-comment": lambda: F.insert_jpeg_segments(F.plain_jpeg(), [F.comment_segment()]),
    "jpeg-icc": lambda: F.insert_jpeg_segments(F.plain_jpeg(), [F.icc_segment(F.linear_rgb_profile())]),
    "jpeg-mpo": lambda: F.make_mpo(F.plain_jpeg(), F.plain_jpeg(F.thumbnail_pattern(40))),
    "jpeg-hidden-original": lambda: F.plain_jpeg() + F.plain_jpeg(F.thumbnail_pattern(40)) + F.SECRET_TRAILER,
    "png-everything": lambda: F.dirty_png(),
    "webp-exif-xmp-icc": lambda: F.dirty_webp(icc=F.linear_rgb_profile()),
}

# What the scanner must report for each dirty input.
EXPECTED_FINDINGS = {
    "jpeg-everything": ["GPS", "BodySerialNumber", "MakerNote", "thumbnail image (IFD1)", "XMP", "IPTC", "COM", "MPF",
                        "after the end"],
    "jpeg-exif-gps-serial-makernote-thumbnail": ["GPS", "BodySerialNumber", "CameraOwnerName", "MakerNote",
                                                 "thumbnail image (IFD1)", "Make"],
    "jpeg-xmp": ["XMP"],
    "jpeg-iptc": ["IPTC"],
    "jpeg-comment": ["comment"],
    "jpeg-icc": ["ICC"],
    "jpeg-mpo": ["MPF", "another JPEG image"],
    "jpeg-hidden-original": ["after the end of the image (they contain another JPEG image)"],
    "png-everything": ["eXIf", "GPS", "BodySerialNumber", "tEXt", "iTXt: XMP", "zTXt", "tIME", "after the end"],
    "webp-exif-xmp-icc": ["EXIF", "GPS", "MakerNote", "XMP", "ICC"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DIRTY_INPUTS))
def test_scanner_finds_planted_metadata(name):
    findings = vio.scan_metadata(DIRTY_INPUTS[name]())
    text = " | ".join(findings)
    for expected in EXPECTED_FINDINGS[name]:
        assert expected in text, f"{expected!r} not reported for {name}: {findings}"


@pytest.mark.parametrize("out_format", OUTPUT_FORMATS)
@pytest.mark.parametrize("name", sorted(DIRTY_INPUTS))
def test_outputs_carry_no_metadata(name, out_format):
    loaded = vio.load_image(DIRTY_INPUTS[name]())
    data = vio.encode_image(loaded.pixels, out_format)
    assert_clean(data, out_format)


def test_dirty_jpeg_keeps_the_picture():
    source = F.asymmetric_rgb()
    loaded = vio.load_image(F.dirty_jpeg(source))
    assert loaded.format == "JPEG"
    assert loaded.pixels.shape == source.shape
    assert np.abs(loaded.pixels.astype(int) - source).mean() < 4
    again = vio.load_image(vio.encode_image(loaded.pixels, "JPEG"))
    assert np.abs(again.pixels.astype(int) - source).mean() < 6


def test_mpo_reads_only_the_primary_image():
    primary = np.full((24, 32, 3), (200, 20, 20), np.uint8)
    secondary = np.full((40, 40, 3), (20, 20, 200), np.uint8)
    data = F.make_mpo(F.plain_jpeg(primary), F.plain_jpeg(secondary))
    with Image.open(io.BytesIO(data)) as im:  # the fixture really is an MPO to Pillow
        assert im.format == "MPO" and im.n_frames == 2
    loaded = vio.load_image(data)
    assert loaded.format == "JPEG"
    assert loaded.pixels.shape == (24, 32, 3)
    assert any("MPF" in note for note in loaded.notes)
    assert vio.output_format_for(loaded.format) == "JPEG"


def test_real_photo_round_trip_is_clean():
    photos = sorted((F.FACES_DIR / "portraits").glob("*.jpg")) if F.FACES_DIR.is_dir() else []
    if not photos:
        pytest.skip("shared face photos not present")
    with Image.open(photos[0]) as photo:
        pixels = np.asarray(photo.convert("RGB"))
    dirty = F.dirty_jpeg(pixels)
    loaded = vio.load_image(dirty)
    assert loaded.pixels.shape == pixels.shape
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert_clean(vio.encode_image(loaded.pixels, fmt), fmt)


# --------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------

# What a viewer shows for each EXIF orientation value, written independently
# of Pillow with numpy (row 0 is the top of the stored image).
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda a: np.rot90(a, k=-1),  # needs 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda a: np.rot90(a, k=1),  # needs 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_exactly_png(orientation):
    source = F.asymmetric_rgb(30, 44)
    loaded = vio.load_image(F.png_with_exif_orientation(source, orientation))
    np.testing.assert_array_equal(loaded.pixels, ORIENTED[orientation](source))
    assert loaded.pixels.flags.c_contiguous


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_jpeg(orientation):
    source = F.asymmetric_rgb(48, 64)
    loaded = vio.load_image(F.jpeg_with_exif(source, orientation=orientation))
    expected = ORIENTED[orientation](source)
    assert loaded.pixels.shape == expected.shape
    assert np.abs(loaded.pixels.astype(int) - expected).mean() < 4
    out = vio.encode_image(loaded.pixels, "JPEG")
    assert_clean(out, "JPEG")  # no orientation tag needed, none written


def test_invalid_orientation_value_is_ignored():
    source = F.asymmetric_rgb(30, 44)
    loaded = vio.load_image(F.png_with_exif_orientation(source, 9))
    np.testing.assert_array_equal(loaded.pixels, source)


def test_pil_image_orientation_is_applied():
    source = F.asymmetric_rgb(30, 44)
    with Image.open(io.BytesIO(F.png_with_exif_orientation(source, 6))) as im:
        loaded = vio.load_image(im)
    assert loaded.source_kind == "pil"
    np.testing.assert_array_equal(loaded.pixels, np.rot90(source, k=-1))


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


def test_every_source_kind_gives_the_same_pixels(tmp_path):
    source = F.asymmetric_rgb()
    png = F.encode_with_pillow(source, "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(png)
    results = {
        "path-str": vio.load_image(str(path)),
        "path-obj": vio.load_image(path),
        "bytes": vio.load_image(png),
        "bytearray": vio.load_image(bytearray(png)),
        "memoryview": vio.load_image(memoryview(png)),
        "file": vio.load_image(io.BytesIO(png)),
        "pil": vio.load_image(Image.fromarray(source)),
        "array": vio.load_image(source),
    }
    kinds = {name: r.source_kind for name, r in results.items()}
    assert kinds == {
        "path-str": "path", "path-obj": "path", "bytes": "bytes", "bytearray": "bytes", "memoryview": "bytes",
        "file": "bytes", "pil": "pil", "array": "array",
    }  # fmt: skip
    for name, result in results.items():
        np.testing.assert_array_equal(result.pixels, source, err_msg=name)
        assert result.pixels.dtype == np.uint8 and result.pixels.flags.c_contiguous and result.pixels.flags.writeable
    assert results["path-str"].format == "PNG" and results["array"].format is None
    assert results["path-str"].icc_profile is None


def test_open_file_object_and_unseekable_stream(tmp_path):
    source = F.asymmetric_rgb()
    path = tmp_path / "p.png"
    path.write_bytes(F.encode_with_pillow(source, "PNG"))
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(vio.load_image(fh).pixels, source)

    class Pipe(io.RawIOBase):
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def seekable(self):
            return False

        def readinto(self, buffer):
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    np.testing.assert_array_equal(vio.load_image(Pipe(path.read_bytes())).pixels, source)


def test_arrays_are_copied_and_shaped():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    loaded = vio.load_image(grey)
    assert loaded.pixels.shape == (3, 4, 1) and loaded.channels == 1
    loaded.pixels[0, 0, 0] = 99
    assert grey[0, 0] == 0, "load_image must not alias the caller's array"
    rgba = np.zeros((5, 6, 4), np.uint8)[:, ::2]  # not contiguous
    loaded = vio.load_image(rgba)
    assert loaded.pixels.shape == (5, 3, 4) and loaded.pixels.flags.c_contiguous and loaded.has_alpha
    assert (loaded.width, loaded.height) == (3, 5)
    assert vio.load_image(np.zeros((2, 2, 1), np.uint8)).pixels.shape == (2, 2, 1)


@pytest.mark.parametrize(
    "array, error",
    [
        (np.zeros((4, 4, 3), np.float32), TypeError),
        (np.zeros((4, 4, 3), np.uint16), TypeError),
        (np.zeros((4, 4, 2), np.uint8), ValueError),
        (np.zeros((4, 4, 5), np.uint8), ValueError),
        (np.zeros((4,), np.uint8), ValueError),
        (np.zeros((0, 4, 3), np.uint8), ImageError),
    ],
)
def test_bad_arrays_rejected(array, error):
    with pytest.raises(error):
        vio.load_image(array)


@pytest.mark.parametrize("bad", [None, 42, 3.5, ["a.jpg"], object()])
def test_bad_source_types_rejected(bad):
    with pytest.raises(TypeError):
        vio.load_image(bad)


def test_text_mode_file_rejected(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello")
    with open(path, "r") as fh, pytest.raises(TypeError, match="text mode"):
        vio.load_image(fh)


# --------------------------------------------------------------------------
# Formats and modes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_input_formats(fmt):
    source = F.asymmetric_rgb()
    options = {"lossless": True} if fmt == "WEBP" else {}
    loaded = vio.load_image(F.encode_with_pillow(source, fmt, **options))
    assert loaded.format == fmt
    assert loaded.pixels.shape[:2] == source.shape[:2]
    tolerance = 4 if fmt == "JPEG" else 0
    if fmt != "GIF":  # GIF quantises to a palette
        assert np.abs(loaded.pixels[..., :3].astype(int) - source).mean() <= tolerance


def _mode_image(mode: str) -> Image.Image:
    base = Image.fromarray(F.asymmetric_rgb(8, 10))
    if mode == "RGBA":
        im = base.convert("RGBA")
        im.putalpha(Image.fromarray(np.tile(np.arange(10, dtype=np.uint8) * 25, (8, 1))))
        return im
    if mode == "LA":
        return _mode_image("RGBA").convert("LA")
    return base.convert(mode)


@pytest.mark.parametrize(
    "mode, channels",
    [("1", 1), ("L", 1), ("LA", 4), ("P", 3), ("RGB", 3), ("RGBA", 4), ("CMYK", 3), ("YCbCr", 3), ("RGBX", 3),
     ("I", 1), ("I;16", 1)],
)  # fmt: skip
def test_modes_from_pil_images(mode, channels):
    loaded = vio.load_image(_mode_image(mode))
    assert loaded.pixels.dtype == np.uint8
    assert loaded.pixels.shape == (8, 10, channels)


@pytest.mark.parametrize("mode", ["La", "PA", "RGBa"])
def test_other_alpha_modes_become_rgba(mode):
    loaded = vio.load_image(Image.new(mode, (3, 2)))
    assert loaded.pixels.shape == (2, 3, 4)


def test_mode_1_becomes_0_or_255():
    im = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    loaded = vio.load_image(im)
    np.testing.assert_array_equal(loaded.pixels[..., 0], [[0, 255], [255, 0]])


def test_la_becomes_rgba_with_the_same_grey_and_alpha():
    la = Image.merge("LA", [Image.new("L", (3, 2), 77), Image.new("L", (3, 2), 150)])
    loaded = vio.load_image(la)
    assert loaded.pixels.shape == (2, 3, 4)
    assert tuple(loaded.pixels[0, 0]) == (77, 77, 77, 150)


def test_palette_with_transparency_becomes_rgba():
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.putpixel((0, 0), 2)
    pal.info["transparency"] = 1
    loaded = vio.load_image(_png_bytes(pal))
    assert loaded.pixels.shape == (4, 4, 4)
    assert tuple(loaded.pixels[0, 0]) == (0, 255, 0, 255)
    assert loaded.pixels[1, 1, 3] == 0
    opaque = Image.new("P", (4, 4), 1)
    opaque.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    loaded = vio.load_image(_png_bytes(opaque))
    assert loaded.pixels.shape == (4, 4, 3)
    assert tuple(loaded.pixels[0, 0]) == (255, 0, 0)


def _png_bytes(im: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **options)
    return buf.getvalue()


def test_grey_and_rgb_with_trns_colour_become_rgba():
    grey = Image.new("L", (2, 2), 9)
    loaded = vio.load_image(_png_bytes(grey, transparency=9))
    assert loaded.pixels.shape == (2, 2, 4) and loaded.pixels[0, 0, 3] == 0
    rgb = Image.new("RGB", (2, 2), (1, 2, 3))
    loaded = vio.load_image(_png_bytes(rgb, transparency=(1, 2, 3)))
    assert loaded.pixels.shape == (2, 2, 4) and loaded.pixels[0, 0, 3] == 0


def test_16_bit_png_scaled_to_8_bit():
    values = np.array([[0, 257 * 100, 65535], [128, 32896, 65000]], np.uint16)
    data = _png_bytes(Image.fromarray(values))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode in ("I;16", "I")  # really a 16-bit input
    loaded = vio.load_image(data)
    expected = np.round(values / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(loaded.pixels[..., 0], expected)
    assert any("16-bit" in note for note in loaded.notes)


def test_16_bit_big_endian_and_32_bit_integer_images():
    values = np.array([[0, 1000], [40000, 65535]], np.uint16)
    big = Image.frombytes("I;16B", (2, 2), values.astype(">u2").tobytes())
    np.testing.assert_array_equal(vio.load_image(big).pixels[..., 0], np.round(values / 257.0))
    in_range = Image.fromarray(values.astype(np.int32), "I")
    np.testing.assert_array_equal(vio.load_image(in_range).pixels[..., 0], np.round(values / 257.0))
    out_of_range = Image.fromarray(np.array([[0, 70000]], np.int32), "I")
    with pytest.raises(ImageError, match="16-bit range"):
        vio.load_image(out_of_range)


def test_16_bit_tiff():
    values = np.array([[0, 65535, 32896]], np.uint16)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "TIFF")
    np.testing.assert_array_equal(vio.load_image(buf.getvalue()).pixels[..., 0], [[0, 255, 128]])


def test_float_and_unsupported_modes_refused():
    with pytest.raises(ImageError, match="floating-point"):
        vio.load_image(Image.new("F", (4, 4), 0.5))
    tiff = io.BytesIO()
    Image.new("F", (4, 4), 0.5).save(tiff, "TIFF")
    with pytest.raises(ImageError, match="floating-point"):
        vio.load_image(tiff.getvalue())
    with pytest.raises(ImageError, match="HSV"):
        vio.load_image(Image.new("HSV", (4, 4)))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # white
    cmyk.paste((255, 0, 0, 0), (0, 0, 8, 16))  # cyan left half
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    loaded = vio.load_image(buf.getvalue())
    assert loaded.pixels.shape == (16, 16, 3)
    left, right = loaded.pixels[8, 2].astype(int), loaded.pixels[8, 13].astype(int)
    assert left[0] < 40 and left[1] > 215 and left[2] > 215, left
    assert (right > 215).all(), right


def test_cmyk_with_icc_profile_falls_back_when_profile_is_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 0))
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", icc_profile=F.linear_rgb_profile())  # wrong kind of profile on purpose
    loaded = vio.load_image(buf.getvalue())
    assert loaded.pixels.shape == (8, 8, 3) and (loaded.pixels > 215).all()
    assert loaded.icc_profile is None


# --------------------------------------------------------------------------
# Colour profiles
# --------------------------------------------------------------------------


def test_non_srgb_profile_converted_and_dropped():
    grey128 = np.full((8, 8, 3), 128, np.uint8)
    data = _png_bytes(Image.fromarray(grey128), icc_profile=F.linear_rgb_profile())
    loaded = vio.load_image(data)
    assert loaded.icc_profile is None
    # Linear 128/255 is sRGB ~188/255: the conversion really happened.
    assert np.abs(loaded.pixels.astype(int) - 188).max() <= 2
    assert any("sRGB" in note for note in loaded.notes)
    for fmt in OUTPUT_FORMATS:
        assert_clean(vio.encode_image(loaded.pixels, fmt), fmt)


def test_srgb_profile_leaves_pixels_alone():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = F.asymmetric_rgb()
    loaded = vio.load_image(_png_bytes(Image.fromarray(source), icc_profile=srgb))
    assert np.abs(loaded.pixels.astype(int) - source).max() <= 1
    assert loaded.icc_profile is None


def test_rgba_profile_conversion_keeps_alpha():
    rgba = np.dstack([np.full((4, 4, 3), 128, np.uint8), np.full((4, 4), 77, np.uint8)])
    loaded = vio.load_image(_png_bytes(Image.fromarray(rgba), icc_profile=F.linear_rgb_profile()))
    assert loaded.pixels.shape == (4, 4, 4)
    assert (loaded.pixels[..., 3] == 77).all()
    assert np.abs(loaded.pixels[..., :3].astype(int) - 188).max() <= 2


def test_keep_icc_profile_round_trip():
    profile = F.linear_rgb_profile()
    data = _png_bytes(Image.fromarray(np.full((4, 4, 3), 128, np.uint8)), icc_profile=profile)
    loaded = vio.load_image(data, keep_icc_profile=True)
    assert loaded.icc_profile == profile
    assert (loaded.pixels == 128).all()
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        out = vio.encode_image(loaded.pixels, fmt, icc_profile=loaded.icc_profile)
        assert vio.scan_metadata(out) != []
        assert vio.scan_metadata(out, allow_icc=True) == []
        with Image.open(io.BytesIO(out)) as im:
            assert im.info.get("icc_profile") == profile


def test_corrupt_profile_is_dropped_not_fatal():
    junk = b"\x00\x00\x02\x00" + b"xxxx" * 8 + b"RGB " + b"\x00" * 16 + b"acsp" + b"\x01" * 500
    data = F.insert_jpeg_segments(F.plain_jpeg(), [F.icc_segment(junk)])
    loaded = vio.load_image(data)
    assert loaded.icc_profile is None
    assert any("ICC" in note for note in loaded.notes)


def test_bad_icc_profile_parameters():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="not an ICC profile"):
        vio.encode_image(rgb, "PNG", icc_profile=b"nope")
    with pytest.raises(ValueError, match="channel"):
        vio.encode_image(rgb[..., 0], "PNG", icc_profile=F.linear_rgb_profile())
    with pytest.raises(ValueError, match="BMP"):
        vio.encode_image(rgb, "BMP", icc_profile=F.linear_rgb_profile())
    with pytest.raises(TypeError):
        vio.encode_image(rgb, "PNG", icc_profile="profile")


# --------------------------------------------------------------------------
# Animated images
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, options",
    [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {}), ("TIFF", {})],
    ids=["gif", "webp", "apng", "multipage-tiff"],
)
def test_animated_and_multipage_refused(fmt, options):
    with pytest.raises(ImageError, match="frames"):
        vio.load_image(F.frames_file(fmt, **options))


def test_single_frame_gif_accepted():
    loaded = vio.load_image(F.frames_file("GIF", count=1))
    assert loaded.format == "GIF" and loaded.pixels.shape == (16, 16, 3)
    assert vio.output_format_for(loaded.format) == "PNG"


# --------------------------------------------------------------------------
# Decompression bombs
# --------------------------------------------------------------------------


def test_bomb_refused_by_max_pixels():
    data = F.encode_with_pillow(np.zeros((100, 100, 3), np.uint8), "PNG")
    with pytest.raises(ImageError, match="10,000 pixels"):
        vio.load_image(data, max_pixels=9_999)
    assert vio.load_image(data, max_pixels=10_000).pixels.shape == (100, 100, 3)


def test_bomb_refused_by_environment_variable(monkeypatch):
    data = F.encode_with_pillow(np.zeros((100, 100, 3), np.uint8), "PNG")
    monkeypatch.setenv("VEIL_MAX_PIXELS", "5000")
    with pytest.raises(ImageError, match="decompression bomb"):
        vio.load_image(data)
    assert vio.load_image(data, max_pixels=20_000).pixels.shape == (100, 100, 3)  # explicit argument wins
    monkeypatch.setenv("VEIL_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="VEIL_MAX_PIXELS"):
        vio.load_image(data)


def test_bomb_header_refused_before_decoding():
    data = F.png_bomb_header(60_000, 60_000)  # 3.6 gigapixels claimed in 100 KB
    with pytest.raises(ImageError, match="decompression bomb"):
        vio.load_image(data)
    with pytest.raises(ImageError, match="decompression bomb"):
        vio.load_image(F.png_bomb_header(20_000, 10_000), max_pixels=150_000_000)


def test_bomb_header_within_pillow_limit_refused_by_ours():
    with pytest.raises(ImageError, match="more than the limit of 1,000,000"):
        vio.load_image(F.png_bomb_header(2_000, 1_000), max_pixels=1_000_000)


def test_pillow_bomb_warning_never_leaks(monkeypatch):
    """Pillow warns above its own limit; veil's limit replaces it. pytest
    turns warnings into errors here, so a leak would fail this test."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    filters_before = list(warnings.filters)
    data = F.encode_with_pillow(np.zeros((40, 40, 3), np.uint8), "PNG")  # 1,600 px: warns in Pillow
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vio.load_image(data).pixels.shape == (40, 40, 3)
        big = F.encode_with_pillow(np.zeros((50, 50, 3), np.uint8), "PNG")  # > 2x: Pillow's error
        with pytest.raises(ImageError, match="decompression bomb"):
            vio.load_image(big)
    assert warnings.filters == filters_before


def test_concurrent_loads_are_independent(monkeypatch):
    """Threads loading at once (a service) get their own pixels, and the
    warning filters that veil adjusts around Pillow end up as they began."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # every load takes the quiet-warnings path
    files = [F.encode_with_pillow(np.full((30 + i, 40, 3), 10 * i, np.uint8), "PNG") for i in range(8)]
    filters_before = list(warnings.filters)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(vio.load_image, files * 8))
    for i, loaded in enumerate(results):
        expected = i % 8
        assert loaded.pixels.shape == (30 + expected, 40, 3)
        assert (loaded.pixels == 10 * expected).all()
    assert warnings.filters == filters_before


@pytest.mark.parametrize("bad", [0, -5, 1.5, "100", True])
def test_bad_max_pixels(bad):
    with pytest.raises((TypeError, ValueError)):
        vio.load_image(F.plain_jpeg(), max_pixels=bad)


# --------------------------------------------------------------------------
# Bad input: clear ImageError, never a raw Pillow traceback
# --------------------------------------------------------------------------


def _png_with_idat(idat: bytes) -> bytes:
    header = F.png_bomb_header(64, 64)
    ihdr_end = 8 + 25
    return header[:ihdr_end] + F.png_chunk(b"IDAT", idat) + F.png_chunk(b"IEND", b"")


def _truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _noise(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8)


@pytest.mark.parametrize(
    "label, make, message",
    [
        ("truncated-jpeg", lambda: _truncated(F.plain_jpeg(_noise(1))), "truncated"),
        ("truncated-png", lambda: _truncated(F.encode_with_pillow(_noise(2), "PNG")), "truncated|corrupt"),
        ("header-only-jpeg", lambda: F.plain_jpeg()[:30], "corrupt|truncated|not an image"),
        ("random-bytes", lambda: bytes(random.Random(3).randrange(256) for _ in range(4096)), "not an image"),
        ("text", lambda: b"<html><body>not a photo</body></html>", "not an image"),
        ("empty", lambda: b"", "empty"),
        ("png-bad-idat", lambda: _png_with_idat(b"this is not zlib data"), "truncated|corrupt"),
        ("png-cut-idat", lambda: _png_with_idat(zlib.compress(bytes(65 * 64)))[:-20] + bytes(20), "truncated|corrupt"),
    ],
)
def test_bad_data_gives_image_error(label, make, message):
    with pytest.raises(ImageError, match=message) as caught:
        vio.load_image(make())
    assert isinstance(caught.value, ValueError)
    assert "image data" in str(caught.value)


def test_bad_files_named_in_error(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg' is empty"):
        vio.load_image(empty)
    broken = tmp_path / "broken.png"
    broken.write_bytes(_truncated(F.encode_with_pillow(_noise(4), "PNG")))
    with pytest.raises(ImageError, match=r"broken\.png"):
        vio.load_image(broken)
    with pytest.raises(ImageError, match=r"missing\.jpg.*no such file"):
        vio.load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="folder"):
        vio.load_image(tmp_path)


def test_every_truncation_of_a_jpeg_is_handled():
    """Cut a dirty JPEG at many points: each load either succeeds or raises
    ImageError (never another exception), and the scanner never crashes."""
    data = F.dirty_jpeg()
    step = max(1, len(data) // 60)
    for cut in list(range(0, len(data), step)) + [1, 2, 3, 4, 5]:
        piece = data[:cut]
        assert isinstance(vio.scan_metadata(piece), list)
        with contextlib.suppress(ImageError):
            vio.load_image(piece)


def test_missing_pillow_heif_gives_clear_error(monkeypatch):
    monkeypatch.setattr(vio, "_heif_ready", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import now fails
    fake_heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(ImageError, match="pillow-heif"):
        vio.load_image(fake_heic)


# --------------------------------------------------------------------------
# HEIC / HEIF
# --------------------------------------------------------------------------


@pytest.mark.skipif(not HEIF_ENCODER, reason="pillow-heif with a HEIF encoder is not installed")
def test_heic_round_trip_to_clean_jpeg(tmp_path):
    import pillow_heif

    pillow_heif.register_heif_opener()
    source = F.asymmetric_rgb(64, 96)
    buf = io.BytesIO()
    Image.fromarray(source).save(buf, "HEIF", quality=95, exif=b"Exif\x00\x00" + F.build_exif(), xmp=F.xmp_packet())
    heic = buf.getvalue()
    findings = " | ".join(vio.scan_metadata(heic))
    assert "EXIF" in findings and "XMP" in findings
    path = tmp_path / "phone.heic"
    path.write_bytes(heic)
    loaded = vio.load_image(path)
    assert loaded.format == "HEIF"
    assert loaded.pixels.shape == source.shape
    assert np.abs(loaded.pixels.astype(int) - source).mean() < 6
    out_format = vio.output_format_for(loaded.format)
    assert out_format == "JPEG"
    out_path = tmp_path / ("phone" + vio.extension_for(out_format))
    vio.save_image(loaded.pixels, out_path)
    assert_clean(out_path.read_bytes(), "JPEG")


@pytest.mark.skipif(not HEIF_ENCODER, reason="pillow-heif with a HEIF encoder is not installed")
def test_heic_orientation_applied():
    import pillow_heif

    pillow_heif.register_heif_opener()
    source = F.asymmetric_rgb(64, 96)
    buf = io.BytesIO()
    Image.fromarray(source).save(buf, "HEIF", quality=95, exif=b"Exif\x00\x00" + F.build_exif(orientation=6))
    loaded = vio.load_image(buf.getvalue())
    expected = np.rot90(source, k=-1)
    assert loaded.pixels.shape == expected.shape
    assert np.abs(loaded.pixels.astype(int) - expected).mean() < 6


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_encode_round_trip(fmt, channels):
    rgb = F.asymmetric_rgb()
    pixels = {1: rgb[..., :1].copy(), 3: rgb, 4: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])}[channels]
    data = vio.encode_image(pixels, fmt)
    assert_clean(data, fmt)
    back = vio.load_image(data).pixels
    lossy = fmt in ("JPEG", "WEBP")
    expected = pixels
    if fmt in ("JPEG", "BMP") and channels == 4:
        expected = rgb  # flattened (alpha was opaque)
    if fmt == "WEBP" and channels == 1:
        expected = np.repeat(pixels, 3, axis=2)  # WebP has no grey layout
    if fmt == "WEBP" and channels == 4 and back.shape[2] == 3:
        expected = rgb  # libwebp leaves out an alpha channel that is fully opaque
    assert back.shape == expected.shape
    diff = np.abs(back.astype(int) - expected)
    assert diff.mean() < (4 if lossy else 0.001)


def test_jpeg_defaults_quality_90_and_420_subsampling():
    from PIL import JpegImagePlugin

    data = vio.encode_image(np.random.default_rng(5).integers(0, 255, (32, 32, 3), np.uint8), "jpg")
    with Image.open(io.BytesIO(data)) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
        assert im.layers == 3
    better = vio.encode_image(np.random.default_rng(5).integers(0, 255, (32, 32, 3), np.uint8), "JPEG", quality=100)
    assert len(better) > len(data)


def test_rgba_to_jpeg_flattens_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish colour...
    rgba[:2, :, 3] = 0  # ...fully transparent on the top half
    rgba[2:, :, 3] = 255
    back = vio.load_image(vio.encode_image(rgba, "JPEG")).pixels.astype(int)
    assert (back[0, 0] > 245).all(), "transparent pixels must become white"
    assert abs(back[3, 0, 0] - 200) < 12 and back[3, 0, 1] < 15


def test_hidden_colour_under_transparent_pixels_is_zeroed():
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[0, 0] = (11, 22, 33, 0)  # invisible but carries colour
    for fmt in ("PNG", "TIFF"):
        back = vio.load_image(vio.encode_image(rgba, fmt)).pixels
        assert tuple(back[0, 0]) == (0, 0, 0, 0), fmt
    # Lossy WebP re-invents invisible colours itself; the hidden one must still be gone.
    back = vio.load_image(vio.encode_image(rgba, "WEBP")).pixels
    assert back[0, 0, 3] == 0 and tuple(back[0, 0, :3]) != (11, 22, 33)
    assert rgba[0, 0, 0] == 11, "the caller's array must not change"


@pytest.mark.parametrize(
    "args, error",
    [
        ((np.zeros((4, 4, 3), np.uint8), "GIF"), ValueError),
        ((np.zeros((4, 4, 3), np.uint8), "HEIC"), ValueError),
        ((np.zeros((4, 4, 3), np.uint8), 5), TypeError),
        ((np.zeros((4, 4, 3), np.float64), "PNG"), TypeError),
        ((np.zeros((4, 4, 2), np.uint8), "PNG"), ValueError),
        (([[0, 1]], "PNG"), TypeError),
    ],
)
def test_encode_bad_parameters(args, error):
    with pytest.raises(error):
        vio.encode_image(*args)


def test_encode_too_large_for_format():
    with pytest.raises(ImageError, match="16383"):
        vio.encode_image(np.zeros((2, 16_384, 3), np.uint8), "WEBP")
    with pytest.raises(ImageError, match="65500"):
        vio.encode_image(np.zeros((65_501, 1, 1), np.uint8), "JPEG")
    assert vio.load_image(vio.encode_image(np.zeros((2, 16_384, 3), np.uint8), "PNG")).width == 16_384


@pytest.mark.parametrize("quality, error", [(0, ValueError), (101, ValueError), (True, TypeError), (90.0, TypeError)])
def test_encode_bad_quality(quality, error):
    with pytest.raises(error):
        vio.encode_image(np.zeros((4, 4, 3), np.uint8), "JPEG", quality=quality)


def test_encode_fails_closed_if_metadata_appears(monkeypatch):
    """If the writer ever produced metadata, encode_image must refuse."""
    real_fresh = vio._fresh_image

    def leaky(pixels, fmt):
        im = real_fresh(pixels, fmt)
        real_save = im.save

        def save(fp, format=None, **options):
            real_save(fp, format, comment=F.SECRET_COMMENT, **options)

        im.save = save
        return im

    monkeypatch.setattr(vio, "_fresh_image", leaky)
    with pytest.raises(vio.MetadataError, match="COM"):
        vio.encode_image(np.zeros((8, 8, 3), np.uint8), "JPEG")


# --------------------------------------------------------------------------
# Output format choice
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "input_format, path, expected",
    [
        ("JPEG", None, "JPEG"), ("MPO", None, "JPEG"), ("PNG", None, "PNG"), ("WEBP", None, "WEBP"),
        ("TIFF", None, "TIFF"), ("BMP", None, "BMP"), ("HEIF", None, "JPEG"), ("heic", None, "JPEG"),
        ("AVIF", None, "JPEG"), ("GIF", None, "PNG"), ("ICO", None, "PNG"), (None, None, "PNG"),
        ("HEIF", "out/photo.png", "PNG"), ("PNG", "x.JPG", "JPEG"), ("JPEG", "x.jpeg", "JPEG"),
        ("JPEG", "x.tif", "TIFF"), ("JPEG", "x.webp", "WEBP"), ("JPEG", "x.bmp", "BMP"),
        ("JPEG", Path("noext"), "JPEG"), ("HEIF", "x.out", "JPEG"),
    ],
)  # fmt: skip
def test_output_format_for(input_format, path, expected):
    assert vio.output_format_for(input_format, path) == expected


@pytest.mark.parametrize("path", ["x.heic", "x.HEIF", "x.gif", "x.avif"])
def test_output_format_for_unwritable_extension(path):
    with pytest.raises(ValueError, match="cannot write"):
        vio.output_format_for("JPEG", path)


def test_extension_for():
    assert [vio.extension_for(f) for f in ("jpeg", "PNG", "webp", "TIFF", "bmp")] == [
        ".jpg",
        ".png",
        ".webp",
        ".tif",
        ".bmp",
    ]
    with pytest.raises(ValueError):
        vio.extension_for("HEIF")


# --------------------------------------------------------------------------
# Saving: atomic, never overwrites unless asked
# --------------------------------------------------------------------------

PIXELS = F.asymmetric_rgb()


def test_save_picks_format_from_extension(tmp_path):
    for name, fmt in [("a.jpg", "JPEG"), ("b.png", "PNG"), ("c.webp", "WEBP"), ("d.tiff", "TIFF"), ("e.bmp", "BMP")]:
        written = vio.save_image(PIXELS, tmp_path / name)
        assert written == tmp_path / name
        data = written.read_bytes()
        assert_clean(data, fmt)
    assert sorted(os.listdir(tmp_path)) == ["a.jpg", "b.png", "c.webp", "d.tiff", "e.bmp"]


def test_save_explicit_format_and_bad_paths(tmp_path):
    vio.save_image(PIXELS, tmp_path / "noext", format="png")
    assert_clean((tmp_path / "noext").read_bytes(), "PNG")
    with pytest.raises(ValueError, match="format"):
        vio.save_image(PIXELS, tmp_path / "noext2")
    with pytest.raises(ValueError, match="HEIC"):
        vio.save_image(PIXELS, tmp_path / "x.heic")
    with pytest.raises(FileNotFoundError):
        vio.save_image(PIXELS, tmp_path / "no-such-folder" / "x.png")
    assert sorted(os.listdir(tmp_path)) == ["noext"]


def test_save_refuses_to_overwrite(tmp_path):
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError, match="overwrite"):
        vio.save_image(PIXELS, target)
    assert target.read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["photo.jpg"]
    vio.save_image(PIXELS, target, overwrite=True)
    assert_clean(target.read_bytes(), "JPEG")
    assert os.listdir(tmp_path) == ["photo.jpg"]


def test_save_refuses_a_file_that_appears_while_encoding(tmp_path, monkeypatch):
    target = tmp_path / "photo.png"
    real_encode = vio.encode_image

    def slow_encode(*args, **kwargs):
        data = real_encode(*args, **kwargs)
        target.write_bytes(b"someone else's file")  # a concurrent writer wins the race
        return data

    monkeypatch.setattr(vio, "encode_image", slow_encode)
    with pytest.raises(FileExistsError):
        vio.save_image(PIXELS, target)
    assert target.read_bytes() == b"someone else's file"
    assert os.listdir(tmp_path) == ["photo.png"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_encode_leaves_folder_unchanged(tmp_path, monkeypatch, overwrite):
    if overwrite:
        (tmp_path / "photo.png").write_bytes(b"original")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_save(self, fp, format=None, **options):
        fp.write(b"\x89PNG partial")
        raise OSError("encoder crashed mid-way")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="mid-way"):
        vio.save_image(PIXELS, tmp_path / "photo.png", overwrite=overwrite)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_write_removes_temp_file(tmp_path, monkeypatch, overwrite):
    if overwrite:
        (tmp_path / "photo.jpg").write_bytes(b"original")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vio.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        vio.save_image(PIXELS, tmp_path / "photo.jpg", overwrite=overwrite)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failed_rename_removes_temp_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    (tmp_path / "photo.png").write_bytes(b"original")
    monkeypatch.setattr(vio.os, "replace", failing_replace)
    with pytest.raises(PermissionError):
        vio.save_image(PIXELS, tmp_path / "photo.png", overwrite=True)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["photo.png"]
    assert (tmp_path / "photo.png").read_bytes() == b"original"


def test_save_bad_parameters_write_nothing(tmp_path):
    with pytest.raises(ValueError):
        vio.save_image(PIXELS, tmp_path / "a.jpg", quality=0)
    with pytest.raises(TypeError):
        vio.save_image(PIXELS.astype(np.float32), tmp_path / "a.png")
    with pytest.raises(TypeError):
        vio.save_image(PIXELS, tmp_path / "a.png", overwrite="yes")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "umask"), reason="POSIX permissions")
def test_saved_file_has_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = vio.save_image(PIXELS, tmp_path / "a.png")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# --------------------------------------------------------------------------
# The scanner on its own
# --------------------------------------------------------------------------


def test_scanner_clean_outputs_of_pillow_writer():
    for fmt in OUTPUT_FORMATS:
        assert vio.scan_metadata(vio.encode_image(PIXELS, fmt)) == []


def test_scanner_jfif_thumbnail_and_unknown_app_segment():
    jpeg = F.plain_jpeg()
    app0_len = struct.unpack(">H", jpeg[4:6])[0]
    app0 = jpeg[6 : 4 + app0_len]
    with_thumb = app0[:12] + b"\x01\x01" + b"\xff\x00\x00"
    data = jpeg[:4] + struct.pack(">H", len(with_thumb) + 2) + with_thumb + jpeg[4 + app0_len :]
    assert "JFIF thumbnail" in " ".join(vio.scan_metadata(data))
    data = F.insert_jpeg_segments(jpeg, [F.segment(0xEB, b"JP\x00\x01c2pa-manifest")])
    assert "APP11" in " ".join(vio.scan_metadata(data))


def test_scanner_png_details():
    base = F.encode_with_pillow(PIXELS, "PNG")
    profile = F.linear_rgb_profile()
    data = F.insert_png_chunks(base, [F.png_chunk(b"iCCP", b"x\x00\x00" + zlib.compress(profile)),
                                      F.png_chunk(b"caBX", b"c2pa")])  # fmt: skip
    findings = vio.scan_metadata(data)
    assert any("iCCP" in f for f in findings) and any("caBX" in f for f in findings)
    assert vio.scan_metadata(data, allow_icc=True) == ["PNG chunk 'caBX' (4 bytes)"]
    assert "no IEND" in " ".join(vio.scan_metadata(base[:-12]))
    apng = F.frames_file("PNG")
    assert "APNG" in " ".join(vio.scan_metadata(apng))


def test_scanner_tiff_tags():
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(
        buf, "TIFF", tiffinfo={270: "a description", 271: "VeilCam", 305: "EditorApp", 315: "Jane"}
    )
    text = " ".join(vio.scan_metadata(buf.getvalue()))
    for name in ("ImageDescription", "Make", "Software", "Artist"):
        assert name in text
    buf = io.BytesIO()
    exif = Image.Exif()
    exif.load(F.build_exif())
    Image.fromarray(PIXELS).save(buf, "TIFF", exif=exif)
    text = " ".join(vio.scan_metadata(buf.getvalue()))
    assert "GPS" in text and "EXIF" in text
    assert "further images" in " ".join(vio.scan_metadata(F.frames_file("TIFF")))


def test_scanner_gif_bmp_webp_and_unknown():
    gif = io.BytesIO()
    Image.fromarray(PIXELS).save(gif, "GIF", comment=F.SECRET_COMMENT)
    assert "GIF: comment" in " ".join(vio.scan_metadata(gif.getvalue()))
    assert "after the end" in " ".join(vio.scan_metadata(gif.getvalue() + b"hidden"))
    bmp = vio.encode_image(PIXELS, "BMP")
    assert vio.scan_metadata(bmp) == []
    assert "after the end" in " ".join(vio.scan_metadata(bmp + F.plain_jpeg()))
    webp = vio.encode_image(PIXELS, "WEBP")
    assert "after the end" in " ".join(vio.scan_metadata(webp + b"x"))
    assert "animation" in " ".join(vio.scan_metadata(F.frames_file("WEBP", lossless=True)))
    assert vio.scan_metadata(b"") == ["empty file: nothing to check"]
    assert "unrecognised" in vio.scan_metadata(b"hello world")[0]
    with pytest.raises(TypeError):
        vio.scan_metadata("not bytes")


def test_scanner_survives_garbage():
    rng = random.Random(7)
    samples = [F.dirty_jpeg(), F.dirty_png(), F.dirty_webp(), vio.encode_image(PIXELS, "TIFF"), F.frames_file("GIF")]
    for data in samples:
        for _ in range(40):
            mutated = bytearray(data)
            for _ in range(rng.randrange(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cut = rng.randrange(1, len(mutated) + 1)
            result = vio.scan_metadata(bytes(mutated[:cut]))
            assert isinstance(result, list)


def test_scanner_flags_malformed_jpeg_rather_than_passing_it():
    assert vio.scan_metadata(F.plain_jpeg()[:-2]) != []  # no EOI
    assert vio.scan_metadata(b"\xff\xd8\xff\xe1\xff\xff") != []  # segment past the end


# --------------------------------------------------------------------------
# Robustness: damaged files and arbitrary bytes
# --------------------------------------------------------------------------


def _damage_sources():
    pixels = F.asymmetric_rgb()
    cmyk = io.BytesIO()
    Image.new("CMYK", (24, 24), (10, 20, 30, 40)).save(cmyk, "JPEG")
    sixteen = io.BytesIO()
    Image.fromarray((np.arange(32 * 32, dtype=np.uint16) * 60).reshape(32, 32)).save(sixteen, "PNG")
    return {
        "jpeg": F.dirty_jpeg,
        "png": F.dirty_png,
        "webp": F.dirty_webp,
        "tiff": lambda: vio.encode_image(pixels, "TIFF"),
        "bmp": lambda: vio.encode_image(pixels, "BMP"),
        "gif": lambda: F.frames_file("GIF", count=1),
        "cmyk-jpeg": cmyk.getvalue,
        "png16": sixteen.getvalue,
    }


@pytest.mark.parametrize("kind", sorted(_damage_sources()))
def test_damaged_files_load_or_raise_image_error(kind):
    """Flip random bytes and cut files short: load_image either returns a
    valid image or raises ImageError; no other exception or warning escapes
    (warnings are errors under pytest here)."""
    data = _damage_sources()[kind]()
    rng = random.Random(f"damage-{kind}")
    for _ in range(80):
        damaged = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.3:
            damaged = damaged[: rng.randrange(1, len(damaged))]
        assert isinstance(vio.scan_metadata(bytes(damaged)), list)
        try:
            loaded = vio.load_image(bytes(damaged))
        except ImageError:
            continue
        assert loaded.pixels.dtype == np.uint8 and loaded.pixels.ndim == 3 and loaded.channels in (1, 3, 4)


MAGIC_PREFIXES = [
    b"\xff\xd8", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00", b"\x89PNG\r\n\x1a\n", b"RIFF\x40\x00\x00\x00WEBP",
    b"II*\x00", b"MM\x00*", b"BM", b"GIF89a", b"\x00\x00\x00\x18ftypheic", b"",
]  # fmt: skip


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(MAGIC_PREFIXES), body=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(prefix, body):
    data = prefix + body
    assert isinstance(vio.scan_metadata(data), list)
    with contextlib.suppress(ImageError):
        vio.load_image(data)
