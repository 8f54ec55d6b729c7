"""Reading photos in, writing clean photos out.

This module is veil's only door to image files. Everything that comes in is
turned into a plain pixel array, and everything that goes out is built from
that pixel array alone, so nothing that identifies the photographer or the
people in the photo can ride along in the file.

Reading (:func:`load_image`)
    Accepts a path, ``bytes``/``bytearray``/``memoryview``, a binary file
    object, a :class:`PIL.Image.Image`, or a ``uint8`` numpy array, and returns
    a :class:`LoadedImage` whose ``pixels`` are a C-contiguous, writeable
    ``uint8`` array of shape ``(height, width, channels)`` with 1 (grey),
    3 (RGB) or 4 (RGBA) channels -- the only layouts veil's kernels accept.

    * **Orientation first.** The EXIF orientation tag (1-8) is applied to the
      pixels before anything else (as ``ImageOps.exif_transpose`` would), so
      faces are found and blurred where a viewer shows them, and the output
      needs no orientation tag.
    * **Formats:** JPEG (including MPO, the JPEG variant phones and 3-D
      cameras use for extra images; only the main image is read), PNG, WebP,
      TIFF, BMP, GIF, AVIF (where Pillow supports it), and HEIC/HEIF through
      ``pillow-heif``, registered the first time a HEIF file is seen. For a
      HEIF file holding several top-level images the primary image is used.
      Every other format Pillow knows (PSD, ICO, PPM, ...) is refused
      unread (:data:`READABLE_FORMATS`).
    * **Modes:** ``1`` becomes grey; ``L`` stays grey; ``P`` (palette) becomes
      RGB, or RGBA when the palette has transparency; ``LA``/``PA``/``La``
      become RGBA (veil has no 2-channel layout); ``RGBX`` becomes RGB;
      ``RGBa`` becomes RGBA; ``CMYK`` and ``YCbCr`` become RGB. Grey or RGB
      images with a ``tRNS`` transparent colour become RGBA. 16-bit images
      (``I;16``, ``I;16B``, ``I;16L``, and ``I`` as Pillow uses it for 16-bit
      PNGs) are scaled linearly to 8 bits (``round(v * 255 / 65535)``);
      an ``I`` image with values outside 0..65535 is refused. Floating-point
      (``F``) images and other modes (``LAB``, ``HSV``, ...) are refused with
      an :class:`ImageError`: there is no single right way to map them to
      8-bit display values, and guessing could hide part of a face.
    * **Animated images** (GIF, WebP, APNG, multi-page TIFF with more than one
      frame) are refused. Anonymizing only the first frame and writing a
      still image would silently throw the rest away or, worse, tempt a
      caller to believe the whole animation was handled.
    * **Decompression bombs:** an image with more pixels than ``max_pixels``
      (default :data:`DEFAULT_MAX_PIXELS`, 120 megapixels, or the
      ``VEIL_MAX_PIXELS`` environment variable) is refused from its header,
      before its pixel data is decoded. Pillow's own
      ``DecompressionBombWarning`` is never let out; its
      ``DecompressionBombError`` becomes an :class:`ImageError`.
    * **Decoding cost**, also from the header: a photo whose processing
      would take more memory than the decode budget
      (:data:`DEFAULT_MAX_DECODE_MB`, ``VEIL_MAX_DECODE_MB``,
      ``max_memory_mb``), one above 16 MP that declares more than
      :data:`MAX_PIXELS_PER_BYTE` pixels per byte of file, a JPEG with more
      than :data:`MAX_JPEG_SCANS` scans, and a multi-page TIFF (its pages
      counted in one linear walk) are refused.
    * **Truncated or corrupt** files are refused in every format. libjpeg
      fills a JPEG whose data stops early with grey and only warns, so a
      one-scan JPEG is decoded without its end marker (a short scan then
      runs out of data, which Pillow reports) and a progressive one must
      refine every coefficient to full precision. ``allow_damaged=True``
      decodes what there is instead and says so in the notes.
    * **Only regular files** are opened: a FIFO, device or socket is refused
      from ``stat`` before ``open`` (a FIFO would block), and again from
      ``fstat`` of what was opened with ``O_NONBLOCK``.
    * **Bad input** (missing file, directory, empty, truncated, corrupt, not
      an image) raises :class:`ImageError`, a ``ValueError``, whose message
      names the file (see :func:`describe_path`) and says what is wrong.

Colour profiles (the ICC decision)
    An embedded ICC profile can identify: its free-text description often
    names the camera or scanner, and a profile made by calibrating one device
    is a fingerprint of that device. Dropping it without converting would
    shift the colours (a Display P3 photo from a phone looks dull). So by
    default :func:`load_image` *converts the pixels to sRGB* with LittleCMS
    (``PIL.ImageCms``) and forgets the profile; outputs carry no profile and
    are read as sRGB everywhere. Grey images are the exception: a grey
    profile is dropped without conversion (the difference between grey
    gammas is small and Pillow has no standard grey target profile), and so
    is any profile of a 16-bit image. If a profile cannot be used (corrupt,
    or made for another colour space) it is dropped and the pixels are kept
    as stored; :attr:`LoadedImage.notes` says so. Callers who need the original profile can pass
    ``keep_icc_profile=True`` and hand :attr:`LoadedImage.icc_profile` to
    :func:`encode_image`; :func:`scan_metadata` then needs ``allow_icc=True``.

Writing (:func:`encode_image`, :func:`save_image`)
    The output is made from a fresh ``Image.fromarray`` of the pixel array and
    ``save`` gets nothing but the format's quality settings (no ``exif=``, no
    ``pnginfo``, no XMP, no comment). Before the bytes are returned they are
    checked with :func:`scan_metadata`; anything found raises
    :class:`MetadataError` and nothing is written (fail closed).

    * JPEG: quality 90 by default, 4:2:0 chroma subsampling, a plain JFIF
      header. JPEG has no alpha, so an RGBA image is **flattened onto white**
      (what most viewers and messengers show behind transparency) rather than
      dropping the alpha channel, which would reveal whatever colour hides
      under transparent pixels. BMP is flattened the same way, because most
      BMP readers ignore the alpha byte.
    * PNG, WebP and TIFF (deflate-compressed) keep alpha. Before encoding,
      the colour under fully transparent pixels is set to black: those
      pixels are invisible, so they must not carry hidden picture data
      (lossy WebP may then fill them from their visible neighbours).
    * :func:`save_image` writes atomically: to an unnamed ``O_TMPFILE`` file
      in the destination folder (Linux), fsynced, then given its name with
      ``linkat``, so even a hard kill leaves nothing; elsewhere to a short
      hidden ``.<pid>-<random>.veil-tmp`` file that is renamed into place,
      removed on failure, and removed by the next write into that folder if
      its run was killed. It refuses to replace an existing file unless
      ``overwrite=True``. Errors name the target, never a temporary file.

Checking (:func:`scan_metadata`)
    An independent byte-level parser (it does not use Pillow) that walks JPEG
    markers, PNG chunks, WebP RIFF chunks, TIFF tags, BMP headers, GIF blocks
    and HEIF boxes, and lists every piece of identifying or unexplained data
    that a file still carries: EXIF (with GPS, serial numbers, MakerNote, the
    IFD1 thumbnail called out), XMP, IPTC/Photoshop, comments, text chunks,
    timestamps, ICC profiles, MPF secondary images, thumbnails, and bytes
    after the end of the image. An empty list means the file is clean. A file
    it cannot parse yields a finding too, so a caller that refuses to write
    when the list is non-empty fails closed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import stat
import struct
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageCms, JpegImagePlugin

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "DEFAULT_MAX_DECODE_MB",
    "MAX_DECODE_MB_ENV",
    "READABLE_FORMATS",
    "WRITABLE_FORMATS",
    "ImageError",
    "MetadataError",
    "LoadedImage",
    "load_image",
    "encode_image",
    "save_image",
    "output_format_for",
    "extension_for",
    "scan_metadata",
]

#: Largest image (width x height) that :func:`load_image` decodes by default:
#: 120 megapixels, above every current phone and most DSLRs. Memory, not
#: this limit, binds first for colour photos: processing 120 MP takes about
#: 3 GB (not the 480 MB of one RGBA copy), over the default decode budget
#: (:data:`DEFAULT_MAX_DECODE_MB`).
DEFAULT_MAX_PIXELS = 120_000_000

#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_ENV = "VEIL_MAX_PIXELS"

#: Memory one photo's pixels may take on the way through veil (decoded
#: image, veil's copies, the covered copy and the encoder's), in MiB. Checked
#: from the header, before decoding, against ``width x height x`` the bytes
#: per pixel below. 2048 MiB admits about 100 megapixels of colour; the
#: fixed cost of the face detector (about 800 MB with its full-resolution
#: tiles, 240 MB without, measured) comes on top, so a service can size
#: ``--jobs N`` as ``800 MB + N x budget``.
DEFAULT_MAX_DECODE_MB = 2048

#: Environment variable that overrides :data:`DEFAULT_MAX_DECODE_MB`.
MAX_DECODE_MB_ENV = "VEIL_MAX_DECODE_MB"

#: Peak bytes per pixel of one photo through ``veil blur`` above the
#: detector's fixed cost: 11-18 measured on 12, 24 and 48 MP JPEGs
#: (``scripts/fuzz.py --measure-memory``, README "Hostile files"), rounded
#: up; grey images take less.
_BYTES_PER_PIXEL = {"1": 8, "L": 8, "I;16": 12, "I;16L": 12, "I;16B": 12, "I;16N": 12, "I": 16, "F": 16}
_BYTES_PER_PIXEL_DEFAULT = 20

#: A file that declares more pixels than this per byte of file is refused as
#: a decompression bomb (above :data:`_BOMB_FLOOR_PIXELS` pixels; smaller
#: images are cheap whatever they claim). A real photo stays below about 10
#: pixels per byte in every format (a 12 MP JPEG is 2-6 MB); only flat
#: synthetic images go higher: a PNG of zeros reaches about 340 for RGB and
#: 8000 for 1-bit, Huffman-coded JPEG tops out near 230.
MAX_PIXELS_PER_BYTE = 256
_BOMB_FLOOR_PIXELS = 16_000_000

#: More scans than this in one JPEG is refused before decoding: each scan is
#: another pass over the whole image (encoders write at most about 20).
MAX_JPEG_SCANS = 100

#: Multi-page TIFF directories are counted up to this many, linearly.
_MAX_TIFF_IFDS = 10_000

#: The formats :func:`load_image` reads (Pillow's names); every other format
#: Pillow knows is refused unread. HEIF is added by pillow-heif.
READABLE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF", "AVIF")

#: Formats veil writes. Everything else is mapped onto one of these by
#: :func:`output_format_for`.
WRITABLE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP")

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray]


class ImageError(ValueError):
    """An image cannot be read or written: missing, corrupt, truncated, not an
    image, too large, or of a kind veil refuses (animated, floating point)."""


class MetadataError(ImageError):
    """An encoded output still carries metadata; it was not written."""


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo, ready for detection and anonymization.

    Attributes:
        pixels: C-contiguous, writeable ``uint8`` array of shape
            ``(height, width, channels)``, channels 1 (grey), 3 (RGB) or
            4 (RGBA, straight alpha). EXIF orientation is already applied.
            It is veil's own copy: changing it never touches the source.
        format: Pillow's name for the file format read (``"JPEG"``,
            ``"PNG"``, ``"WEBP"``, ``"TIFF"``, ``"BMP"``, ``"GIF"``,
            ``"HEIF"``, ``"AVIF"``); MPO is reported as ``"JPEG"``. ``None``
            for arrays and for PIL images that did not come from a file.
        icc_profile: The ICC profile that ``pixels`` are in, or ``None`` when
            they are sRGB (always ``None`` unless ``keep_icc_profile=True``).
        source_kind: ``"path"``, ``"bytes"`` (also file objects), ``"pil"``
            or ``"array"``: what was passed in, so a service can hand back
            the same kind.
        notes: Human-readable notes on conversions made while loading (for
            reports), e.g. ``"16-bit samples scaled to 8-bit"``.
    """

    pixels: np.ndarray
    format: Optional[str]
    icc_profile: Optional[bytes]
    source_kind: str
    notes: Tuple[str, ...] = field(default=())

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def has_alpha(self) -> bool:
        return self.channels == 4


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

