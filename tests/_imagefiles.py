"""Build image files that carry known metadata, at test time.

Nothing here is stored on disk: every test file is made from generated
pixels plus hand-assembled metadata blocks (EXIF with GPS, serial numbers, a
MakerNote and an IFD1 thumbnail; XMP; IPTC; comments; MPF secondary images;
hidden trailing JPEGs; PNG text chunks; ICC profiles). Each identifying value
is a distinctive string (see the ``SECRET_*`` constants) so a test can search
an output's raw bytes for it.

The metadata blocks are assembled byte by byte here rather than with Pillow,
so that the tests do not depend on the same library as the code under test
for what "metadata" looks like.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# Distinctive values planted in test files; none of them may reach an output.
SECRET_SERIAL = b"VEILSERIAL0042"
SECRET_OWNER = b"VEIL-OWNER-Jane-Doe"
SECRET_MAKERNOTE = b"VEIL-MAKERNOTE-\x00\x01\x02-private-camera-data"
SECRET_MAKE = b"VeilCam"
SECRET_MODEL = b"VeilCam Model X"
SECRET_XMP = b"VEIL-XMP-EDIT-HISTORY"
SECRET_IPTC = b"VEIL-IPTC-CAPTION"
SECRET_COMMENT = b"VEIL-SECRET-COMMENT"
SECRET_TRAILER = b"VEIL-HIDDEN-ORIGINAL"
SECRET_PNG_TEXT = b"VEIL-PNG-TEXT"
SECRET_PNG_ITXT = b"VEIL-PNG-ITXT"
SECRET_PNG_ZTXT = b"VEIL-PNG-ZTXT"
SECRET_ICC_DESC = b"VEIL-ICC-Device-Serial-777"
# GPS 48 deg 51' 29.40" N, 2 deg 17' 40.00" E, as EXIF rationals.
GPS_LATITUDE = ((48, 1), (51, 1), (2940, 100))
GPS_LONGITUDE = ((2, 1), (17, 1), (4000, 100))
GPS_RATIONAL_BYTES = struct.pack("<II", 2940, 100)  # the seconds value, as stored

FACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"

SOI = b"\xff\xd8\xff"


# --------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------


def asymmetric_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """An image whose every flip and rotation looks different: four flat
    quadrants in clearly different colours plus a white marker block near the
    top-left corner. Flat areas survive JPEG well, so pixels can be compared
    with a tolerance."""
    img = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    img[:h2, :w2] = (220, 30, 30)
    img[:h2, w2:] = (30, 200, 40)
    img[h2:, :w2] = (30, 40, 210)
    img[h2:, w2:] = (230, 210, 40)
    img[2 : h2 // 2, 2 : w2 // 3] = (255, 255, 255)
    return img


def thumbnail_pattern(size: int = 32) -> np.ndarray:
    """A recognisable thumbnail: a face crop from the shared photos when
    they are present, otherwise a red/blue checkerboard."""
    portrait = FACES_DIR / "portraits"
    if portrait.is_dir():
        photos = sorted(portrait.glob("*.jpg"))
        if photos:
            with Image.open(photos[0]) as im:
                im = im.convert("RGB")
                w, h = im.size
                side = min(w, h) // 2
                box = ((w - side) // 2, (h - side) // 3, (w - side) // 2 + side, (h - side) // 3 + side)
                return np.asarray(im.crop(box).resize((size, size)))
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((yy // 4 + xx // 4) % 2).astype(bool)
    img = np.zeros((size, size, 3), np.uint8)
    img[checker] = (255, 0, 0)
    img[~checker] = (0, 0, 255)
    return img


def encode_with_pillow(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **options)
    return buf.getvalue()


def plain_jpeg(pixels: Optional[np.ndarray] = None, quality: int = 95) -> bytes:
    return encode_with_pillow(asymmetric_rgb() if pixels is None else pixels, "JPEG", quality=quality)


# --------------------------------------------------------------------------
# TIFF / EXIF structures, little-endian, assembled by hand
# --------------------------------------------------------------------------

Entry = Tuple[int, int, int, bytes]  # tag, type, count, value bytes


def ascii_entry(tag: int, text: bytes) -> Entry:
    value = text + b"\x00"
    return (tag, 2, len(value), value)


def short_entry(tag: int, value: int) -> Entry:
    return (tag, 3, 1, struct.pack("<H", value))


def long_entry(tag: int, value: int) -> Entry:
    return (tag, 4, 1, struct.pack("<I", value))


def rational_entry(tag: int, values: Sequence[Tuple[int, int]]) -> Entry:
    return (tag, 5, len(values), b"".join(struct.pack("<II", n, d) for n, d in values))


def undefined_entry(tag: int, data: bytes) -> Entry:
    return (tag, 7, len(data), data)


def byte_entry(tag: int, data: bytes) -> Entry:
    return (tag, 1, len(data), data)


def _ifd(entries: List[Entry], offset: int, next_ifd: int) -> bytes:
    """One IFD at file offset ``offset``, its out-of-line values after it."""
    entries = sorted(entries)
    data_at = offset + 2 + 12 * len(entries) + 4
    table = struct.pack("<H", len(entries))
    extra = b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            field = value.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", data_at + len(extra))
            extra += value + (b"\x00" if len(value) % 2 else b"")
        table += struct.pack("<HHI", tag, kind, count) + field
    return table + struct.pack("<I", next_ifd) + extra


def build_exif(
    *,
    orientation: Optional[int] = None,
    gps: bool = True,
    serial: bool = True,
    makernote: bool = True,
    thumbnail: Optional[bytes] = None,
) -> bytes:
    """A TIFF-structured EXIF block ("II*\\0" ...), without the "Exif\\0\\0"
    prefix that JPEG adds. IFD0 -> EXIF IFD, GPS IFD; IFD1 holds the JPEG
    ``thumbnail`` when given."""
    exif_entries = [ascii_entry(36867, b"2024:05:01 12:34:56")]
    if serial:
        exif_entries += [ascii_entry(42033, SECRET_SERIAL), ascii_entry(42032, SECRET_OWNER)]
    if makernote:
        exif_entries.append(undefined_entry(37500, SECRET_MAKERNOTE))
    gps_entries = [
        byte_entry(0, b"\x02\x02\x00\x00"),
        ascii_entry(1, b"N"),
        rational_entry(2, GPS_LATITUDE),
        ascii_entry(3, b"E"),
        rational_entry(4, GPS_LONGITUDE),
    ]

    def ifd0_entries(exif_at: int, gps_at: int) -> List[Entry]:
        entries = [ascii_entry(271, SECRET_MAKE), ascii_entry(272, SECRET_MODEL), long_entry(34665, exif_at)]
        if orientation is not None:
            entries.append(short_entry(274, orientation))
        if gps:
            entries.append(long_entry(34853, gps_at))
        return entries

    def ifd1_entries(thumb_at: int) -> List[Entry]:
        assert thumbnail is not None
        return [short_entry(259, 6), long_entry(513, thumb_at), long_entry(514, len(thumbnail))]

    # Sizes do not depend on offsets, so lay out once with zeros, then for real.
    def layout(exif_at: int, gps_at: int, ifd1_at: int, thumb_at: int) -> Tuple[bytes, Tuple[int, int, int, int]]:
        out = b"II*\x00" + struct.pack("<I", 8)
        ifd0 = _ifd(ifd0_entries(exif_at, gps_at), 8, ifd1_at if thumbnail else 0)
        out += ifd0
        exif_real = len(out)
        out += _ifd(exif_entries, exif_real, 0)
        gps_real = len(out)
        if gps:
            out += _ifd(gps_entries, gps_real, 0)
        ifd1_real = len(out)
        thumb_real = 0
        if thumbnail:
            out += _ifd(ifd1_entries(thumb_at), ifd1_real, 0)
            thumb_real = len(out)
            out += thumbnail
        return out, (exif_real, gps_real, ifd1_real, thumb_real)

    _, offsets = layout(0, 0, 0, 0)
    data, check = layout(*offsets)
    assert check == offsets
    return data


# --------------------------------------------------------------------------
# JPEG
# --------------------------------------------------------------------------


def segment(marker: int, payload: bytes) -> bytes:
    assert len(payload) + 2 <= 0xFFFF
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def insert_jpeg_segments(jpeg: bytes, segments: Iterable[bytes]) -> bytes:
    """Insert segments after SOI (and after the JFIF APP0 when present)."""
    assert jpeg.startswith(b"\xff\xd8")
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:pos] + b"".join(segments) + jpeg[pos:]


def exif_segment(tiff: bytes) -> bytes:
    return segment(0xE1, b"Exif\x00\x00" + tiff)


def xmp_packet() -> bytes:
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" xmpMM:History="' + SECRET_XMP + b'"/>'
        b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def xmp_segment() -> bytes:
    return segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp_packet())


def iptc_segment() -> bytes:
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(SECRET_IPTC)) + SECRET_IPTC  # 2:120 caption
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    if len(iptc) % 2:
        resource += b"\x00"
    return segment(0xED, b"Photoshop 3.0\x00" + resource)


def comment_segment() -> bytes:
    return segment(0xFE, SECRET_COMMENT)


def icc_segment(profile: bytes) -> bytes:
    return segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + profile)


def jpeg_with_exif(pixels: Optional[np.ndarray] = None, **exif_options) -> bytes:
    return insert_jpeg_segments(plain_jpeg(pixels), [exif_segment(build_exif(**exif_options))])


def make_mpo(primary: bytes, secondary: bytes) -> bytes:
    """A Multi-Picture (MPO) file: ``primary`` with an APP2 "MPF" index, then
    ``secondary`` appended after its end-of-image marker."""

    def app2(primary_size: int, secondary_offset: int) -> bytes:
        entries = struct.pack("<IIIHH", 0x20030000, primary_size, 0, 0, 0)
        entries += struct.pack("<IIIHH", 0x00020002, len(secondary), secondary_offset, 0, 0)
        ifd_entries = [undefined_entry(0xB000, b"0100"), long_entry(0xB001, 2), (0xB002, 7, 32, entries)]
        return segment(0xE2, b"MPF\x00" + b"II*\x00" + struct.pack("<I", 8) + _ifd(ifd_entries, 8, 0))

    insert_at = 2 if primary[2:4] != b"\xff\xe0" else 4 + struct.unpack(">H", primary[4:6])[0]
    mp_header_at = insert_at + 4 + 4  # marker + length, then "MPF\0"; offsets count from the TIFF header
    size = len(primary) + len(app2(0, 0))
    first = insert_jpeg_segments(primary, [app2(size, size - mp_header_at)])
    assert len(first) == size
    return first + secondary


def dirty_jpeg(pixels: Optional[np.ndarray] = None, *, orientation: Optional[int] = None) -> bytes:
    """A JPEG that carries every kind of identifying data at once: EXIF (GPS,
    serial, owner, MakerNote, IFD1 thumbnail), XMP, IPTC, a comment, an MPF
    index with a second image, and a hidden original after the end."""
    thumb = encode_with_pillow(thumbnail_pattern(), "JPEG", quality=90)
    base = plain_jpeg(pixels)
    base = insert_jpeg_segments(
        base,
        [
            exif_segment(build_exif(orientation=orientation, thumbnail=thumb)),
            xmp_segment(),
            iptc_segment(),
            comment_segment(),
        ],
    )
    secondary = plain_jpeg(np.full((16, 16, 3), 77, np.uint8))
    hidden_original = plain_jpeg(thumbnail_pattern(48)) + SECRET_TRAILER
    return make_mpo(base, secondary) + hidden_original


# --------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def insert_png_chunks(png: bytes, chunks: Iterable[bytes]) -> bytes:
    """Insert chunks right after IHDR (before any IDAT, as eXIf/iCCP need)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    ihdr_end = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def dirty_png(pixels: Optional[np.ndarray] = None, *, orientation: Optional[int] = None) -> bytes:
    """A PNG with eXIf (GPS, serial, MakerNote), tEXt, iTXt (XMP), zTXt and
    tIME chunks, and a hidden JPEG after IEND."""
    base = encode_with_pillow(asymmetric_rgb() if pixels is None else pixels, "PNG")
    chunks = [
        png_chunk(b"eXIf", build_exif(orientation=orientation)),
        png_chunk(b"tEXt", b"Comment\x00" + SECRET_PNG_TEXT),
        png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp_packet() + SECRET_PNG_ITXT),
        png_chunk(b"zTXt", b"Description\x00\x00" + zlib.compress(SECRET_PNG_ZTXT)),
        png_chunk(b"tIME", struct.pack(">HBBBBB", 2024, 5, 1, 12, 34, 56)),
    ]
    return insert_png_chunks(base, chunks) + plain_jpeg(thumbnail_pattern(24)) + SECRET_TRAILER


