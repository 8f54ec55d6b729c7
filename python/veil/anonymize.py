"""Make every face in a photo unrecognizable, and strip what identifies the file.

:func:`anonymize` finds the faces (:func:`veil.detect.detect_faces`), covers
each with a method (``"fill"``, the default, ``"pixelate"``, ``"gaussian_blur"``
or ``"box_blur"``), optionally adds seeded noise, and hands back the same kind of thing
it was given: a numpy array, a PIL image, encoded bytes (re-encoded by
:mod:`veil.io`, metadata-free), or a path (a new, metadata-free file is
written and its path returned). :func:`anonymize_with_report` does the same
and also says what it found and what it did (for reports and the CLI's
``--json``).

How a face is covered
    * **The mask.** A face's box is grown about its centre by ``mask_scale``
      in width and height (1.3 by default, as deface does: CenterFace's box
      stops at the hairline and the ears, which identify too), then covered
      by the ellipse inscribed in it, or the whole rectangle. The mask is
      covered completely; ``feather`` fades the effect out *beyond* the
      mask, never inside it, so a feather cannot leave part of a face
      half-visible.
    * **Face size** is the larger side of the grown box, in pixels. Every
      strength is relative to it, so a face 40 px tall and one 2000 px tall
      are made equally unrecognizable by the same setting:

      ============== ============================================ ==============
      method         what ``strength`` sets                       at least
      ============== ============================================ ==============
      pixelate       block side = strength x face size             3 px
      gaussian_blur  standard deviation = strength x face size     1.5 px
      box_blur       window radius = strength x face size          2 px
      fill           nothing (solid ``color``)                     -
      ============== ============================================ ==============

      Sizes are rounded *up*, and the minimums keep tiny faces (a few pixels
      across in a crowd) from being rounded to a no-op. Blurs wider than the
      kernel's largest sigma (250 px) are done in several passes, which add
      up to the same Gaussian (variances add).
    * **Noise.** After the method, uniform noise in ``[-noise, +noise]``
      levels is added under the same mask, from ``seed``. Blur and mosaic
      are partly reversible (McPherson et al. 2016; deblurring models); the
      noise removes the exact block means and smooth gradients that such
      attacks invert. It is deterministic: the same photo, settings and seed
      give the same output.
    * **Manual regions** (``add_regions``, boxes ``(left, top, width,
      height)``) are covered as drawn: a rectangle, not grown, with the same
      method, strength (relative to the box's larger side) and noise.
    * **Keeping faces visible** (``keep``): each item picks detected faces to
      leave untouched: an ``int`` is an index into the detected faces (best
      score first, the order :func:`veil.detect.detect_faces` and ``veil
      detect`` use); ``(x, y)`` picks the face whose box contains that point
      (the nearest centre if several do); ``(left, top, width, height)``
      picks every face with at least half its box inside that box (so a
      loosely drawn box does not uncover a neighbour it merely grazes). An
      item that picks no face raises :class:`KeepError` and nothing is
      produced: guessing which face was meant could leave a stranger's face
      visible, and silently ignoring it would blur the face the user wanted
      kept. A kept face overlapped by another face's mask is partly covered:
      protecting the other face comes first.

Defaults
    :data:`DEFAULT_METHOD` is solid fill, set from the irreversibility
    measurements in ``benches/bench_irreversibility.py``: an independent
    recognizer (dlib) and veil's own detector both failed on filled faces,
    while every blur and pixelation strength tried left faces the detector
    could find again. Blur and pixelate remain for users who ask for them.

Thread safety
    Every call works on its own copies; the only shared state is the
    detector's onnxruntime session, which is thread-safe. The heavy work
    (detection, kernels) releases the GIL, so threads run in parallel.
"""

from __future__ import annotations

import enum
import inspect
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _veil
from . import io as _io
from . import _same_kind
from ._callable import make_callable
from ._same_kind import sibling_path

__all__ = [
    "Method",
    "METHODS",
    "SHAPES",
    "DEFAULT_METHOD",
    "DEFAULT_STRENGTH",
    "DEFAULT_NOISE",
    "DEFAULT_SHAPE",
    "DEFAULT_MASK_SCALE",
    "DEFAULT_FEATHER",
    "OUTPUT_SUFFIX",
    "KeepError",
    "Region",
    "AnonymizeReport",
    "anonymize",
    "anonymize_with_report",
    "default_output_path",
]


