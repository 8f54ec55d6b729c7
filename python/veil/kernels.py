"""Image kernels: blur, pixelate, fill and noise, over a whole photo or regions of it.

Every function takes a uint8 numpy array (H x W, H x W x 1, H x W x 3 or
H x W x 4, C-contiguous) or a PIL image (mode L, RGB or RGBA) and returns a
new image of the same kind (or, for a whole numpy image, writes into the
caller's ``out`` array); the input is never changed. The work runs in
veil's Rust core with the GIL released, on all cores unless ``threads`` says
otherwise, and the result does not depend on the number of threads.

Alpha is never changed: colour is processed everywhere, including under
transparent pixels, so removing the alpha channel of an output reveals
nothing the visible image hides.

A ``region`` is a box ``(left, top, width, height)`` in pixels, or a list of
boxes; regions may cross or lie outside the image. The region is covered
completely; ``feather_px`` fades the effect out *beyond* its edge.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from . import _veil

try:  # Pillow is a dependency, but keep the kernels usable without it.
    from PIL import Image as _PILImage
except ImportError:  # pragma: no cover
    _PILImage = None

Box = Tuple[float, float, float, float]
Regions = Union[Box, Sequence[Box], None]
ImageLike = Union[np.ndarray, "_PILImage.Image"]

SHAPES = ("ellipse", "rectangle")
_PIL_MODES = ("L", "RGB", "RGBA")


def _unwrap(image: ImageLike) -> Tuple[np.ndarray, Callable[[np.ndarray], ImageLike]]:
    """The image as an array, and a function that turns a result back into its kind."""
    if isinstance(image, np.ndarray):
        return image, lambda out: out
    if _PILImage is not None and isinstance(image, _PILImage.Image):
        if image.mode not in _PIL_MODES:
            raise ValueError(
                f"PIL images must be in mode L, RGB or RGBA, got {image.mode!r}; "
                f"use image.convert('RGB') first (or veil.io.load_image, which handles every mode)"
            )
        mode = image.mode
        return np.asarray(image), lambda out: _PILImage.fromarray(out, mode)
    raise TypeError(f"image must be a numpy.ndarray or a PIL.Image.Image, got {type(image).__name__}")


def _boxes(region: Regions) -> Optional[list]:
    """Normalises one box or a list of boxes to a list of float 4-tuples."""
    if region is None:
        return None
    items = list(region) if not isinstance(region, np.ndarray) else region.tolist()
    if items and all(isinstance(v, numbers.Real) for v in items):  # one box
        items = [items]
    boxes = []
    for box in items:
        try:
            values = tuple(float(v) for v in box)
        except TypeError:
            raise TypeError(f"region must be a box (left, top, width, height) or a list of boxes, got {box!r}") from None
        if len(values) != 4:
            raise ValueError(f"a region box has 4 values (left, top, width, height), got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"region values must be finite, got {box!r}")
        if values[2] < 0 or values[3] < 0:
            raise ValueError(f"region width and height must be >= 0, got {box!r}")
        boxes.append(values)
    return boxes


# Largest radius or block the Rust core takes (a signed 32-bit pixel count);
# anything larger is far beyond any image and would overflow on the way in.
MAX_KERNEL_PX = 2**31 - 1


def _check_int(name: str, value: object, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _check_threads(threads: Optional[int]) -> Optional[int]:
    return None if threads is None else _check_int("threads", threads, 1, 1024)


def _check_shape(shape: str) -> str:
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    return shape


def _color(color: Union[int, Sequence[int]]) -> Tuple[int, int, int]:
    if isinstance(color, numbers.Integral) and not isinstance(color, bool):
        color = (color, color, color)
    values = tuple(color)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"color must be one grey value or (r, g, b), got {color!r}")
    return tuple(_check_int("color", v, 0, 255) for v in values)  # type: ignore[return-value]


def _regions_call(image: ImageLike, method: str, region: Regions, shape: str, feather_px: float, threads, **params):
    array, wrap = _unwrap(image)
    boxes = _boxes(region)
    if boxes is None:  # the whole image
        if array.ndim < 2:
            raise ValueError(f"image must have shape (H, W) or (H, W, C), got {array.shape}")
        boxes, shape = [(0.0, 0.0, float(array.shape[1]), float(array.shape[0]))], "rectangle"
    out = _veil.apply_to_regions(
        array, method, boxes, shape=_check_shape(shape), feather_px=float(feather_px),
        threads=_check_threads(threads), **params,
    )
    return wrap(out)


def _whole(image: ImageLike, out: Optional[np.ndarray], call: Callable[..., np.ndarray]) -> ImageLike:
    """Runs a whole-image kernel, into ``out`` when given (numpy input only)."""
    array, wrap = _unwrap(image)
    if out is None:
        return wrap(call(array))
    if not isinstance(array, np.ndarray) or array is not image:
        raise TypeError("out= needs a numpy image (a PIL image always gets a new one)")
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    return call(array, out=out)


def _no_out_with_region(out, region) -> None:
    if out is not None and region is not None:
        raise ValueError("out= is for whole-image calls; with a region the result is always a new image")


def gaussian_blur(image: ImageLike, sigma_px: float, *, region: Regions = None, shape: str = "rectangle",
                  feather_px: float = 0.0, threads: Optional[int] = None,
                  out: Optional[np.ndarray] = None) -> ImageLike:
    """Gaussian blur with standard deviation ``sigma_px`` (0.5 to 250 pixels).

    The result is within 3 levels of an exact Gaussian
    (scipy.ndimage.gaussian_filter, mode="nearest"). ``out``: an array of
    the image's shape (uint8, C-contiguous, not overlapping the image) to
    write the whole-image result into instead of allocating one.
    """
    try:
        sigma_px = float(sigma_px)
    except OverflowError:
        raise ValueError(f"sigma_px is too large, got {sigma_px!r}") from None
    _no_out_with_region(out, region)
    if region is None:
        t = _check_threads(threads)
        return _whole(image, out, lambda a, **kw: _veil.gaussian_blur(a, sigma_px, threads=t, **kw))
    return _regions_call(image, "gaussian_blur", region, shape, feather_px, threads, sigma_px=sigma_px)


def box_blur(image: ImageLike, radius_px: int, *, region: Regions = None, shape: str = "rectangle",
             feather_px: float = 0.0, threads: Optional[int] = None,
             out: Optional[np.ndarray] = None) -> ImageLike:
    """Mean over the (2 radius_px + 1)^2 window around each pixel; any radius.

    ``out`` as for :func:`gaussian_blur`.
    """
    radius_px = _check_int("radius_px", radius_px, 0, MAX_KERNEL_PX)
    _no_out_with_region(out, region)
    if region is None:
        t = _check_threads(threads)
        return _whole(image, out, lambda a, **kw: _veil.box_blur(a, radius_px, threads=t, **kw))
    return _regions_call(image, "box_blur", region, shape, feather_px, threads, radius_px=radius_px)


def pixelate(image: ImageLike, block_px: int, *, region: Regions = None, shape: str = "rectangle",
             feather_px: float = 0.0, threads: Optional[int] = None,
             out: Optional[np.ndarray] = None) -> ImageLike:
    """Square blocks of ``block_px`` pixels, each set to its mean.

    The block grid starts at the image's top-left corner, or at each
    region's top-left corner. ``out`` as for :func:`gaussian_blur`.
    """
    block_px = _check_int("block_px", block_px, 1, MAX_KERNEL_PX)
    _no_out_with_region(out, region)
    if region is None:
        t = _check_threads(threads)
        return _whole(image, out, lambda a, **kw: _veil.pixelate(a, block_px, threads=t, **kw))
    return _regions_call(image, "pixelate", region, shape, feather_px, threads, block_px=block_px)


def fill(image: ImageLike, color: Union[int, Sequence[int]] = (0, 0, 0), *, region: Regions = None,
         shape: str = "rectangle", feather_px: float = 0.0) -> ImageLike:
    """Solid colour: one grey value or (r, g, b); grey images get the colour's luma."""
    return _regions_call(image, "fill", region, shape, feather_px, None, color=_color(color))


def add_noise(image: ImageLike, amount: int, *, seed: int = 0, region: Regions = None,
              shape: str = "rectangle", feather_px: float = 0.0) -> ImageLike:
    """Adds uniform noise in [-amount, amount] (0 to 255) to the colour channels.

    Deterministic for a given ``seed``; each pixel's noise depends only on
    the seed and its position.
    """
    amount = _check_int("amount", amount, 0, 255)
    seed = _check_int("seed", seed, 0, 2**64 - 1)
    return _regions_call(image, "noise", region, shape, feather_px, None, amount=amount, seed=seed)