# Pillow warns (DecompressionBombWarning) above its own global limit, which is
# lower than ours. Silencing that warning means changing the process-wide
# warning filters, which is not thread-safe; this lock keeps our own threads
# from interleaving their save/restore of the filters. It is held only while
# Pillow reads a header, or while decoding an image above Pillow's limit.
_PILLOW_WARNINGS_LOCK = threading.Lock()
_HEIF_LOCK = threading.Lock()
_heif_ready = False

# Brands in an ISO-BMFF "ftyp" box that mean HEIF (HEIC, HEIF, image sequences).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _resolve_max_pixels(max_pixels: Optional[int]) -> int:
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_ENV}={raw!r} is not a whole number of pixels") from None
        if value <= 0:
            raise ValueError(f"{MAX_PIXELS_ENV}={raw!r} must be a positive number of pixels")
        return value
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be an int, not {type(max_pixels).__name__}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    return int(max_pixels)


def _resolve_max_decode_mb(max_memory_mb: Optional[float]) -> float:
    if max_memory_mb is None:
        raw = os.environ.get(MAX_DECODE_MB_ENV, "").strip()
        if not raw:
            return float(DEFAULT_MAX_DECODE_MB)
        try:
            value = float(raw.replace("_", ""))
        except ValueError:
            raise ValueError(f"{MAX_DECODE_MB_ENV}={raw!r} is not a number of MiB") from None
        if not (value > 0 and value < 2**40):
            raise ValueError(f"{MAX_DECODE_MB_ENV}={raw!r} must be a positive number of MiB")
        return value
    if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float, np.integer, np.floating)):
        raise TypeError(f"max_memory_mb must be a number, not {type(max_memory_mb).__name__}")
    value = float(max_memory_mb)
    if not (value > 0 and value < 2**40):
        raise ValueError(f"max_memory_mb must be a positive number of MiB, got {max_memory_mb!r}")
    return value


def describe_path(path: Union[str, bytes, "os.PathLike"]) -> str:
    """A path as text that can always be printed and always names the file:
    undecodable bytes of the name become ``\\xNN`` escapes (lossless: the
    name can be rebuilt from it), control characters are escaped too."""
    text = os.fsdecode(os.fspath(path))
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid in the filesystem encoding
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif code < 32 or code == 127 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class _QuietBombWarnings:
    """Silence Pillow's DecompressionBombWarning for a block (veil applies its
    own limit). ``needed=False`` makes it a no-op, so the common case takes no
    lock and decoding of ordinary images runs in parallel."""

    def __init__(self, needed: bool = True) -> None:
        self._needed = needed
        self._catcher: Optional[warnings.catch_warnings] = None

    def __enter__(self) -> None:
        if self._needed:
            _PILLOW_WARNINGS_LOCK.acquire()
            self._catcher = warnings.catch_warnings()
            self._catcher.__enter__()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)

    def __exit__(self, *exc_info: object) -> None:
        if self._catcher is not None:
            try:
                self._catcher.__exit__(*exc_info)
            finally:
                self._catcher = None
                _PILLOW_WARNINGS_LOCK.release()


def _above_pillow_limit(size: Tuple[int, int]) -> bool:
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and max(1, size[0]) * max(1, size[1]) > limit


def _looks_like_heif(head: bytes) -> bool:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(head[0:4], "big")
    brand_bytes = head[8 : min(len(head), max(box_size, 16))]
    brands = {brand_bytes[i : i + 4] for i in range(0, len(brand_bytes) - 3, 4)}
    if brands & {b"avif", b"avis"}:
        return False  # AVIF: Pillow reads it itself where it can
    return bool(brands & set(_HEIF_BRANDS))


def _ensure_heif_support(name: str) -> None:
    """Register pillow-heif's Pillow plugin once, the first time it is needed."""
    global _heif_ready
    if _heif_ready:
        return
    with _HEIF_LOCK:
        if _heif_ready:
            return
        try:
            import pillow_heif
        except ImportError:
            raise ImageError(
                f"{name} is a HEIC/HEIF photo; reading it needs the pillow-heif package (pip install pillow-heif)"
            ) from None
        if ".heic" not in Image.registered_extensions():
            pillow_heif.register_heif_opener()
        _heif_ready = True


def load_image(
    source: ImageSource,
    *,
    max_pixels: Optional[int] = None,
    keep_icc_profile: bool = False,
    max_memory_mb: Optional[float] = None,
    allow_damaged: bool = False,
) -> LoadedImage:
    """Decode a photo into veil's pixel layout, orientation applied.

    Args:
        source: A path (``str`` or ``os.PathLike``) of a regular file; the
            encoded file as ``bytes``, ``bytearray`` or ``memoryview``; a
            binary file object; a :class:`PIL.Image.Image`; or a ``uint8``
            numpy array of shape ``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` or
            ``(h, w, 4)`` (taken as grey, RGB or RGBA, and copied).
        max_pixels: Refuse images with more than this many pixels, checked
            from the header before decoding. ``None`` (default) means the
            ``VEIL_MAX_PIXELS`` environment variable if set, otherwise
            :data:`DEFAULT_MAX_PIXELS`. Not applied to arrays, which are
            already decoded.
        keep_icc_profile: Keep the embedded ICC profile and leave the pixels
            in its colour space, instead of converting them to sRGB (see the
            module notes on why converting is the default).
        max_memory_mb: The decode budget in MiB (see
            :data:`DEFAULT_MAX_DECODE_MB`); ``None`` means the
            ``VEIL_MAX_DECODE_MB`` environment variable if set, else the
            default. Checked from the header, before decoding.
        allow_damaged: Decode a truncated or damaged file as far as its data
            goes (the missing part comes out grey or black) instead of
            refusing it; :attr:`LoadedImage.notes` then says so.

    Returns:
        A :class:`LoadedImage`.

    Raises:
        ImageError: the source is missing, not a regular file, unreadable,
            empty, truncated, corrupt, not an image, too large, animated,
            or in a mode veil refuses.
        TypeError: ``source`` is none of the accepted kinds, or an array is
            not ``uint8``.
        ValueError: a bad ``max_pixels`` or ``max_memory_mb``.
    """
    if isinstance(source, np.ndarray):
        return _load_array(source)
    limits = _Limits(_resolve_max_pixels(max_pixels), _resolve_max_decode_mb(max_memory_mb), bool(allow_damaged))
    if isinstance(source, Image.Image):
        fmt = getattr(source, "format", None)
        return _load_pil(source, "PIL image", limits, keep_icc_profile, "pil", fmt)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return _load_stream(io.BytesIO(data), f"image data ({len(data)} bytes)", limits, keep_icc_profile, "bytes")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            raise TypeError("pass paths as str or pathlib.Path; bytes are read as image data only when not a path")
        name = repr(describe_path(path))
        with _open_regular_file(path, name) as fp:
            return _load_stream(fp, name, limits, keep_icc_profile, "path")
    if hasattr(source, "read"):
        label = getattr(source, "name", None)
        name = repr(describe_path(label)) if isinstance(label, str) else "file object"
        stream = source
        try:
            seekable = bool(stream.seekable()) if hasattr(stream, "seekable") else hasattr(stream, "seek")
        except (OSError, ValueError):
            seekable = False
        if not seekable:
            stream = io.BytesIO(_read_all(source, name))
        return _load_stream(stream, name, limits, keep_icc_profile, "bytes")
    raise TypeError(
        "load_image() takes a path, bytes, a binary file object, a PIL image or a uint8 numpy array, "
        f"not {type(source).__name__}"
    )