class Method(str, enum.Enum):
    """How a face is made unrecognizable. Plain strings work too."""

    PIXELATE = "pixelate"
    GAUSSIAN_BLUR = "gaussian_blur"
    BOX_BLUR = "box_blur"
    FILL = "fill"

    def __str__(self) -> str:
        return self.value


METHODS = tuple(m.value for m in Method)
SHAPES = ("ellipse", "rectangle")

# Defaults chosen by measurement (benches/bench_irreversibility.py, table in
# the README): over 112 same-person trials with native dlib as the attacker,
# solid fill was the only method that met both bars (re-identified in 0% at
# dlib's 0.6 threshold, re-detected by CenterFace in 1.1% of faces). Every
# blur and pixelation strength tried left too many faces re-detectable,
# and noise made re-detection worse, so it is off by default.
DEFAULT_METHOD = "fill"
#: Fraction of the face size (the larger side of the grown box); used by
#: the blur and pixelate methods, which a user must ask for.
DEFAULT_STRENGTH = 0.3
#: Noise amplitude in levels (0-255); 0 turns the noise off.
DEFAULT_NOISE = 0
DEFAULT_SHAPE = "ellipse"
#: The face box is grown by this factor in width and height (deface's value).
DEFAULT_MASK_SCALE = 1.3
#: Feather width beyond the mask, as a fraction of the face size.
DEFAULT_FEATHER = 0.05
#: Fill colour for ``method="fill"``.
DEFAULT_COLOR = (0, 0, 0)

#: Default output name: ``photo.jpg`` -> ``photo.veiled.jpg``.
OUTPUT_SUFFIX = ".veiled"

# Floors under the size-relative parameters, so rounding never turns the
# method into a no-op on a face a few pixels across.
MIN_BLOCK_PX = 3
MIN_SIGMA_PX = 1.5
MIN_RADIUS_PX = 2
# The Rust Gaussian's largest sigma; wider blurs are done in passes.
_MAX_SIGMA_PER_PASS_PX = 250.0
MAX_MASK_SCALE = 4.0
MAX_FEATHER_PX = 10_000.0

Box = Tuple[float, float, float, float]


class KeepError(ValueError):
    """A ``keep`` item matches no detected face (or an index is out of range)."""


@dataclass(frozen=True)
class Region:
    """One area that was anonymized, in pixels of the (oriented) photo.

    ``box`` is ``(left, top, width, height)`` of the mask (the grown face box,
    or the manual box as given); ``source`` is ``"face"`` or ``"manual"``;
    ``face_index`` the index of the face in the detected list (``None`` for
    manual regions); ``size_px`` the size strengths are relative to;
    ``params`` the method's pixel parameters actually used (e.g.
    ``{"block_px": 26}``); ``feather_px`` the feather beyond the mask.
    """

    box: Box
    source: str
    face_index: Optional[int]
    shape: str
    size_px: float
    params: dict
    feather_px: float

    def to_dict(self) -> dict:
        return {
            "box": [round(v, 2) for v in self.box],
            "source": self.source,
            "face_index": self.face_index,
            "shape": self.shape,
            "size_px": round(self.size_px, 2),
            "params": dict(self.params),
            "feather_px": round(self.feather_px, 2),
        }