def png_with_exif_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    base = encode_with_pillow(pixels, "PNG")
    tiff = b"II*\x00" + struct.pack("<I", 8) + _ifd([short_entry(274, orientation)], 8, 0)
    return insert_png_chunks(base, [png_chunk(b"eXIf", tiff)])


def png_bomb_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` grey pixels:
    its IDAT holds only one compressed row, so decoding it would be an
    attack, reading its header is not."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------
# ICC profiles
# --------------------------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", int(round(value * 65536)))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def linear_rgb_profile(description: bytes = SECRET_ICC_DESC) -> bytes:
    """An ICC v2 RGB display profile with sRGB's primaries but a *linear*
    tone curve (gamma 1.0), so converting it to sRGB brightens mid-tones
    predictably (linear 0.5 -> sRGB about 188/255). Its description is a
    device-identifying string that must never reach an output."""
    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(description) + 1) + description + b"\x00"
    desc += b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00" + b"\x00\x00" + b"\x00" + b"\x00" * 67
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">I", 1) + struct.pack(">H", 0x0100) + b"\x00\x00"
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", _xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\x00\x00\x00\x00" + b"no copyright\x00"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    body = b""
    for signature, data in tags:
        padded = data + b"\x00" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += padded
    size = 128 + table_size + len(body)
    header = struct.pack(">I", size) + b"none" + struct.pack(">I", 0x02100000) + b"mntr" + b"RGB " + b"XYZ "
    header += struct.pack(">HHHHHH", 2024, 1, 1, 0, 0, 0) + b"acsp" + b"APPL" + b"\x00" * 4 + b"none" + b"\x00" * 4
    header += b"\x00" * 8 + struct.pack(">I", 0) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"none"
    header = header.ljust(128, b"\x00")
    assert len(header) == 128
    return header + table + body


# --------------------------------------------------------------------------
# Other formats
# --------------------------------------------------------------------------


def dirty_webp(pixels: Optional[np.ndarray] = None, *, icc: Optional[bytes] = None) -> bytes:
    """A WebP with EXIF (GPS, serial, MakerNote) and XMP chunks."""
    options = {"exif": b"Exif\x00\x00" + build_exif(), "xmp": xmp_packet(), "lossless": True}
    if icc is not None:
        options["icc_profile"] = icc
    data = encode_with_pillow(asymmetric_rgb() if pixels is None else pixels, "WEBP", **options)
    assert b"EXIF" in data and b"XMP " in data
    return data


def frames_file(fmt: str, count: int = 2, **options) -> bytes:
    """An animated (or multi-page) file with ``count`` different frames."""
    frames = [Image.fromarray(np.full((16, 16, 3), 40 * (i + 1), np.uint8)) for i in range(count)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **options)
    return buf.getvalue()


# --------------------------------------------------------------------------
# Hostile files: truncations, bombs, decoding-cost attacks
# --------------------------------------------------------------------------


def photo_like(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photo, not like a flat
    test pattern, so truncating it at a fraction of its bytes cuts the
    image at about that fraction of its rows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 200 // max(1, width), y * 200 // max(1, height), (x + y) * 100 // max(1, width + height)], -1)
    return np.clip(base + rng.integers(0, 50, (height, width, 3)), 0, 255).astype(np.uint8)


def truncated(data: bytes, fraction: float, append: bytes = b"") -> bytes:
    """The first ``fraction`` of a file, plus ``append`` (e.g. a JPEG end
    marker, which makes libjpeg fill the rest with grey)."""
    return data[: max(1, int(len(data) * fraction))] + append


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is patched to claim ``width`` x
    ``height``: a few hundred bytes that would decode as a huge grey image."""
    data = bytearray(plain_jpeg(np.full((16, 16, 3), 128, np.uint8), quality=50))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def many_scans_jpeg(scans: int) -> bytes:
    """A progressive JPEG with ``scans`` extra copies of its last scan (a
    valid stream; libjpeg reads every one, each a pass over the image)."""
    data = encode_with_pillow(photo_like(32, 32), "JPEG", progressive=True)
    last_sos = data.rfind(b"\xff\xda")
    end = data.rfind(b"\xff\xd9")
    return data[:end] + data[last_sos:end] * scans + b"\xff\xd9"


def png_of_zeros(width: int, height: int, colour_type: int = 2, bit_depth: int = 8) -> bytes:
    """A well-formed PNG of ``width`` x ``height`` black pixels, compressed
    as far as deflate goes (about 1000:1): a bomb that is a valid file."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    row = b"\x00" * (1 + (width * channels * bit_depth + 7) // 8)
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(height)]
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def tiff_with_pages(pages: int) -> bytes:
    """A TIFF of ``pages`` chained 1x1 grey pages (one shared strip)."""
    strip_at = 8
    first = strip_at + 2  # one pixel, padded to even
    header = b"II*\x00" + struct.pack("<I", first)
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, strip_at), (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    out = [header, b"\x80\x00"]
    for i in range(pages):
        at = first + i * ifd_size
        nxt = at + ifd_size if i + 1 < pages else 0
        body = struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            body += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        out.append(body + struct.pack("<I", nxt))
    return b"".join(out)


def gif_bomb(width: int, height: int) -> bytes:
    """A GIF whose one frame claims ``width`` x ``height`` and whose LZW data
    ends at once (Pillow decodes nothing, then allocates the whole canvas)."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return head + frame + b"\x3b"