@dataclass(frozen=True)
class _Limits:
    max_pixels: int
    max_decode_mb: float
    allow_damaged: bool


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _kind_of(mode: int) -> Optional[str]:
    for test, what in _NOT_REGULAR:
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def _open_failure(exc: OSError, name: str) -> "ImageError":
    """The error to raise when ``name`` cannot be opened, in the user's words."""
    if isinstance(exc, FileNotFoundError):
        return ImageError(f"{name}: no such file")
    if isinstance(exc, IsADirectoryError):
        return ImageError(f"{name} is a folder, not an image file")
    if isinstance(exc, PermissionError):
        return ImageError(f"{name}: permission denied")
    return ImageError(f"{name}: cannot open ({exc.strerror or exc})")


def _open_regular_file(path: str, name: str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file.

    ``stat`` first, so a FIFO or device is refused without being opened
    (opening a FIFO blocks until a writer comes); then ``open`` with
    ``O_NONBLOCK`` and ``fstat`` of what was opened, so a file swapped for a
    FIFO in between cannot block or slip through."""
    try:
        before = os.stat(path)
    except OSError as exc:
        raise _open_failure(exc, name) from None
    kind = _kind_of(before.st_mode)
    if kind == "a folder":
        raise ImageError(f"{name} is a folder, not an image file")
    if kind is not None:
        raise ImageError(f"{name} is {kind}, not a regular file; veil reads only regular files (use - for stdin)")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _open_failure(exc, name) from None
    try:
        kind = _kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise ImageError(f"{name} is {kind}, not a regular file; veil reads only regular files")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_all(stream: BinaryIO, name: str) -> bytes:
    try:
        data = stream.read()
    except OSError as exc:
        raise ImageError(f"{name}: read failed ({exc})") from exc
    if isinstance(data, str):
        raise TypeError(f"{name} is opened in text mode; open it with 'rb'")
    return bytes(data)


def _stream_size(fp: BinaryIO) -> Optional[int]:
    try:
        fp.seek(0, io.SEEK_END)
        size = fp.tell()
        fp.seek(0)
        return int(size)
    except (OSError, ValueError, AttributeError):
        return None


def _load_stream(fp: BinaryIO, name: str, limits: _Limits, keep_icc: bool, kind: str) -> LoadedImage:
    try:
        fp.seek(0)  # Pillow reads from the start of a stream, so sniff there too
        head = fp.read(64)
        fp.seek(0)
    except OSError as exc:
        raise ImageError(f"{name}: read failed ({exc})") from exc
    if isinstance(head, str):
        raise TypeError(f"{name} is opened in text mode; open it with 'rb'")
    if not head:
        raise ImageError(f"{name} is empty")
    size = _stream_size(fp)
    if _looks_like_heif(head):
        _ensure_heif_support(name)
    Image.init()  # registers every plugin, so the list below is complete
    formats = [f for f in READABLE_FORMATS if f in Image.OPEN]
    try:
        with _QuietBombWarnings():
            im = Image.open(fp, formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageError(_bomb_message(name, limits.max_pixels, exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageError(
            f"{name} is not an image veil can read (veil reads {_readable_list()})"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise many exception types; none may escape raw
        raise ImageError(f"{name} is corrupt or unsupported: {_describe(exc)}") from exc
    with im:
        return _load_pil(im, name, limits, keep_icc, kind, im.format, fp=fp, file_size=size)


def _readable_list() -> str:
    return "JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC/HEIF and AVIF"


def _bomb_message(name: str, limit: int, exc: Exception) -> str:
    """Explain a refusal by Pillow's own limit (twice ``Image.MAX_IMAGE_PIXELS``),
    which it enforces while reading the header, before veil sees the size."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" ({int(found.group(1)):,} pixels)" if found else ""
    pillow_max = Image.MAX_IMAGE_PIXELS
    if pillow_max is not None and 2 * pillow_max < limit:
        ceiling = f"Pillow's limit of {2 * pillow_max:,} pixels (twice PIL.Image.MAX_IMAGE_PIXELS)"
    else:
        ceiling = f"the limit of {limit:,} pixels"
    return f"{name} is larger than {ceiling}{size}, a possible decompression bomb; refused before decoding"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_array(array: np.ndarray) -> LoadedImage:
    if array.dtype != np.uint8:
        raise TypeError(
            f"pixel arrays must be uint8, got {array.dtype}; convert first, e.g. np.clip(a, 0, 255).astype(np.uint8)"
        )
    pixels = _as_pixel_layout(array, "pixels")
    return LoadedImage(np.array(pixels, dtype=np.uint8, order="C", copy=True), None, None, "array", ())


def _as_pixel_layout(array: np.ndarray, what: str) -> np.ndarray:
    """Return a (h, w, c) view of a (h, w) or (h, w, c) array with c in 1, 3, 4."""
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        hint = " (grey+alpha: convert to RGBA)" if array.ndim == 3 and array.shape[2] == 2 else ""
        raise ValueError(f"{what} must have shape (h, w), (h, w, 1), (h, w, 3) or (h, w, 4); got {array.shape}{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{what} has no pixels (shape {array.shape})")
    return array


def _load_pil(
    im: Image.Image,
    name: str,
    limits: _Limits,
    keep_icc: bool,
    kind: str,
    fmt: Optional[str],
    *,
    fp: Optional[BinaryIO] = None,
    file_size: Optional[int] = None,
) -> LoadedImage:
    notes = []
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name} has no pixels ({width}x{height})")
    pixels_declared = width * height
    if pixels_declared > limits.max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} = {pixels_declared:,} pixels, more than the limit of {limits.max_pixels:,} "
            f"(a possible decompression bomb); raise max_pixels or {MAX_PIXELS_ENV} if the photo is genuine"
        )
    need_mb = pixels_declared * _BYTES_PER_PIXEL.get(im.mode, _BYTES_PER_PIXEL_DEFAULT) / 2**20
    if need_mb > limits.max_decode_mb:
        raise ImageError(
            f"{name} is {width}x{height} ({im.mode}); processing it needs about {need_mb:,.0f} MiB, more than "
            f"the decode budget of {limits.max_decode_mb:,.0f} MiB; refused before decoding (raise "
            f"{MAX_DECODE_MB_ENV} or --max-memory-mb if the photo is genuine)"
        )
    if file_size is not None and pixels_declared > _BOMB_FLOOR_PIXELS and pixels_declared > MAX_PIXELS_PER_BYTE * max(1, file_size):
        raise ImageError(
            f"{name} declares {width}x{height} = {pixels_declared:,} pixels in only {file_size:,} bytes, "
            f"more than {MAX_PIXELS_PER_BYTE} pixels per byte: truncated, corrupt or a decompression bomb; "
            "refused before decoding"
        )

    jpeg_data: Optional[bytes] = None
    if fmt in ("JPEG", "MPO") and fp is not None:
        jpeg_data = _read_from_start(fp, name)
    frames = _frame_count(im, name, fmt, fp)
    if fmt == "MPO":
        # An MPO file is a JPEG followed by extra images (depth maps, HDR gain
        # maps, the other eye of a 3-D pair). Frame 0 is the photo itself;
        # the others are never written out.
        fmt = "JPEG"
        if frames > 1:
            notes.append("secondary images (MPF) ignored")
    elif fmt in ("HEIF", "AVIF"):
        if frames > 1:
            notes.append("only the primary image of the HEIF container was read")
    elif frames > 1:
        more = "at least " if frames >= _MAX_TIFF_IFDS else ""
        raise ImageError(
            f"{name} is an animated or multi-page {fmt or 'image'} with {more}{frames} frames; veil handles "
            "still photos only (anonymizing the first frame alone would leave the others untouched)"
        )

    source = im
    if jpeg_data is not None:
        source = _decode_jpeg_strictly(im, jpeg_data, name, limits, notes)
    else:
        _decode(im, name, limits, notes)
    im = source

    im = _apply_orientation(im, notes)
    try:
        pixels, icc = _to_pixels(im, name, keep_icc, notes)
    except ImageError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageError(f"{name}: cannot convert its pixels ({_describe(exc)})") from exc
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"{name} has no pixels")
    return LoadedImage(pixels, fmt, icc, kind, tuple(notes))


_DAMAGED_NOTE = "DAMAGED: the file is truncated or corrupt; decoded as far as its data goes (--allow-damaged)"