@dataclass(frozen=True)
class AnonymizeReport:
    """What :func:`anonymize_with_report` found and did.

    ``faces``: every face detected (or passed in), best score first, kept
    ones included; ``kept``: indices of the faces left visible; ``regions``:
    what was covered; ``output``: the path written, for path inputs;
    ``notes``: conversions made while loading (from :mod:`veil.io`).
    """

    width: int
    height: int
    faces: Tuple[Any, ...]
    kept: Tuple[int, ...]
    regions: Tuple[Region, ...]
    method: str
    strength: float
    noise: int
    shape: str
    mask_scale: float
    seed: int
    output: Optional[Path] = None
    output_format: Optional[str] = None
    notes: Tuple[str, ...] = field(default=())

    @property
    def faces_found(self) -> int:
        return len(self.faces)

    @property
    def faces_anonymized(self) -> int:
        return sum(1 for r in self.regions if r.source == "face")

    def to_dict(self) -> dict:
        """A JSON-ready summary (boxes as ``[left, top, right, bottom]``)."""
        return {
            "width": self.width,
            "height": self.height,
            "faces": [
                {
                    "index": i,
                    "box": [round(v, 2) for v in face.box],
                    "score": round(float(face.score), 4),
                    "kept": i in self.kept,
                }
                for i, face in enumerate(self.faces)
            ],
            "regions": [r.to_dict() for r in self.regions],
            "method": self.method,
            "strength": self.strength,
            "noise": self.noise,
            "shape": self.shape,
            "mask_scale": self.mask_scale,
            "seed": self.seed,
            "output": None if self.output is None else str(self.output),
            "output_format": self.output_format,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------
# Checking parameters
# --------------------------------------------------------------------------


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_real(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v) or v > high or v < low or (low_open and v == low):
        side = ">" if low_open else ">="
        raise ValueError(f"{name} must be {side} {low:g} and <= {high:g}, got {value!r}")
    return v


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {v}")
    return v


def _check_method(method: object) -> str:
    if isinstance(method, Method):
        return method.value
    if not isinstance(method, str):
        raise TypeError(f"method must be one of {', '.join(METHODS)}, got {type(method).__name__}")
    key = method.strip().lower().replace("-", "_")
    if key not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return key


def _check_shape(shape: object) -> str:
    if not isinstance(shape, str):
        raise TypeError(f"shape must be 'ellipse' or 'rectangle', got {type(shape).__name__}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be 'ellipse' or 'rectangle', got {shape!r}")
    return shape


def _check_color(color: object) -> Tuple[int, int, int]:
    if isinstance(color, numbers.Integral) and not isinstance(color, bool):
        color = (color, color, color)
    if isinstance(color, (str, bytes)) or not isinstance(color, Iterable):
        raise TypeError(f"color must be one grey level or (r, g, b) from 0 to 255, got {color!r}")
    values = tuple(color)
    if len(values) != 3:
        raise ValueError(f"color must be one grey level or (r, g, b), got {color!r}")
    return tuple(_check_int("color", v, 0, 255) for v in values)  # type: ignore[return-value]


#: Largest pixel coordinate or size taken for a box: far beyond any image
#: (JPEG stops at 65,500 a side), small enough that no arithmetic on it
#: overflows on the way to the Rust core.
MAX_COORDINATE_PX = 2**31 - 1


def _check_box(name: str, box: object) -> Box:
    if isinstance(box, (str, bytes)) or not isinstance(box, Iterable):
        raise TypeError(f"{name} must be a box (left, top, width, height) in pixels, got {box!r}")
    values = tuple(box)
    if len(values) != 4 or not all(_is_real(v) for v in values):
        raise ValueError(f"{name} must be a box of 4 numbers (left, top, width, height) in pixels, got {box!r}")
    try:
        left, top, width, height = (float(v) for v in values)
    except OverflowError:
        raise ValueError(f"{name} has a value too large for a pixel coordinate, got {box!r}") from None
    if not all(math.isfinite(v) for v in (left, top, width, height)):
        raise ValueError(f"{name} must have finite values, got {box!r}")
    if not all(abs(v) <= MAX_COORDINATE_PX for v in (left, top, width, height)):
        raise ValueError(f"{name} must have values within +-{MAX_COORDINATE_PX:,} pixels, got {box!r}")
    if width <= 0 or height <= 0:
        raise ValueError(f"{name} must have a width and height > 0, got {box!r}")
    return (left, top, width, height)


def _check_regions(add_regions: object) -> List[Box]:
    if add_regions is None:
        return []
    if isinstance(add_regions, (str, bytes)) or not isinstance(add_regions, Iterable):
        raise TypeError(f"add_regions must be a list of boxes (left, top, width, height), got {add_regions!r}")
    items = list(add_regions)
    if len(items) == 4 and all(_is_real(v) for v in items):
        raise TypeError(f"add_regions must be a list of boxes; for one box write add_regions=[{tuple(items)!r}]")
    return [_check_box("each add_regions item", box) for box in items]


KeepSpec = Union[int, Tuple[float, float], Box]


def _check_keep(keep: object) -> List[KeepSpec]:
    if keep is None:
        return []
    if isinstance(keep, numbers.Integral) and not isinstance(keep, bool):
        keep = [keep]
    if isinstance(keep, (str, bytes)) or not isinstance(keep, Iterable):
        raise TypeError(
            f"keep must be a list of face indices, (x, y) points or (left, top, width, height) boxes, got {keep!r}"
        )
    specs: List[KeepSpec] = []
    for item in keep:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            if item < 0:
                raise ValueError(f"keep: a face index must be >= 0, got {item}")
            specs.append(int(item))
        elif _is_real(item):
            raise TypeError(
                f"keep: {item!r} is not a face index; a point is written as a pair, e.g. keep=[(x, y)]"
            )
        elif isinstance(item, (str, bytes)) or not isinstance(item, Iterable):
            raise TypeError(f"keep: each item must be a face index, an (x, y) point or a box, got {item!r}")
        else:
            values = tuple(item)
            if len(values) == 2 and all(_is_real(v) and math.isfinite(v) for v in values):
                specs.append((float(values[0]), float(values[1])))
            elif len(values) == 4:
                specs.append(_check_box("keep box", values))
            else:
                raise ValueError(
                    f"keep: each item must be a face index, an (x, y) point or a (left, top, width, height) box, "
                    f"got {item!r}"
                )
    return specs


def _check_faces(faces: object) -> Optional[list]:
    if faces is None:
        return None
    if isinstance(faces, (str, bytes)) or not isinstance(faces, Iterable):
        raise TypeError(f"faces must be a list of veil.Face (from detect_faces), got {type(faces).__name__}")
    out = []
    for face in faces:
        box = getattr(face, "box", None)
        if box is None or len(tuple(box)) != 4 or not all(_is_real(v) and math.isfinite(v) for v in box):
            raise TypeError(f"faces must hold veil.Face objects with box=(left, top, right, bottom), got {face!r}")
        left, top, right, bottom = (float(v) for v in box)
        if right < left or bottom < top:
            raise ValueError(f"a face box must have right >= left and bottom >= top, got {tuple(box)!r}")
        out.append(face)
    return out


# --------------------------------------------------------------------------
# Keep
# --------------------------------------------------------------------------


def _kept_indices(faces: Sequence[Any], specs: Sequence[KeepSpec]) -> Tuple[int, ...]:
    kept = set()
    for spec in specs:
        if isinstance(spec, int):
            if spec >= len(faces):
                raise KeepError(
                    f"keep: there is no face {spec}; {len(faces)} face(s) found (indices 0 to {len(faces) - 1})"
                    if faces
                    else f"keep: there is no face {spec}; no face was found"
                )
            kept.add(spec)
        elif len(spec) == 2:
            x, y = spec
            inside = [i for i, f in enumerate(faces) if f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]]
            if not inside:
                raise KeepError(f"keep: no face contains the point ({x:g}, {y:g})")
            # Boxes can overlap in a crowd: the face centred nearest the point
            # is the one that was pointed at.
            kept.add(min(inside, key=lambda i: _centre_distance(faces[i].box, x, y)))
        else:
            left, top, width, height = spec
            outer = (left, top, left + width, top + height)
            hits = [i for i, f in enumerate(faces) if _fraction_inside(f.box, outer) >= 0.5]
            if not hits:
                raise KeepError(
                    f"keep: no face has at least half its box inside ({left:g}, {top:g}, {width:g}, {height:g})"
                )
            kept.update(hits)
    return tuple(sorted(kept))


