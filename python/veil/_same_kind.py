"""Reading whatever a caller passed and handing back the same kind.

``veil.anonymize`` and ``veil.cloak`` both accept a numpy array, a PIL
image, encoded bytes or a binary file, or a path, and return the same kind:
an array of the input's shape, a PIL image of its mode, metadata-free bytes
in its format, or a path to a new file (an explicit ``output``, or a name
beside the input that can never be the input itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import io as _io

# Formats veil reads but does not write, by extension: their outputs take
# the format output_format_for picks for them (HEIC -> JPEG, GIF -> PNG).
_READ_ONLY_FORMATS = {".heic": "HEIF", ".heif": "HEIF", ".hif": "HEIF", ".avif": "AVIF", ".gif": "GIF"}


def sibling_path(path: Union[str, "os.PathLike[str]"], suffix: str, format: Optional[str] = None) -> Path:
    """``photo.jpg`` -> ``photo<suffix>.jpg`` beside it, in ``format`` (default:
    the format veil writes for the input's extension). The input's own
    extension is kept when it names that format (``.jpeg`` stays ``.jpeg``)."""
    source = Path(os.fspath(path))
    ext = source.suffix
    try:
        own = _io.output_format_for(None, source) if ext else None
    except ValueError:  # .heic, .gif: read, not written
        own = None
    fmt = _io.output_format_for(format) if format is not None else None
    if fmt is None:
        fmt = own or _io.output_format_for(_READ_ONLY_FORMATS.get(ext.lower()))
    new_ext = ext if own == fmt else _io.extension_for(fmt)
    return source.with_name(source.name[: len(source.name) - len(ext)] + suffix + new_ext)


@dataclass(frozen=True)
class Source:
    """A decoded input and how to hand a result back in its kind."""

    kind: str  # "array", "pil", "bytes" or "path"
    loaded: "_io.LoadedImage"
    array_shape: Optional[Tuple[int, ...]] = None
    pil_mode: Optional[str] = None
    #: Where a path input's result is written, and in which format; the
    #: format bytes are encoded in.
    target: Optional[Path] = None
    out_format: Optional[str] = None


def read(image: Any, *, max_pixels: Optional[int] = None, output: Any = None, format: Optional[str] = None,
         overwrite: bool = False, suffix: str = ".veiled") -> Source:
    """Decodes ``image`` and, for a path, plans where the result goes.

    Raises before any work is done if ``output`` is given for a non-path
    input, if the output's extension contradicts ``format``, or if the
    output exists and ``overwrite`` is false.
    """
    kind, loaded, shape, mode = _decode(image, max_pixels)
    if kind != "path" and output is not None:
        raise TypeError("output= is for path inputs; for other inputs the result is returned")
    if kind == "path":
        if output is not None:
            target = Path(os.fspath(output))
            out_format = _io.output_format_for(loaded.format, target)
            if format is not None and format != out_format:
                raise ValueError(
                    f"format={format!r} does not match the output's extension {target.suffix!r} ({out_format})"
                )
        else:
            out_format = format or _io.output_format_for(loaded.format)
            target = sibling_path(os.fspath(image), suffix, out_format)
        if not overwrite and os.path.lexists(target):
            raise FileExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
        return Source(kind, loaded, target=target, out_format=out_format)
    if kind == "bytes":
        return Source(kind, loaded, out_format=format or _io.output_format_for(loaded.format))
    return Source(kind, loaded, array_shape=shape, pil_mode=mode)


def give_back(source: Source, pixels: np.ndarray, *, quality: int, overwrite: bool = False) -> Any:
    """``pixels`` (H x W x C uint8) in the kind ``source`` came as."""
    if source.kind == "array":
        return pixels.reshape(source.array_shape)
    if source.kind == "pil":
        from PIL import Image

        return Image.fromarray(pixels[:, :, 0] if source.pil_mode == "L" else pixels, source.pil_mode)
    if source.kind == "bytes":
        return _io.encode_image(pixels, source.out_format, quality=quality)
    assert source.target is not None
    return _io.save_image(pixels, source.target, format=source.out_format, quality=quality, overwrite=overwrite)


def _decode(image: Any, max_pixels: Optional[int]):
    """(kind, LoadedImage, the array's original shape, PIL mode)."""
    if isinstance(image, np.ndarray):
        loaded = _io.load_image(image)  # checks dtype and layout; copies
        return "array", loaded, image.shape, None
    if isinstance(image, (str, os.PathLike)):
        return "path", _io.load_image(image, max_pixels=max_pixels), None, None
    if isinstance(image, (bytes, bytearray, memoryview)) or hasattr(image, "read"):
        return "bytes", _io.load_image(image, max_pixels=max_pixels), None, None
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        loaded = _io.load_image(image, max_pixels=max_pixels)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[loaded.channels]
        return "pil", loaded, None, mode
    raise TypeError(
        "image must be a numpy uint8 array, a PIL image, encoded bytes, a binary file or a path, "
        f"not {type(image).__name__}"
    )