def _decode(im: Image.Image, name: str, limits: _Limits, notes: list) -> None:
    """``im.load()`` with every decoder error an :class:`ImageError`; with
    ``allow_damaged`` a truncated file keeps what was decoded."""
    try:
        with _QuietBombWarnings(_above_pillow_limit(im.size)):
            im.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(_bomb_message(name, limits.max_pixels, exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error, ...
        partial = im.__dict__.get("_im")  # Pillow's decoded-so-far image (private; absent in other versions)
        if limits.allow_damaged and isinstance(exc, OSError) and "truncated" in str(exc) and partial is not None:
            im.tile = []  # keep what was decoded instead of decoding again
            im.load()
            notes.append(_DAMAGED_NOTE)
            return
        raise ImageError(f"{name} is truncated or corrupt: {_describe(exc)}") from exc


def _read_from_start(fp: BinaryIO, name: str) -> bytes:
    try:
        fp.seek(0)
        data = fp.read()
        fp.seek(0)
    except OSError as exc:
        raise ImageError(f"{name}: read failed ({exc})") from exc
    return bytes(data)


# Progressive (and other multi-scan) JPEG processes: SOF2, SOF6, SOF10, SOF14.
_JPEG_PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}

# Zero bytes given to libjpeg after the last scan instead of the end marker:
# it reads a few bytes ahead while decoding the last blocks (8 were always
# enough over 48 files of every subsampling, restart interval and size; 16
# leaves a margin). A scan whose data ends sooner runs out, and Pillow
# reports the file as truncated instead of libjpeg silently filling grey.
_JPEG_LOOKAHEAD_PAD = b"\x00" * 16


def _jpeg_structure(data: bytes, name: str) -> Tuple[int, int, bool, bool]:
    """Walk a JPEG's markers (not its pixels). Returns (scan count, offset
    where the last scan's data ends, progressive, complete) where complete
    says whether the scans of a progressive file cover every coefficient of
    every component to full precision."""
    n = len(data)
    pos = 2
    scans = 0
    scan_end = n
    progressive = False
    components: list = []
    precision: dict = {}  # (component, coefficient) -> lowest Al reached
    while pos < n:
        if data[pos] != 0xFF:
            break
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            scan_end = pos - 2
            break
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        body = data[pos + 2 : pos + length]
        if marker in _JPEG_SOF and len(body) >= 6:
            progressive = marker in _JPEG_PROGRESSIVE_SOF
            count = body[5]
            components = [body[6 + 3 * i] for i in range(count) if 6 + 3 * i < len(body)]
        pos += length
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(
                    f"{name} has more than {MAX_JPEG_SCANS} JPEG scans (each one another pass over the "
                    "whole image); refused as a decoding-cost attack"
                )
            if len(body) >= 1 and len(body) >= 1 + 2 * body[0] + 3:
                ns = body[0]
                ids = [body[1 + 2 * i] for i in range(ns)]
                ss, se, a = body[1 + 2 * ns], body[2 + 2 * ns], body[3 + 2 * ns]
                al = a & 0x0F
                for c in ids:
                    for k in range(ss, min(se, 63) + 1):
                        key = (c, k)
                        precision[key] = min(precision.get(key, 99), al)
            pos = _skip_entropy_coded(data, pos)
            scan_end = min(pos, n)
    if progressive:
        complete = bool(components) and all(
            precision.get((c, k)) == 0 for c in components for k in range(64)
        )
    else:
        covered = {c for (c, _) in precision}
        complete = bool(components) and all(c in covered for c in components)
    return scans, scan_end, progressive, complete


def _decode_jpeg_strictly(im: Image.Image, data: bytes, name: str, limits: _Limits, notes: list) -> Image.Image:
    """Decode a JPEG so that missing data is an error, not grey.

    libjpeg treats an end marker in the middle of the image data as a
    warning and fills the rest with grey; Pillow passes the warning on to no
    one. So a one-scan JPEG is decoded from its bytes up to the end of the
    scan plus a little zero padding and no end marker: if the scan stops
    early, the decoder asks for more data and Pillow says the file is
    truncated. A progressive JPEG must have scans that refine every
    coefficient of every component to full precision."""
    scans, scan_end, progressive, complete = _jpeg_structure(data, name)
    if scans == 0:  # nothing to decode, damaged or not
        raise ImageError(f"{name} is truncated or corrupt: no image data (no JPEG scan)")
    if scans > 1 or progressive:
        if not complete and not limits.allow_damaged:
            raise ImageError(
                f"{name} is truncated or corrupt: its JPEG scans stop before the image is complete "
                "(use --allow-damaged to write what there is)"
            )
        if not complete:
            notes.append(_DAMAGED_NOTE)
        _decode(im, name, limits, notes)
        return im
    strict = JpegImagePlugin.JpegImageFile(io.BytesIO(data[:scan_end] + _JPEG_LOOKAHEAD_PAD))
    try:
        _decode(strict, name, _Limits(limits.max_pixels, limits.max_decode_mb, False), notes)
        return strict
    except ImageError:
        if not limits.allow_damaged:
            raise ImageError(
                f"{name} is truncated or corrupt: its JPEG image data ends before the image is complete "
                "(use --allow-damaged to write what there is)"
            ) from None
    # Damaged but allowed: let libjpeg fill what is missing.
    damaged = JpegImagePlugin.JpegImageFile(io.BytesIO(data[:scan_end] + b"\xff\xd9"))
    _decode(damaged, name, limits, notes)
    notes.append(_DAMAGED_NOTE)
    return damaged


def _frame_count(im: Image.Image, name: str, fmt: Optional[str], fp: Optional[BinaryIO]) -> int:
    if fmt == "TIFF" and fp is not None:
        return _tiff_directory_count(fp, name)
    try:
        return int(getattr(im, "n_frames", 1))
    except MemoryError:
        raise
    except Exception as exc:
        raise ImageError(f"{name} is corrupt: {_describe(exc)}") from exc


def _tiff_directory_count(fp: BinaryIO, name: str) -> int:
    """Count a TIFF's chained image directories in one linear walk (Pillow's
    ``n_frames`` seeks from the start for each one), stopping at
    :data:`_MAX_TIFF_IFDS`; a loop or an offset out of the file is corrupt."""
    try:
        fp.seek(0)
        head = fp.read(16)
        size = _stream_size(fp) or 0
        if len(head) < 8:
            raise ImageError(f"{name} is truncated or corrupt: TIFF header too short")
        endian = "<" if head[:2] == b"II" else ">"
        big = struct.unpack(endian + "H", head[2:4])[0] == 43
        if big:
            offset = struct.unpack(endian + "Q", head[8:16])[0]
            count_fmt, count_size, entry_size, next_fmt, next_size = "Q", 8, 20, "Q", 8
        else:
            offset = struct.unpack(endian + "I", head[4:8])[0]
            count_fmt, count_size, entry_size, next_fmt, next_size = "H", 2, 12, "I", 4
        seen = set()
        count = 0
        while offset:
            if offset in seen:
                raise ImageError(f"{name} is corrupt: its TIFF directories form a loop")
            if offset + count_size > size:
                if count:
                    break  # a dangling pointer after the first page: as Pillow, stop there
                raise ImageError(f"{name} is truncated or corrupt: TIFF directory beyond the end of the file")
            seen.add(offset)
            count += 1
            if count >= _MAX_TIFF_IFDS:
                return count
            fp.seek(offset)
            entries = struct.unpack(endian + count_fmt, fp.read(count_size))[0]
            fp.seek(offset + count_size + entry_size * entries)
            raw = fp.read(next_size)
            if len(raw) < next_size:
                break
            offset = struct.unpack(endian + next_fmt, raw)[0]
        return max(1, count)
    except (OSError, struct.error) as exc:
        raise ImageError(f"{name} is truncated or corrupt: {_describe(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            fp.seek(0)


# How to turn stored pixels the way a viewer shows them, for EXIF
# orientations 2-8 (the same table as ``PIL.ImageOps.exif_transpose``).
_ORIENTATION_FIXES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(im: Image.Image, notes: list) -> Image.Image:
    """Apply the EXIF orientation tag to the pixels (before anything else).

    Does what ``ImageOps.exif_transpose`` does to the pixels, without its
    rewriting of the EXIF block, which veil throws away anyway; that keeps
    a malformed EXIF block from stopping the photo being anonymized."""
    try:
        orientation = im.getexif().get(0x0112)
    except Exception:
        # Unreadable EXIF: we cannot know the orientation. The EXIF is never
        # written out, so this only affects which way up the output is.
        notes.append("EXIF could not be read; orientation left as stored")
        return im
    fix = _ORIENTATION_FIXES.get(orientation) if isinstance(orientation, int) else None
    if fix is None:
        return im
    notes.append(f"EXIF orientation {orientation} applied to the pixels")
    return im.transpose(fix)  # keeps im.info (the ICC profile is still needed)


def _to_pixels(im: Image.Image, name: str, keep_icc: bool, notes: list) -> Tuple[np.ndarray, Optional[bytes]]:
    """Convert any supported Pillow mode to uint8 grey, RGB or RGBA, and
    settle the colour profile (convert to sRGB, or keep)."""
    mode = im.mode
    profile = im.info.get("icc_profile") or None
    if profile is not None and not isinstance(profile, bytes):
        profile = None

    if mode == "F":
        raise ImageError(
            f"{name} has 32-bit floating-point samples (mode F); veil reads 8- and 16-bit images only, "
            "because float values have no fixed display range"
        )
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        samples = np.asarray(im)
        if mode == "I" and samples.size and (samples.min() < 0 or samples.max() > 65535):
            raise ImageError(
                f"{name} has 32-bit integer samples outside the 16-bit range; veil reads 8- and 16-bit images only"
            )
        wide = samples.astype(np.uint32)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        notes.append("16-bit samples scaled to 8-bit")
        if profile is not None:
            notes.append("grey ICC profile dropped")
        return np.ascontiguousarray(grey[:, :, np.newaxis]), None
    if mode == "1":
        im = im.convert("L")
        mode = "L"

    if mode == "CMYK":
        rgb = None
        if profile is not None and not keep_icc:
            rgb = _transform_to_srgb(im, profile, "CMYK", "RGB")
            if rgb is None:
                notes.append("CMYK ICC profile could not be applied; basic CMYK conversion used")
            else:
                notes.append("CMYK converted to sRGB with the embedded ICC profile")
        if rgb is None:
            rgb = im.convert("RGB")
            if profile is None:
                notes.append("CMYK converted to RGB")
            elif keep_icc:
                notes.append("CMYK ICC profile dropped (it does not describe RGB pixels)")
        return _array(rgb), None

    # A palette, grey or RGB image may mark one colour as transparent (tRNS).
    transparent_colour = mode in ("P", "L", "RGB") and im.has_transparency_data
    if mode == "L" and not transparent_colour:
        if profile is not None and keep_icc and _profile_colour_space(profile) == b"GRAY":
            return _array(im), profile
        if profile is not None:
            notes.append("grey ICC profile dropped")
        return _array(im), None
    if mode == "La":  # premultiplied grey+alpha: Pillow goes to RGBA through LA
        im = im.convert("LA")
    if transparent_colour or mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode in ("P", "RGBX", "YCbCr"):
        im = im.convert("RGB")
    elif mode not in ("RGB", "RGBA"):
        raise ImageError(f"{name} uses the {mode} colour mode, which veil does not read")
    if transparent_colour:
        notes.append(f"{mode} with a transparent colour converted to RGBA")
    elif mode != im.mode:
        notes.append(f"{mode} converted to {im.mode}")

    if profile is None:
        return _array(im), None
    if _profile_colour_space(profile) != b"RGB ":
        notes.append("ICC profile not for RGB pixels; dropped")
        return _array(im), None
    if keep_icc:
        return _array(im), profile
    converted = _transform_to_srgb(im, profile, im.mode, im.mode)
    if converted is None:
        notes.append("ICC profile could not be applied; dropped, colours left as stored")
        return _array(im), None
    notes.append("colours converted to sRGB from the embedded ICC profile")
    return _array(converted), None


def _array(im: Image.Image) -> np.ndarray:
    pixels = np.array(im, dtype=np.uint8, order="C", copy=True)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return np.ascontiguousarray(pixels)


def _profile_colour_space(profile: bytes) -> bytes:
    return profile[16:20] if len(profile) >= 128 else b""


def _transform_to_srgb(im: Image.Image, profile: bytes, in_mode: str, out_mode: str) -> Optional[Image.Image]:
    """Convert ``im`` from ``profile`` to sRGB; ``None`` if LittleCMS refuses."""
    try:
        # Fresh profile objects per call: LittleCMS profiles read their tags
        # lazily and are not safe to share between threads; making them is cheap.
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        transform = ImageCms.buildTransform(source, srgb, in_mode, out_mode)
        return ImageCms.applyTransform(im, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

_FORMAT_ALIASES = {
    "JPEG": "JPEG", "JPG": "JPEG", "JPE": "JPEG", "JFIF": "JPEG", "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "TIFF": "TIFF", "TIF": "TIFF",
    "BMP": "BMP",
}  # fmt: skip

# Formats veil reads but does not write, and what it writes instead.
_READ_ONLY_FORMATS = {"HEIF": "JPEG", "HEIC": "JPEG", "AVIF": "JPEG"}

_EXTENSIONS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
}  # fmt: skip
_UNWRITABLE_EXTENSIONS = {".heic": "HEIC", ".heif": "HEIF", ".hif": "HEIF", ".avif": "AVIF", ".gif": "GIF"}

_PREFERRED_EXTENSION = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


def _normalise_format(fmt: str) -> str:
    if not isinstance(fmt, str):
        raise TypeError(f"format must be a string such as 'JPEG' or 'PNG', not {type(fmt).__name__}")
    key = fmt.strip().lstrip(".").upper()
    if key in _FORMAT_ALIASES:
        return _FORMAT_ALIASES[key]
    raise ValueError(f"veil cannot write {fmt!r}; choose one of {', '.join(WRITABLE_FORMATS)}")


def output_format_for(input_format: Optional[str], path: Union[str, "os.PathLike[str]", None] = None) -> str:
    """Choose the format to write.

    A recognised image extension on ``path`` wins (the user asked for it).
    Otherwise the input's format is kept where veil can write it
    (JPEG/MPO, PNG, WebP, TIFF, BMP); HEIC/HEIF and AVIF become JPEG (the
    photo-friendly format every device opens); anything else, or ``None``,
    becomes PNG (lossless).

    Raises:
        ValueError: ``path`` ends in an image extension veil cannot write
            (``.heic``, ``.heif``, ``.avif``, ``.gif``): writing JPEG bytes
            under such a name would mislabel the file.
    """
    if path is not None:
        ext = os.path.splitext(os.fspath(path))[1].lower()
        if ext in _EXTENSIONS:
            return _EXTENSIONS[ext]
        if ext in _UNWRITABLE_EXTENSIONS:
            raise ValueError(
                f"veil cannot write {_UNWRITABLE_EXTENSIONS[ext]} files ({os.fspath(path)!r}); "
                f"use one of {', '.join(sorted(set(_PREFERRED_EXTENSION.values())))}"
            )
    if input_format is None:
        return "PNG"
    if not isinstance(input_format, str):
        raise TypeError(f"input_format must be a format name such as 'JPEG', not {type(input_format).__name__}")
    key = input_format.strip().lstrip(".").upper()
    if key in _FORMAT_ALIASES:
        return _FORMAT_ALIASES[key]
    return _READ_ONLY_FORMATS.get(key, "PNG")


def extension_for(format: str) -> str:
    """The usual file extension for a writable format, e.g. ``".jpg"``."""
    return _PREFERRED_EXTENSION[_normalise_format(format)]


def _check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise TypeError(f"quality must be an int from 1 to 100, not {type(quality).__name__}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be from 1 to 100, got {quality}")
    return int(quality)


def _check_icc(icc_profile: Optional[bytes], channels: int, fmt: str) -> Optional[bytes]:
    if icc_profile is None:
        return None
    if not isinstance(icc_profile, (bytes, bytearray, memoryview)):
        raise TypeError(f"icc_profile must be bytes or None, not {type(icc_profile).__name__}")
    profile = bytes(icc_profile)
    if len(profile) < 128 or profile[36:40] != b"acsp":
        raise ValueError("icc_profile is not an ICC profile (no 'acsp' signature)")
    wanted = b"GRAY" if channels == 1 else b"RGB "
    if _profile_colour_space(profile) != wanted:
        raise ValueError(
            f"icc_profile describes {profile[16:20].decode('latin-1').strip()!r} colours "
            f"but the pixels have {channels} channel(s)"
        )
    if fmt == "BMP":
        raise ValueError("BMP output cannot carry an ICC profile; choose PNG, JPEG, WebP or TIFF")
    if fmt == "WEBP" and channels == 1:
        raise ValueError("WebP stores grey images as RGB, so a grey ICC profile cannot describe them")
    return profile


def encode_image(
    pixels: np.ndarray,
    format: str,
    *,
    quality: int = 90,
    icc_profile: Optional[bytes] = None,
) -> bytes:
    """Encode pixels as a metadata-free image file, in memory.

    Args:
        pixels: ``uint8`` array of shape ``(h, w)``, ``(h, w, 1)``,
            ``(h, w, 3)`` or ``(h, w, 4)``: grey, RGB or RGBA.
        format: ``"JPEG"`` (or ``"JPG"``), ``"PNG"``, ``"WEBP"``, ``"TIFF"``
            or ``"BMP"``, any case.
        quality: 1-100, for JPEG and WebP (lossless formats ignore it).
        icc_profile: An ICC profile to embed, describing the pixels' colours
            (see the module notes: by default there is none and the pixels
            are sRGB). Must match the pixels (grey or RGB); not for BMP.

    Returns:
        The encoded file. It carries no EXIF, XMP, IPTC, comments, text,
        timestamps, thumbnails or trailing data, and no ICC profile unless
        one is passed. RGBA becomes RGB on white for JPEG and BMP;
        elsewhere the colour under fully transparent pixels is zeroed.

    Raises:
        TypeError, ValueError: bad arguments.
        ImageError: the format cannot hold an image this large, or the
            encoder failed.
        MetadataError: the self-check found metadata in the output (a bug;
            nothing is returned).
    """
    fmt = _normalise_format(format)
    quality = _check_quality(quality)
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy uint8 array, not {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got {pixels.dtype}")
    pixels = _as_pixel_layout(pixels, "pixels")
    profile = _check_icc(icc_profile, pixels.shape[2], fmt)

    im = _fresh_image(pixels, fmt)
    options: dict = {}
    if fmt == "JPEG":
        options = {"quality": quality, "subsampling": "4:2:0", "optimize": False}
    elif fmt == "WEBP":
        options = {"quality": quality, "method": 4}
    elif fmt == "PNG":
        options = {"compress_level": 6}
    elif fmt == "TIFF":
        options = {"compression": "tiff_adobe_deflate"}
    if profile is not None:
        options["icc_profile"] = profile

    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(pixels.shape[:2]) > limit:
        raise ImageError(
            f"a {pixels.shape[1]}x{pixels.shape[0]} image is too large for {fmt}, "
            f"which allows at most {limit} pixels a side; choose PNG or TIFF"
        )
    buffer = io.BytesIO()
    try:
        im.save(buffer, fmt, **options)
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's encoders raise OSError or ValueError
        raise ImageError(f"cannot encode the image as {fmt}: {_describe(exc)}") from exc
    data = buffer.getvalue()

    findings = scan_metadata(data, allow_icc=profile is not None)
    if findings:
        raise MetadataError("refusing to output an image that still carries metadata: " + "; ".join(findings))
    return data


# Largest width or height each format can store.
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383}

# JPEG has no alpha channel, and most BMP readers (Pillow included) ignore
# the fourth byte of 32-bit BMPs; both get RGBA flattened onto white.
_FLATTENED_FORMATS = ("JPEG", "BMP")


def _fresh_image(pixels: np.ndarray, fmt: str) -> Image.Image:
    """Build a brand-new Pillow image from the pixel values alone, so no
    ``info`` (EXIF, XMP, comments, profile) from any source can leak in."""
    channels = pixels.shape[2]
    if channels == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), "L")
    if channels == 3:
        return Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    alpha = pixels[:, :, 3:4]
    if fmt in _FLATTENED_FORMATS:
        # Flatten on white: out = rgb * a + 255 * (1 - a), rounded.
        rgb = pixels[:, :, :3].astype(np.uint32)
        a = alpha.astype(np.uint32)
        flat = (rgb * a + 255 * (255 - a) + 127) // 255
        return Image.fromarray(flat.astype(np.uint8), "RGB")
    if (alpha == 0).any():
        pixels = np.where(alpha == 0, np.uint8(0), pixels)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGBA")