def _centre_distance(box: Sequence[float], x: float, y: float) -> float:
    return math.hypot((box[0] + box[2]) / 2 - x, (box[1] + box[3]) / 2 - y)


def _fraction_inside(box: Sequence[float], outer: Sequence[float]) -> float:
    area = (box[2] - box[0]) * (box[3] - box[1])
    w = min(box[2], outer[2]) - max(box[0], outer[0])
    h = min(box[3], outer[3]) - max(box[1], outer[1])
    if area <= 0:  # a degenerate box: inside if its corner is
        return 1.0 if outer[0] <= box[0] <= outer[2] and outer[1] <= box[1] <= outer[3] else 0.0
    return max(0.0, w) * max(0.0, h) / area


# --------------------------------------------------------------------------
# Covering regions
# --------------------------------------------------------------------------


def _grown_box(box: Sequence[float], mask_scale: float) -> Box:
    left, top, right, bottom = (float(v) for v in box)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    w, h = (right - left) * mask_scale, (bottom - top) * mask_scale
    return (cx - w / 2, cy - h / 2, w, h)


def _method_params(method: str, strength: float, size_px: float, color: Tuple[int, int, int]) -> dict:
    length = strength * size_px
    if method == "pixelate":
        return {"block_px": max(MIN_BLOCK_PX, math.ceil(length))}
    if method == "box_blur":
        return {"radius_px": max(MIN_RADIUS_PX, math.ceil(length))}
    if method == "gaussian_blur":
        return {"sigma_px": max(MIN_SIGMA_PX, length)}
    return {"color": list(color)}


