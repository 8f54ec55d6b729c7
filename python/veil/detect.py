"""Face detection with CenterFace, run in onnxruntime.

The model is CenterFace (Xu et al. 2019, "CenterFace: Joint Face Detection and
Alignment Using Face as Point", arXiv:1911.03599), shipped in this package at
``models/centerface.onnx`` (see ``models/centerface.json`` for its source,
licence, sha256 and preprocessing). It is checked against its sha256 before
use and never downloaded.

The search itself lives in veil's Rust core (``veil._veil.FaceSearch``, the
same code the browser page runs): it plans the passes, makes each network
input, decodes the outputs, merges and suppresses. This module only runs the
network on the inputs the core hands out. A photo is searched in up to two
passes:

1. **Whole photo, capped**: the photo is shrunk (never enlarged) so its longer
   side is at most ``max_side_px``, which finds every face that is not tiny
   relative to the photo, quickly. It is framed by a mirrored border (1/8 of
   its longer side), so a face cut by the photo's edge is completed by its
   mirror image and found.
2. **Tiles at full resolution** (``tiles=True``, only when pass 1 had to
   shrink the photo): overlapping tiles of at most 2048 px find the small
   faces that shrinking made too small to detect (a crowd in a 12 MP photo).
   A face cut by an inner tile edge is left to the neighbouring tile, which
   sees it whole, or to pass 1; a large face is left to pass 1, since at full
   resolution CenterFace boxes a face much larger than those it was trained
   on too small (brows to lip).
3. **Turned copies** (``rotations=True``): the shrunk photo again, turned 90,
   180 and 270 degrees, for photos whose pixels are turned without an EXIF
   tag and for faces seen sideways or upside down (CenterFace finds upright
   faces). Faces found there need a score of at least 0.5.
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

# The search's settings live in the core (rust/veil-core/src/detect/search.rs,
# where their measurements are given); the page reads the same values.
DEFAULT_THRESHOLD = _veil.DETECT_DEFAULT_THRESHOLD
DEFAULT_MAX_SIDE_PX = _veil.DETECT_DEFAULT_MAX_SIDE_PX
# The network's input sides must be multiples of this (five stride-2 stages).
INPUT_MULTIPLE_PX = _veil.DETECT_INPUT_MULTIPLE_PX

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


def _session(providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
    """The shared InferenceSession for these providers, created once.

    ``InferenceSession.run`` is thread-safe, so one session serves all threads;
    the lock only keeps two threads from building it twice. ``threads``:
    onnxruntime's intra-op threads (None: its default, one per core). Small
    inputs run best on one: a 128 x 128 input took 1.7 ms of CPU and of wall
    time on one thread, 2.7 ms of CPU and 2.0 ms of wall time on two (2-core
    VM, idle), while large ones cost the same CPU either way.
    """
    key = (_resolve_providers(providers), threads)
    session = _sessions.get(key)
    if session is not None:
        return session
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: no per-run chatter
            # onnxruntime's pool threads spin between the network's layers by
            # default, burning a core each while they wait. Without it a 12 MP
            # search took 1.54 instead of 1.60 CPU s on an idle 2-core VM
            # (wall 0.93 against 0.91 s), and 1.56 instead of 1.95 CPU s
            # with other work running (wall 1.47 against 1.41 s): the cores
            # go to that work, such as a video's decoding and encoding.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads is not None:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(_model_bytes(), options, providers=list(key[0]))
            _sessions[key] = session
    return session


# --- preprocessing -------------------------------------------------------


def _as_rgb(image: ImageLike) -> np.ndarray:
    """A C-contiguous uint8 HxW or HxWxC (C = 1, 3, 4) view or copy of
    ``image``; the core reads grey as RGB and ignores alpha (it does not
    change where the faces are)."""
    if not isinstance(image, np.ndarray):
        convert = getattr(image, "convert", None)
        if convert is None:
            raise TypeError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")
        image = np.asarray(convert("RGB"))
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


def _check_options(threshold, max_side_px) -> None:
    """Raises TypeError or ValueError for a bad threshold or max_side_px."""
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


def _detect_array(
    rgb: np.ndarray, threshold: float, max_side_px: int, tiles: bool, session, rotations: bool = True,
    input_px: Optional[list] = None, border: Optional[float] = None, mirror: Optional[bool] = None,
) -> np.ndarray:
    """All passes merged: an (N, 15) float32 array sorted by score. The core
    plans and merges; this loop only runs the network. ``input_px``, when
    given, gets the pixel count of each network input (what a search costs).
    ``border`` and ``mirror`` override the core's (None: its defaults)."""
    search = _veil.FaceSearch(rgb, threshold, max_side_px, tiles, rotations, border, None, mirror)
    while (blob := search.next_input()) is not None:
        if input_px is not None:
            input_px.append(blob.shape[2] * blob.shape[3])
        search.push_output(*session.run(_OUTPUT_NAMES, {_INPUT_NAME: blob}))
    return search.finish()


def detect_faces(
    image: ImageLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_side_px: int = DEFAULT_MAX_SIDE_PX,
    tiles: bool = True,
    rotations: bool = True,
    providers: Optional[Sequence[str]] = None,
) -> list:
    """Finds the faces in a photo.

    ``image``: a uint8 numpy array HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA),
    or a PIL image. ``threshold``: the lowest face score kept, in [0, 1]
    (lower finds more faces and more false ones). ``max_side_px``: the whole
    photo is searched shrunk to at most this longer side, and mirrored.
    ``tiles``: search again in finer detail, for small faces: the whole photo
    at twice that size (at most 2048 px; smaller photos are enlarged), and
    for photos larger than that, at full resolution in tiles where that pass
    saw a trace of a face it did not find (faces of about 12 px and up).
    ``rotations``: search the shrunk photo turned 90, 180 and 270 degrees too
    (faces of photos stored turned, faces seen sideways).
    ``providers``: onnxruntime execution providers to use (default: the
    ``VEIL_PROVIDERS`` environment variable, comma-separated, or every
    available one, best first).

    Returns a list of :class:`Face`, best score first; empty if none.
    Thread-safe; the heavy work releases the GIL.
    """
    _check_options(threshold, max_side_px)
    session = _session(providers)
    rows = _detect_array(_as_rgb(image), float(threshold), int(max_side_px), bool(tiles), session, bool(rotations))
    return [
        Face(
            box=(float(r[0]), float(r[1]), float(r[2]), float(r[3])),
            score=float(r[4]),
            landmarks=tuple((float(r[5 + 2 * k]), float(r[6 + 2 * k])) for k in range(5)),
        )
        for r in rows
    ]