def save_image(
    pixels: np.ndarray,
    path: Union[str, "os.PathLike[str]"],
    *,
    format: Optional[str] = None,
    quality: int = 90,
    icc_profile: Optional[bytes] = None,
    overwrite: bool = False,
) -> Path:
    """Encode pixels with :func:`encode_image` and write them to ``path``
    atomically.

    The file appears complete or not at all: the bytes go to a temporary
    file in the same folder, are fsynced, and are then moved into place. On
    any failure the temporary file is removed and an existing file at
    ``path`` is left as it was.

    Args:
        pixels, quality, icc_profile: as for :func:`encode_image`.
        path: Where to write.
        format: The format to write; ``None`` picks it from the extension of
            ``path`` (see :func:`output_format_for`).
        overwrite: Replace an existing file. Without it an existing file is
            never touched and :class:`FileExistsError` is raised.

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: no format given and ``path`` has no writable extension.
        OSError: the folder is missing, not writable, or the disk is full.
    """
    target = Path(os.fspath(path))
    if format is None:
        ext = target.suffix.lower()
        if ext not in _EXTENSIONS and ext not in _UNWRITABLE_EXTENSIONS:
            raise ValueError(f"cannot tell the format from {str(target)!r}; pass format= or use a known extension")
        fmt = output_format_for(None, target)
    else:
        fmt = _normalise_format(format)
    if not isinstance(overwrite, bool):
        raise TypeError("overwrite must be True or False")
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(f"{describe_path(target)!r} already exists; pass overwrite=True to replace it")
    data = encode_image(pixels, fmt, quality=quality, icc_profile=icc_profile)
    _write_atomically(data, target, overwrite)
    return target