def _passes(method: str, params: dict) -> List[Tuple[str, dict, int]]:
    """The kernel calls for one region: (method, kwargs, context px each reads)."""
    if method == "gaussian_blur":
        sigma = params["sigma_px"]
        # Gaussians compose by adding variances: n passes of sigma/sqrt(n).
        n = max(1, math.ceil((sigma / _MAX_SIGMA_PER_PASS_PX) ** 2))
        each = sigma / math.sqrt(n)
        return [("gaussian_blur", {"sigma_px": each}, math.ceil(4 * each) + 2)] * n
    if method == "box_blur":
        return [("box_blur", {"radius_px": params["radius_px"]}, params["radius_px"] + 1)]
    if method == "pixelate":
        # A block is read whole even where it pokes out of the region.
        return [("pixelate", {"block_px": params["block_px"]}, params["block_px"] + 1)]
    return [("fill", {"color": tuple(params["color"])}, 0)]


def _cover(
    pixels: np.ndarray, box: Box, shape: str, feather_px: float, method: str, params: dict, noise: int, seed: int,
    threads: Optional[int],
) -> None:
    """Applies the method and the noise to one region of ``pixels``, in place.

    Works on a crop around the region (plus the pixels the method reads), so
    a small face in a big photo costs a small copy, not a whole-photo one.
    """
    height, width = pixels.shape[:2]
    left, top, w, h = box
    passes = _passes(method, params)
    reach = feather_px + sum(p[2] for p in passes) + 1
    x0 = max(0, math.floor(left - reach))
    y0 = max(0, math.floor(top - reach))
    x1 = min(width, math.ceil(left + w + reach))
    y1 = min(height, math.ceil(top + h + reach))
    if x0 >= x1 or y0 >= y1:
        return  # entirely outside the photo
    # The region keeps its fractional position inside the crop; whole-pixel
    # crop offsets keep pixelation's block grid where it would be uncropped.
    local = [(left - x0, top - y0, w, h)]
    crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    for name, kwargs, _ in passes:
        crop = _veil.apply_to_regions(
            crop, name, local, shape=shape, feather_px=feather_px, threads=threads, **kwargs
        )
    if noise:
        crop = _veil.apply_to_regions(
            crop, "noise", local, shape=shape, feather_px=feather_px, amount=noise,
            # The noise depends on the seed and the pixel's position; mixing
            # the crop's origin into the seed keeps it from repeating the same
            # pattern on every face.
            seed=_mix_seed(seed, x0, y0), threads=threads,
        )
    pixels[y0:y1, x0:x1] = crop