#: Suffix of veil's named temporary files (used where ``O_TMPFILE`` is not).
TEMP_SUFFIX = ".veil-tmp"
_cleaned_folders: set = set()
_cleaned_lock = threading.Lock()


def _write_atomically(data: bytes, target: Path, overwrite: bool) -> None:
    """Write ``data`` to ``target`` so it appears complete or not at all.

    Where the system has ``O_TMPFILE`` (Linux), the bytes go to an unnamed
    file in the destination folder that is given its name only once
    complete (``linkat`` through ``/proc/self/fd``): a hard kill leaves
    nothing visible. Elsewhere a short hidden ``.<pid>-<random>.veil-tmp``
    file is used and renamed; stale ones left by a killed run are removed by
    the next write into that folder. Errors name ``target``, never a
    temporary file."""
    folder = target.parent
    _remove_stale_temporaries(folder)
    try:
        if not _write_unnamed(data, target, overwrite):
            _write_named(data, target, overwrite)
    except FileExistsError:
        raise FileExistsError(f"{describe_path(target)!r} already exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror or str(exc), os.fspath(target)) from None
    _fsync_folder(folder)


def _write_unnamed(data: bytes, target: Path, overwrite: bool) -> bool:
    """The ``O_TMPFILE`` path; ``False`` when the system or filesystem lacks it."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or _libc_linkat is False:
        return False
    folder = target.parent
    try:
        fd = os.open(folder if str(folder) else ".", flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return False  # filesystem without unnamed files
        raise
    try:
        _write_fd(fd, data)
        if not overwrite:
            # Fails if the name is taken: no check-then-act race.
            return _link_fd(fd, target)
        # Replacing: give it a short-lived name, then rename over the target.
        temp = _temp_name(folder)
        if not _link_fd(fd, temp):
            return False
        try:
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return True
    finally:
        os.close(fd)


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_AT_EMPTY_PATH = 0x1000
_libc_linkat = None


def _link_fd(fd: int, target: Path) -> bool:
    """Give the unnamed file ``fd`` the name ``target``: ``linkat(fd, "",
    AT_EMPTY_PATH)`` where allowed (it needs CAP_DAC_READ_SEARCH), else
    ``linkat`` of ``/proc/self/fd/N`` with ``AT_SYMLINK_FOLLOW``. ``False``
    when neither works here; ``FileExistsError`` when the name is taken."""
    global _libc_linkat
    dest = os.fsencode(os.fspath(target))
    if _libc_linkat is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            func = libc.linkat
            func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            func.restype = ctypes.c_int
            _libc_linkat = (func, ctypes)
        except (OSError, AttributeError, ImportError):
            _libc_linkat = False
    attempts = []
    if _libc_linkat:
        func, ctypes = _libc_linkat
        attempts.append(lambda: (func(fd, b"", _AT_FDCWD, dest, _AT_EMPTY_PATH), ctypes.get_errno()))
        attempts.append(
            lambda: (func(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD, dest, _AT_SYMLINK_FOLLOW), ctypes.get_errno())
        )
    for attempt in attempts:
        result, err = attempt()
        if result == 0:
            return True
        if err == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, os.strerror(err), os.fspath(target))
        if err in (errno.EPERM, errno.EACCES, errno.ENOENT, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            if err == errno.ENOENT and not os.path.isdir(os.path.dirname(os.path.abspath(target))):
                raise FileNotFoundError(err, os.strerror(err), os.fspath(target))
            continue
        raise OSError(err, os.strerror(err), os.fspath(target))
    return False


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _temp_name(folder: Path) -> Path:
    # Short, so that any legal target name still fits beside it; the pid
    # says whether the run that made it is still alive.
    return folder / f".{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _write_named(data: bytes, target: Path, overwrite: bool) -> None:
    folder = target.parent
    temp = _temp_name(folder)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        try:
            _write_fd(fd, data)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(temp, target)
        else:
            _move_without_replacing(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


_TEMP_PATTERN = re.compile(r"^\.(\d+)-[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + r"$")
_OLD_TEMP_PATTERN = re.compile(r"^\..+\.[0-9a-f]{12}" + re.escape(TEMP_SUFFIX) + r"$")


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove veil's temporary files in ``folder`` left by runs that were
    killed: those whose process is gone (or, for the older naming without a
    pid, a day old). Once per folder per process."""
    key = os.path.abspath(folder)
    with _cleaned_lock:
        if key in _cleaned_folders:
            return
        _cleaned_folders.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    import time

    for entry in entries:
        name = entry.name
        if not name.endswith(TEMP_SUFFIX):
            continue
        match = _TEMP_PATTERN.match(name)
        stale = False
        try:
            if match:
                pid = int(match.group(1))
                stale = pid != os.getpid() and not _process_alive(pid)
            elif _OLD_TEMP_PATTERN.match(name):
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > 86400
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            continue


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (someone else's), or cannot tell: keep its file
    return True


def _move_without_replacing(temp: Path, target: Path) -> None:
    """Move ``temp`` to ``target`` unless ``target`` exists, without the race
    between checking and renaming: a hard link fails atomically if the name
    is taken. Filesystems without hard links fall back to check-then-rename."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise
    except (OSError, NotImplementedError):
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "already exists", os.fspath(target)) from None
        os.replace(temp, target)
        return
    os.unlink(temp)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where unsupported."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Metadata scanner: an independent byte-level parser (no Pillow)
# --------------------------------------------------------------------------


def scan_metadata(data: Union[bytes, bytearray, memoryview], *, allow_icc: bool = False) -> list:
    """List the identifying or unexplained data an image file carries.

    Walks the file's structure byte by byte, without Pillow, so it checks
    veil's writer independently. Knows JPEG (APP segments: EXIF, XMP,
    extended XMP, ICC, MPF, FlashPix, IPTC/Photoshop, JFIF/JFXX thumbnails,
    any other APPn; COM comments; bytes after the end-of-image marker), PNG
    (eXIf, tEXt, iTXt, zTXt, tIME, iCCP, sPLT, APNG frames, any unknown
    chunk, bytes after IEND), WebP (EXIF, XMP, ICCP, animation, unknown
    chunks, bytes after the RIFF), TIFF (every tag beyond the basic image
    tags, EXIF and GPS directories, further images), BMP (embedded or linked
    profiles, trailing bytes), GIF (comments, XMP and other application
    blocks, trailing bytes) and HEIF/AVIF (EXIF and XMP items, ICC
    profiles). For EXIF it names what is inside: GPS position, serial
    numbers, MakerNote, owner, the IFD1 thumbnail.

    Args:
        data: The whole file.
        allow_icc: Do not report an ICC colour profile.

    Returns:
        One human-readable finding per item, e.g.
        ``"JPEG APP1: EXIF (GPS position, BodySerialNumber, MakerNote,
        thumbnail image (IFD1))"``. Empty when the file is clean. A file
        that is empty, unrecognised or malformed gives a finding too, so
        "empty list" can be trusted.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"scan_metadata() takes the file's bytes, not {type(data).__name__}")
    data = bytes(data)
    findings: list = []
    if not data:
        return ["empty file: nothing to check"]
    if data.startswith(b"\xff\xd8"):
        _scan_jpeg(data, findings, allow_icc)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        _scan_png(data, findings, allow_icc)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        _scan_webp(data, findings, allow_icc)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        _scan_tiff(data, findings, allow_icc)
    elif data[:2] == b"BM":
        _scan_bmp(data, findings, allow_icc)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        _scan_gif(data, findings)
    elif data[4:8] == b"ftyp":
        _scan_isobmff(data, findings, allow_icc)
    else:
        findings.append("unrecognised file format: cannot check it for metadata")
    return findings