def _mix_seed(seed: int, x: int, y: int) -> int:
    # splitmix64-style mixing of (seed, x, y), so nearby crops get unrelated seeds.
    z = (seed + 0x9E3779B97F4A7C15 * (1 + x) + 0xBF58476D1CE4E5B9 * (1 + y)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


# --------------------------------------------------------------------------
# Output names
# --------------------------------------------------------------------------


def default_output_path(path: Union[str, "os.PathLike[str]"], format: Optional[str] = None) -> Path:
    """Where an anonymized copy of ``path`` goes by default: beside it, named
    ``<name>.veiled<ext>`` (``photo.jpg`` -> ``photo.veiled.jpg``).

    ``format`` is the output format (default: the one veil writes for the
    input's extension; HEIC -> JPEG). The input's own extension is kept when
    it names that format (``.jpeg`` stays ``.jpeg``). The name always differs
    from the input's, so it can never be the input.
    """
    return sibling_path(path, OUTPUT_SUFFIX, format)


# --------------------------------------------------------------------------
# The entry points
# --------------------------------------------------------------------------

ImageInput = Union[np.ndarray, Any, bytes, bytearray, memoryview, str, "os.PathLike[str]"]


def anonymize(image: ImageInput, **options: Any) -> Any:
    """Makes every face in ``image`` unrecognizable; returns the same kind.

    Takes the same arguments as :func:`anonymize_with_report` (see there) and
    returns only its result.
    """
    return anonymize_with_report(image, **options)[0]


def anonymize_with_report(
    image: ImageInput,
    *,
    method: Union[str, Method] = DEFAULT_METHOD,
    strength: float = DEFAULT_STRENGTH,
    noise: int = DEFAULT_NOISE,
    shape: str = DEFAULT_SHAPE,
    mask_scale: float = DEFAULT_MASK_SCALE,
    feather: Optional[float] = None,
    feather_px: Optional[float] = None,
    color: Union[int, Sequence[int]] = DEFAULT_COLOR,
    add_regions: Iterable[Box] = (),
    keep: Iterable[KeepSpec] = (),
    faces: Optional[Iterable[Any]] = None,
    seed: int = 0,
    threshold: Optional[float] = None,
    max_side_px: Optional[int] = None,
    tiles: bool = True,
    providers: Optional[Sequence[str]] = None,
    threads: Optional[int] = None,
    output: Union[str, "os.PathLike[str]", None] = None,
    overwrite: bool = False,
    format: Optional[str] = None,
    quality: int = 90,
    max_pixels: Optional[int] = None,
) -> Tuple[Any, AnonymizeReport]:
    """Makes every face in ``image`` unrecognizable and strips the file's
    metadata; returns ``(result, report)``.

    Args:
        image: What to anonymize, and what kind comes back:

            * a ``uint8`` numpy array (H x W, or H x W x 1/3/4) -> a new array
              of the same shape (the input is not changed);
            * a PIL image -> a new PIL image (mode L, RGB or RGBA; other modes
              are converted as :func:`veil.io.load_image` does; EXIF
              orientation applied; no ``info`` carried over);
            * encoded bytes (or a binary file object) -> bytes in the input's
              format (HEIC/AVIF -> JPEG), or ``format``, metadata-free;
            * a path (``str`` or ``os.PathLike``) -> the path of a new
              metadata-free file: ``output`` if given, else
              :func:`default_output_path` (``photo.jpg`` ->
              ``photo.veiled.jpg``), written atomically.
        method: ``"pixelate"``, ``"gaussian_blur"``, ``"box_blur"`` or
            ``"fill"`` (default :data:`DEFAULT_METHOD`).
        strength: Block side / sigma / radius as a fraction of the face size
            (the larger side of the grown box), ``0 < strength <= 1``
            (default :data:`DEFAULT_STRENGTH`). Ignored by ``"fill"``.
        noise: Uniform noise amplitude in levels, 0-255, added after the
            method (default :data:`DEFAULT_NOISE`; 0 = none).
        shape: ``"ellipse"`` (default) or ``"rectangle"``; faces only
            (manual regions are rectangles).
        mask_scale: Grow each face box by this factor (1 to 4; default 1.3).
        feather: Soft edge beyond the mask as a fraction of the face size
            (0 to 1; default :data:`DEFAULT_FEATHER`). Or give ``feather_px``,
            an absolute width in pixels; not both.
        color: Fill colour, a grey level or ``(r, g, b)`` (``"fill"`` only).
        add_regions: Extra boxes ``(left, top, width, height)`` in pixels of
            the oriented photo to anonymize, as drawn.
        keep: Faces to leave visible: indices, ``(x, y)`` points or
            ``(left, top, width, height)`` boxes (see the module notes). An
            item that matches no face raises :class:`KeepError`.
        faces: Faces found beforehand (``detect_faces`` on the same oriented
            pixels); skips detection. ``threshold``, ``max_side_px``,
            ``tiles`` and ``providers`` are passed to
            :func:`veil.detect.detect_faces` otherwise (``None`` = its
            defaults).
        seed: Seed of the noise (0 to 2**64 - 1).
        threads: Threads for the kernels (default: all cores).
        output, overwrite: For path inputs: where to write, and whether an
            existing file may be replaced (default: never; an input is
            replaced only when it is named as ``output`` with
            ``overwrite=True``).
        format, quality: Output format (``"JPEG"``, ``"PNG"``, ``"WEBP"``,
            ``"TIFF"``, ``"BMP"``) and JPEG/WebP quality 1-100, for bytes and
            path inputs.
        max_pixels: Refuse larger images (see :func:`veil.io.load_image`).

    Returns:
        ``(result, report)``; ``report`` is an :class:`AnonymizeReport`.
        When no face is found the result is still produced (re-encoded,
        metadata-free) and ``report.faces`` is empty: check it if a face was
        expected.

    Raises:
        TypeError, ValueError: bad parameters (checked before any work).
        KeepError: a ``keep`` item matches no face.
        veil.io.ImageError: the image cannot be read or written.
        FileExistsError: the output exists and ``overwrite`` is false.
        Anything detection raises: nothing is written then.
    """
    method = _check_method(method)
    strength = _check_real("strength", strength, 0.0, 1.0, low_open=True)
    noise = _check_int("noise", noise, 0, 255)
    shape = _check_shape(shape)
    mask_scale = _check_real("mask_scale", mask_scale, 1.0, MAX_MASK_SCALE)
    if feather is not None and feather_px is not None:
        raise ValueError("give feather (a fraction of the face size) or feather_px (pixels), not both")
    if feather_px is not None:
        feather_px = _check_real("feather_px", feather_px, 0.0, MAX_FEATHER_PX)
    else:
        feather = _check_real("feather", DEFAULT_FEATHER if feather is None else feather, 0.0, 1.0)
    fill_color = _check_color(color)
    manual = _check_regions(add_regions)
    keep_specs = _check_keep(keep)
    given_faces = _check_faces(faces)
    seed = _check_int("seed", seed, 0, 2**64 - 1)
    if threads is not None:
        threads = _check_int("threads", threads, 1, 1024)
    if not isinstance(overwrite, bool):
        raise TypeError("overwrite must be True or False")
    quality = _check_int("quality", quality, 1, 100)
    if format is not None:
        _io.extension_for(format)  # raises TypeError/ValueError for a format veil cannot write
        format = _io.output_format_for(format)  # "jpg" -> "JPEG"
    detect_options = {"tiles": tiles, "providers": providers}
    if threshold is not None:
        detect_options["threshold"] = threshold
    if max_side_px is not None:
        detect_options["max_side_px"] = max_side_px

    # Read, remembering how to hand back the same kind.
    source = _same_kind.read(image, max_pixels=max_pixels, output=output, format=format, overwrite=overwrite,
                             suffix=OUTPUT_SUFFIX)
    loaded = source.loaded

    pixels = loaded.pixels  # veil's own writeable copy
    if given_faces is None:
        from .detect import detect_faces

        found = detect_faces(pixels, **detect_options)
    else:
        found = given_faces
    kept = _kept_indices(found, keep_specs)

    regions: List[Region] = []
    for index, face in enumerate(found):
        if index in kept:
            continue
        box = _grown_box(face.box, mask_scale)
        regions.append(_region(box, "face", index, shape, method, strength, feather, feather_px, fill_color))
    for box in manual:
        regions.append(_region(box, "manual", None, "rectangle", method, strength, feather, feather_px, fill_color))
    for region in regions:
        _cover(pixels, region.box, region.shape, region.feather_px, method, region.params, noise, seed, threads)

    report = AnonymizeReport(
        width=loaded.width,
        height=loaded.height,
        faces=tuple(found),
        kept=kept,
        regions=tuple(regions),
        method=method,
        strength=strength,
        noise=noise,
        shape=shape,
        mask_scale=mask_scale,
        seed=seed,
        output=source.target,
        output_format=source.out_format,
        notes=tuple(loaded.notes),
    )
    return _same_kind.give_back(source, pixels, quality=quality, overwrite=overwrite), report


# `anonymize` forwards to `anonymize_with_report`; show the real parameters in
# help() and editors rather than **options.
anonymize.__signature__ = inspect.signature(anonymize_with_report).replace(  # type: ignore[attr-defined]
    return_annotation=Any
)


def _region(
    box: Box, source: str, index: Optional[int], shape: str, method: str, strength: float,
    feather: Optional[float], feather_px: Optional[float], color: Tuple[int, int, int],
) -> Region:
    size = max(box[2], box[3])
    edge = feather_px if feather_px is not None else feather * size  # type: ignore[operator]
    return Region(
        box=box,
        source=source,
        face_index=index,
        shape=shape,
        size_px=size,
        params=_method_params(method, strength, size, color),
        feather_px=float(min(edge, MAX_FEATHER_PX)),
    )


make_callable(__name__, "anonymize")