def _label(payload: bytes, limit: int = 24) -> str:
    """A printable name for a segment, from its leading identifier."""
    head = payload[:limit].split(b"\x00", 1)[0]
    return "".join(chr(b) if 32 <= b < 127 else "." for b in head) or "unnamed"


# JPEG ---------------------------------------------------------------------

_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))
# Markers that carry image coding data only: SOFn, DHT, DAC, DQT, DNL, DRI,
# DHP, EXP, SOS, and JPEG-LS/extension markers that carry parameters.
_JPEG_CODING = set(range(0xC0, 0xD0)) | {0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xF7, 0xF8}


def _scan_jpeg(data: bytes, findings: list, allow_icc: bool) -> None:
    n = len(data)
    pos = 2
    while True:
        if pos >= n:
            findings.append("JPEG: no end-of-image marker (truncated or malformed)")
            return
        if data[pos] != 0xFF:
            findings.append(f"JPEG: malformed, expected a marker at offset {pos}")
            return
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            findings.append("JPEG: no end-of-image marker (truncated or malformed)")
            return
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            break
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD8 or marker == 0x00:
            findings.append(f"JPEG: malformed, unexpected marker 0x{marker:02X} at offset {pos - 2}")
            return
        if pos + 2 > n:
            findings.append("JPEG: truncated segment header")
            return
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > n:
            findings.append(f"JPEG: segment 0x{marker:02X} at offset {pos - 2} runs past the end of the file")
            return
        payload = data[pos + 2 : pos + length]
        _classify_jpeg_segment(marker, payload, findings, allow_icc)
        pos += length
        if marker == 0xDA:
            pos = _skip_entropy_coded(data, pos)
    trailing = data[pos:]
    if trailing:
        what = f"JPEG: {len(trailing)} bytes after the end of the image"
        if b"\xff\xd8\xff" in trailing:
            what += " (they contain another JPEG image)"
        findings.append(what)


def _skip_entropy_coded(data: bytes, pos: int) -> int:
    """Return the offset of the next real marker after scan data."""
    n = len(data)
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            return n
        following = data[i + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffed byte or restart marker
            pos = i + 2
        elif following == 0xFF:  # fill byte before a marker
            pos = i + 1
        else:
            return i


def _classify_jpeg_segment(marker: int, payload: bytes, findings: list, allow_icc: bool) -> None:
    if marker in _JPEG_CODING:
        return
    if marker == 0xFE:
        findings.append(f"JPEG COM: comment ({len(payload)} bytes)")
        return
    if not 0xE0 <= marker <= 0xEF:
        findings.append(f"JPEG: unknown marker 0x{marker:02X} ({len(payload)} bytes)")
        return
    app = f"JPEG APP{marker - 0xE0}"
    if marker == 0xE0 and payload.startswith(b"JFIF\x00"):
        if len(payload) >= 14 and (payload[12] or payload[13]):
            findings.append(f"{app}: JFIF thumbnail image ({payload[12]}x{payload[13]})")
        elif len(payload) > 14:
            findings.append(f"{app}: JFIF header with {len(payload) - 14} extra bytes")
        return
    if marker == 0xE0 and payload.startswith(b"JFXX\x00"):
        findings.append(f"{app}: JFXX thumbnail image")
    elif marker == 0xE1 and payload[:6] in (b"Exif\x00\x00", b"Exif\x00\xff"):
        findings.append(f"{app}: EXIF{_exif_summary(payload[6:])}")
    elif marker == 0xE1 and payload.startswith(b"http://ns.adobe.com/xap/1.0/\x00"):
        findings.append(f"{app}: XMP metadata")
    elif marker == 0xE1 and payload.startswith(b"http://ns.adobe.com/xmp/extension/\x00"):
        findings.append(f"{app}: extended XMP metadata")
    elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
        if not allow_icc:
            findings.append(f"{app}: ICC colour profile")
    elif marker == 0xE2 and payload.startswith(b"MPF\x00"):
        findings.append(f"{app}: MPF (Multi-Picture Format) index of secondary images")
    elif marker == 0xE2 and payload.startswith(b"FPXR"):
        findings.append(f"{app}: FlashPix extension data")
    elif marker == 0xED and payload.startswith(b"Photoshop 3.0\x00"):
        iptc = " with IPTC" if _photoshop_has_iptc(payload[14:]) else ""
        findings.append(f"{app}: Photoshop image resources{iptc} (IPTC/APP13)")
    elif marker == 0xEE and payload.startswith(b"Adobe") and len(payload) == 12:
        return  # Adobe colour-transform flag: says how channels are coded, nothing more
    else:
        findings.append(f"{app}: segment '{_label(payload)}' ({len(payload)} bytes)")


def _photoshop_has_iptc(resources: bytes) -> bool:
    pos = 0
    while pos + 12 <= len(resources) and resources[pos : pos + 4] == b"8BIM":
        resource_id = int.from_bytes(resources[pos + 4 : pos + 6], "big")
        name_len = resources[pos + 6]
        name_field = name_len + 1 + ((name_len + 1) % 2)  # Pascal string padded to even
        size_at = pos + 6 + name_field
        if size_at + 4 > len(resources):
            break
        size = int.from_bytes(resources[size_at : size_at + 4], "big")
        if resource_id == 0x0404:
            return True
        pos = size_at + 4 + size + (size % 2)
    return b"\x1c\x02" in resources


# TIFF / EXIF ----------------------------------------------------------------

# Tags that describe only how the pixels are stored.
_TIFF_IMAGE_TAGS = {
    254, 255, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284, 296, 301,
    317, 318, 319, 320, 322, 323, 324, 325, 332, 338, 339, 347, 529, 530, 531, 532,
}  # fmt: skip

_TAG_NAMES = {
    269: "DocumentName", 270: "ImageDescription", 271: "Make", 272: "Model", 285: "PageName",
    305: "Software", 306: "DateTime", 315: "Artist", 316: "HostComputer", 330: "SubIFDs (more images)",
    513: "JPEGInterchangeFormat (thumbnail)", 700: "XMP", 33432: "Copyright", 33723: "IPTC",
    34377: "Photoshop", 34665: "EXIF", 34675: "ICC profile", 34853: "GPS", 37500: "MakerNote",
    37510: "UserComment", 36867: "DateTimeOriginal", 36868: "DateTimeDigitized", 42016: "ImageUniqueID",
    42032: "CameraOwnerName", 42033: "BodySerialNumber", 42034: "LensSpecification", 42035: "LensMake",
    42036: "LensModel", 42037: "LensSerialNumber", 50708: "UniqueCameraModel", 50735: "CameraSerialNumber",
    40965: "Interoperability", 37520: "SubSecTime", 37521: "SubSecTimeOriginal", 40964: "RelatedSoundFile",
}  # fmt: skip

# EXIF tags worth calling out by name in a summary (identifying ones).
_EXIF_CALLOUTS = (
    271, 272, 305, 306, 315, 270, 33432, 700, 33723, 34377, 34675,
    36867, 37500, 37510, 42016, 42032, 42033, 42035, 42036, 42037, 50735,
)  # fmt: skip


class _Tiff:
    """Bounds-checked reader of TIFF image file directories (IFDs)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.endian = "<" if data[:2] == b"II" else ">"
        self.valid = len(data) >= 8 and data[:2] in (b"II", b"MM")

    def u16(self, at: int) -> int:
        return struct.unpack_from(self.endian + "H", self.data, at)[0]

    def u32(self, at: int) -> int:
        return struct.unpack_from(self.endian + "I", self.data, at)[0]

    def first_ifd(self) -> int:
        return self.u32(4) if self.valid else 0

    def read_ifd(self, offset: int) -> Optional[Tuple[dict, int]]:
        """Return ({tag: (type, count, value_offset_field)}, next_ifd_offset),
        or ``None`` when the directory is out of bounds."""
        data = self.data
        if offset < 8 or offset + 2 > len(data):
            return None
        count = self.u16(offset)
        end = offset + 2 + 12 * count
        if end + 4 > len(data):
            return None
        entries = {}
        for i in range(count):
            at = offset + 2 + 12 * i
            tag, kind, n = struct.unpack_from(self.endian + "HHI", data, at)
            entries[tag] = (kind, n, at + 8)
        return entries, self.u32(end)

    def pointer(self, entry: Tuple[int, int, int]) -> int:
        kind, _, field_at = entry
        return self.u16(field_at) if kind == 3 else self.u32(field_at)


def _exif_summary(tiff_bytes: bytes) -> str:
    """Describe what an EXIF block holds, e.g. ' (GPS position, MakerNote)'."""
    names = _tiff_findings(tiff_bytes, exif_only=True)
    return f" ({', '.join(names)})" if names else ""


def _tiff_findings(tiff_bytes: bytes, exif_only: bool) -> list:
    """Names of identifying content in a TIFF structure. With
    ``exif_only`` (EXIF blocks inside other formats) the basic image tags of
    IFD0 are expected to be absent, and every IFD0 tag is of interest only if
    it is a named call-out."""
    tiff = _Tiff(tiff_bytes)
    if not tiff.valid:
        return ["malformed TIFF structure"]
    found: list = []
    seen: set = set()

    def note(name: str) -> None:
        if name not in found:
            found.append(name)

    def walk(offset: int, where: str) -> Optional[dict]:
        if offset in seen:
            note("malformed (directory loop)")
            return None
        seen.add(offset)
        parsed = tiff.read_ifd(offset)
        if parsed is None:
            note(f"malformed {where} directory")
            return None
        return parsed[0]

    try:
        first = tiff.first_ifd()
        ifd0 = walk(first, "IFD0")
        if ifd0 is None:
            return found
        for tag, entry in ifd0.items():
            if tag == 34853:
                note("GPS position")
                walk(tiff.pointer(entry), "GPS")
            elif tag == 34665:
                exif_ifd = walk(tiff.pointer(entry), "EXIF")
                if not exif_only:
                    note("EXIF")
                for sub_tag in exif_ifd or {}:
                    if sub_tag in _EXIF_CALLOUTS:
                        note(_TAG_NAMES[sub_tag])
            elif tag in _TIFF_IMAGE_TAGS:
                continue  # how the pixels are stored
            elif exif_only and tag not in _EXIF_CALLOUTS and tag not in (513, 514, 330):
                continue  # inside EXIF, only the telling tags are named; the block is reported anyway
            else:
                note(_TAG_NAMES.get(tag, f"tag {tag}"))
        next_ifd = tiff.read_ifd(first)
        if next_ifd is not None and next_ifd[1]:
            note("thumbnail image (IFD1)" if exif_only else "further images (IFD1 and on)")
    except struct.error:
        note("malformed (truncated directory)")
    return found


def _scan_tiff(data: bytes, findings: list, allow_icc: bool) -> None:
    for name in _tiff_findings(data, exif_only=False):
        if allow_icc and name == "ICC profile":
            continue
        findings.append(f"TIFF: {name}")


# PNG ------------------------------------------------------------------------

# Chunks that only say how to decode or display the pixels.
_PNG_IMAGE_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD",
                     b"pHYs", b"hIST", b"cICP"}  # fmt: skip


def _scan_png(data: bytes, findings: list, allow_icc: bool) -> None:
    pos = 8
    n = len(data)
    while True:
        if pos + 12 > n:
            findings.append("PNG: no IEND chunk (truncated or malformed)")
            return
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body_at = pos + 8
        if length > 0x7FFFFFFF or body_at + length + 4 > n:
            findings.append(f"PNG: chunk {_label(kind)} at offset {pos} runs past the end of the file")
            return
        body = data[body_at : body_at + length]
        pos = body_at + length + 4
        if kind == b"IEND":
            break
        if kind in _PNG_IMAGE_CHUNKS:
            continue
        if kind == b"eXIf":
            findings.append(f"PNG eXIf: EXIF{_exif_summary(body)}")
        elif kind in (b"tEXt", b"iTXt", b"zTXt"):
            keyword = _label(body, 80)
            what = "XMP metadata" if keyword == "XML:com.adobe.xmp" else f"text '{keyword}'"
            findings.append(f"PNG {kind.decode()}: {what}")
        elif kind == b"tIME":
            findings.append("PNG tIME: modification time")
        elif kind == b"iCCP":
            if not allow_icc:
                findings.append("PNG iCCP: ICC colour profile")
        elif kind in (b"acTL", b"fcTL", b"fdAT"):
            if "PNG: animation frames (APNG)" not in findings:
                findings.append("PNG: animation frames (APNG)")
        else:
            findings.append(f"PNG chunk '{_label(kind)}' ({length} bytes)")
    if pos < n:
        findings.append(f"PNG: {n - pos} bytes after the end of the image (IEND)")


# WebP -----------------------------------------------------------------------


def _scan_webp(data: bytes, findings: list, allow_icc: bool) -> None:
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    n = len(data)
    if riff_end > n:
        findings.append("WebP: RIFF size runs past the end of the file (truncated)")
        riff_end = n
    pos = 12
    while pos + 8 <= riff_end:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]
        if pos + 8 + size > riff_end:
            findings.append(f"WebP: chunk {_label(kind)} runs past the end of the file")
            return
        pos += 8 + size + (size & 1)
        if kind in (b"VP8 ", b"VP8L", b"VP8X", b"ALPH"):
            continue
        if kind == b"EXIF":
            tiff = body[6:] if body.startswith(b"Exif\x00\x00") else body
            findings.append(f"WebP EXIF: EXIF{_exif_summary(tiff)}")
        elif kind == b"XMP ":
            findings.append("WebP XMP: XMP metadata")
        elif kind == b"ICCP":
            if not allow_icc:
                findings.append("WebP ICCP: ICC colour profile")
        elif kind in (b"ANIM", b"ANMF"):
            if "WebP: animation frames" not in findings:
                findings.append("WebP: animation frames")
        else:
            findings.append(f"WebP chunk '{_label(kind)}' ({size} bytes)")
    if pos < riff_end:
        findings.append("WebP: malformed chunk list")
    if n > riff_end:
        findings.append(f"WebP: {n - riff_end} bytes after the end of the image (RIFF)")


# BMP ------------------------------------------------------------------------


def _scan_bmp(data: bytes, findings: list, allow_icc: bool) -> None:
    if len(data) < 26:
        findings.append("BMP: truncated header")
        return
    file_size = int.from_bytes(data[2:6], "little")
    header_size = int.from_bytes(data[14:18], "little")
    if header_size >= 124 and len(data) >= 14 + 124:
        colour_space = data[14 + 56 : 14 + 60]
        if colour_space == b"DEBM" and not allow_icc:  # 'MBED', little-endian
            findings.append("BMP: embedded ICC colour profile")
        elif colour_space == b"KNIL":  # 'LINK': a profile file name, may name a user or machine
            findings.append("BMP: linked ICC profile file name")
    if file_size > len(data):
        findings.append("BMP: file shorter than its header says (truncated)")
    elif len(data) > file_size:
        findings.append(f"BMP: {len(data) - file_size} bytes after the end of the image")


# GIF ------------------------------------------------------------------------


def _gif_sub_blocks(data: bytes, pos: int) -> Tuple[bytes, int]:
    """Read GIF data sub-blocks from ``pos``; return (joined data, next pos)."""
    parts = []
    while True:
        if pos >= len(data):
            raise IndexError("truncated")
        size = data[pos]
        pos += 1
        if size == 0:
            return b"".join(parts), pos
        if pos + size > len(data):
            raise IndexError("truncated")
        parts.append(data[pos : pos + size])
        pos += size


def _scan_gif(data: bytes, findings: list) -> None:
    try:
        flags = data[10]
        pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
        while True:
            block = data[pos]
            if block == 0x3B:  # trailer
                pos += 1
                break
            if block == 0x2C:  # image descriptor
                local = data[pos + 9]
                pos += 10 + (3 * (2 << (local & 7)) if local & 0x80 else 0)
                pos += 1  # LZW minimum code size
                _, pos = _gif_sub_blocks(data, pos)
            elif block == 0x21:
                label = data[pos + 1]
                body, pos = _gif_sub_blocks(data, pos + 2)
                if label == 0xFE:
                    findings.append(f"GIF: comment ({len(body)} bytes)")
                elif label == 0x01:
                    findings.append("GIF: plain-text extension")
                elif label == 0xFF:
                    app = body[:11]
                    if app == b"XMP DataXMP":
                        findings.append("GIF: XMP metadata")
                    elif app not in (b"NETSCAPE2.0", b"ANIMEXTS1.0"):
                        findings.append(f"GIF: application block '{_label(app)}'")
                elif label != 0xF9:  # graphic control (timing, transparency) is fine
                    findings.append(f"GIF: extension 0x{label:02X}")
            else:
                findings.append(f"GIF: malformed block 0x{block:02X} at offset {pos}")
                return
    except IndexError:
        findings.append("GIF: truncated or malformed")
        return
    if pos < len(data):
        findings.append(f"GIF: {len(data) - pos} bytes after the end of the image")


# HEIF / AVIF (ISO base media file format) -------------------------------------


def _boxes(data: bytes, start: int, end: int) -> Iterator[Tuple[bytes, int, int]]:
    """Yield (type, body_start, body_end) for the boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1 and pos + 16 <= end:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise IndexError("box runs past its parent")
        yield kind, pos + header, pos + size
        pos += size


def _scan_isobmff(data: bytes, findings: list, allow_icc: bool) -> None:
    def note(text: str) -> None:
        if text not in findings:
            findings.append(text)

    try:
        for kind, start, end in _boxes(data, 0, len(data)):
            if kind != b"meta":
                continue
            for child, c_start, c_end in _boxes(data, start + 4, end):  # meta is a full box
                if child == b"iinf":
                    version = data[c_start]
                    entries_at = c_start + 4 + (2 if version == 0 else 4)
                    for entry, e_start, e_end in _boxes(data, entries_at, c_end):
                        if entry != b"infe" or data[e_start] < 2:
                            continue
                        id_len = 2 if data[e_start] == 2 else 4
                        type_at = e_start + 4 + id_len + 2
                        item_type = data[type_at : type_at + 4]
                        rest = data[type_at + 4 : e_end]
                        if item_type == b"Exif":
                            note("HEIF: EXIF item")
                        elif item_type == b"mime" and b"rdf+xml" in rest:
                            note("HEIF: XMP item")
                        elif item_type == b"mime":
                            note("HEIF: MIME metadata item")
                elif child == b"iref":
                    if b"thmb" in data[c_start:c_end]:
                        note("HEIF: thumbnail image")
                elif child == b"iprp" and not allow_icc:
                    body = data[c_start:c_end]
                    if b"colrprof" in body or b"colrrICC" in body:
                        note("HEIF: ICC colour profile")
    except IndexError:
        note("HEIF: malformed box structure")
