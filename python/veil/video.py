"""Anonymize videos: every face covered in every frame, nothing left that
locates or names the file.

:func:`anonymize_video` reads a video with PyAV (FFmpeg inside its wheel;
``pip install veil[video]``), finds the faces, follows them from frame to
frame, covers them with the same methods as photos (:mod:`veil.anonymize`),
and writes a new file that carries nothing but the pictures (and, only when
asked, the sound).

Why tracking
    A detector run on each frame alone misses a face now and then (motion
    blur, a turned head, a hand in front), and one uncovered frame is enough
    to identify someone. So detections are joined into tracks (greedy
    matching by overlap of the predicted box, or by centre distance for fast
    motion), and a face stays covered while its track lives:

    * between two detections, the box is interpolated linearly and grown
      with the motion between them;
    * for ``hold_s`` seconds after its last detection, the box moves on with
      the track's last velocity and grows with every frame;
    * for ``lookahead_s`` seconds *before* its first detection (frames wait
      in a look-ahead buffer until their future is known), the first box is
      used, grown the same way: a face found only when it is already close
      is covered while it approached too.

Why not a full search on every frame
    A full search of the frame runs every ``full_search_every`` frames, from
    the first. Every other one is complete (as
    :func:`veil.detect.detect_faces` searches a photo: shrunk, mirrored,
    turned, and with ``tiles=True`` the fine pass and tiles); the ones
    between are quick (the shrunk frame and its mirror image), for faces
    that come into view large; one is also due sooner once the faces
    followed have moved 5% of the frame (a fast pan or zoom brings faces
    into view as fast). In between, each face seen in two frames (or seen
    once, in the frame before) is searched for in a crop around its
    predicted box: one small upright pass, which costs a fraction of a full
    search and keeps the boxes on the face. A face its crop misses gets a
    second look in a crop twice as wide; the whole frame is searched when a
    fifth of the faces followed (or the only one) are missing from both,
    and when the crops would cost as much; a face lost among many found
    waits for the regular search, covered for the hold. The last frame,
    which has no look-ahead, is searched whole. A face that enters between
    two full searches is found at a later one, at most
    ``2 * full_search_every - 1`` frames later, and the look-ahead (never
    shorter than that) covers those frames too.

What is written
    Fresh frames, encoded with H.264 (VP9 for WebM), in the input's
    container when veil writes it (MP4, MOV, M4V, MKV, WebM; AVI becomes
    MP4), with the frame rate, timestamps, size and colour range kept and
    the rotation applied to the pixels. No global or stream metadata (no
    location, creation time, make, model, user data, XMP), no chapters,
    subtitles, attachments, data or timecode streams, no cover art:
    :func:`scan_video` checks every output at the byte level, independently
    of FFmpeg, and nothing is written that fails it. Audio is dropped by
    default (a voice identifies too); ``keep_audio=True`` keeps it, without
    its metadata. Writes are atomic: a temporary file in the target folder,
    renamed into place only once complete and checked.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import queue
import secrets
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _veil
from . import io as _io

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoError",
    "VideoReport",
    "anonymize_video",
    "default_video_output_path",
    "is_video_path",
    "scan_video",
    "DEFAULT_CRF",
    "DEFAULT_HOLD_S",
    "DEFAULT_LOOKAHEAD_S",
    "DEFAULT_FULL_SEARCH_EVERY",
]

#: Extensions read as videos (by ``veil blur`` and :func:`is_video_path`).
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"})

# Output muxer, video encoder and the audio codecs that may be copied as they
# are, per output extension; AVI is read but written as MP4 (it has no place
# for H.264's reordered frames without hacks, and MP4 plays everywhere).
_OUTPUTS = {
    ".mp4": ("mp4", "libx264", {"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"}, "aac"),
    ".m4v": ("mp4", "libx264", {"aac", "mp3", "alac", "ac3", "eac3"}, "aac"),
    ".mov": ("mov", "libx264", {"aac", "mp3", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le", "ac3"}, "aac"),
    ".mkv": ("matroska", "libx264", {"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "pcm_s16le"}, "aac"),
    ".webm": ("webm", "libvpx-vp9", {"opus", "vorbis"}, "libopus"),
}
_WRITTEN_AS = {".avi": ".mp4"}

#: x264's constant rate factor (lower is better and larger); 20 is visually
#: close to the source for most phone videos. VP9's scale is 0-63: it gets
#: crf + 11 (31 for the default, libvpx's usual choice for 1080p).
DEFAULT_CRF = 20
#: A face stays covered this long after its last detection.
DEFAULT_HOLD_S = 1.0
#: ...and this long before its first one (the look-ahead buffer).
DEFAULT_LOOKAHEAD_S = 0.5
#: A full search of the frame runs at least every this many frames.
DEFAULT_FULL_SEARCH_EVERY = 5
#: A box not confirmed by a detection grows by this fraction of its size per
#: frame away from the nearest detection (on top of the motion), up to
#: ``_MAX_GROWTH`` times its size.
GROWTH_PER_FRAME = 0.03
_MAX_GROWTH = 2.0
# Matching a detection to a track: overlap with the predicted box, or the
# centres within this fraction of the track's size (fast motion, where boxes
# one frame apart no longer overlap).
_MATCH_IOU = 0.1
# A matched detection narrower or shorter than this share of the predicted
# box is taken as a partial one (see _Tracker.update).
_SHRUNK = 0.8
# A matched detection overlapping the predicted box less than this (IoU) is
# covered together with it (see _Tracker.update).
_JUMPED = 0.5
_MATCH_CENTRE = 0.75
# A crop searched around a tracked face: this many times its size (at
# least _CROP_MIN_PX), scaled so that the face is about _CROP_FACE_PX in the
# network's input and that input a whole number of its 32 px multiples
# (none of it padding): 128 x 128 for most faces. The face sought is at the
# crop's centre, so one upright pass suffices, without the photo search's
# mirrored copy and border (the border is kept where the crop is cut by the
# frame's edge, as the whole-frame search has it there), and only faces
# scoring _CROP_MIN_SCORE count (the photo search keeps weaker ones only
# when its mirrored pass confirms them). Measured with
# benches/profile_video.py on its five 1080p clips: against crops searched
# as photos (face at 64 px, upright and mirrored, framed), CPU time 0.45x
# on the crowd clips and 0.75-1.0x on the group clips, and no flash where
# that had 4; with the face at 26 px (64 x 64 inputs) boxes were loose
# enough to show a face in two clips, and so without the score floor.
# When the crops together would cost more than _CROP_MAX_SHARE of the last
# complete search (both counted in network input pixels, plus
# _CROP_CALL_PX for each call's fixed cost), the whole frame is searched
# instead.
_CROP_FACTOR = 2.5
_CROP_MIN_PX = 64
_CROP_FACE_PX = 51
_CROP_MIN_SCORE = 0.3
_CROP_MAX_SHARE = 0.5
_CROP_CALL_PX = 10_000
# A whole-frame search runs off the schedule when at least this share of the
# faces followed (and at least one) is still missing after the second look:
# most faces lost at once is a cut, a jump of the camera or a blurred frame;
# one face lost among many found is turned away or hidden, and stays covered
# for the hold while the regular searches look for it. In the crowd clip,
# with 40-60 faces followed, one of them or more was missing in most
# frames, and searching the whole frame for each (as for a lone face) made
# the whole-frame searches 80 % of the work.
_LOST_SHARE = 0.2
# A regular search is also due once the faces followed have moved this share
# of the frame's longer side since the last whole-frame search (their median
# motion, summed over frames): faces come into view as fast as the picture
# moves. On a 40-frame clip zooming from 0.9 to 0.4 of a crowd mosaic (the
# "fast" clip of benches/profile_video.py), the tracker without it showed 5
# faces, with it none; 0.1 showed 2 there and 3 on another clip zooming
# fast (15-20 % more CPU on the crowd clips).
_PAN_SHARE = 0.05
# A face at least this large in the frame shrunk for the whole-frame pass is
# well inside what that pass finds (veil.detect leaves smaller ones to tiles).
_SMALL_FACE_PX = 32
#: Largest frame read, in pixels (8K UHD is 33 MP); VEIL_MAX_VIDEO_PIXELS overrides.
DEFAULT_MAX_VIDEO_PIXELS = 40_000_000
# Frames waiting between the stages of the pipeline.
_QUEUE_FRAMES = 8


class VideoError(_io.ImageError):
    """A video cannot be read, anonymized or written; nothing was written."""


def is_video_path(path: Union[str, "os.PathLike[str]"]) -> bool:
    """True for the names :func:`anonymize_video` reads (by extension)."""
    return Path(os.fspath(path)).suffix.lower() in VIDEO_EXTENSIONS


def default_video_output_path(path: Union[str, "os.PathLike[str]"]) -> Path:
    """``clip.mp4`` -> ``clip.veiled.mp4`` beside it; ``clip.avi`` ->
    ``clip.veiled.mp4`` (AVI is written as MP4)."""
    source = Path(os.fspath(path))
    ext = source.suffix.lower()
    new_ext = _WRITTEN_AS.get(ext, source.suffix if ext in _OUTPUTS else ".mp4")
    return source.with_name(source.name[: len(source.name) - len(source.suffix)] + ".veiled" + new_ext)


def _import_av():
    try:
        import av  # noqa: F401
    except ImportError:
        raise VideoError("videos need PyAV: pip install 'veil[video]' (or pip install av)") from None
    import av

    return av


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


@dataclass
class VideoReport:
    """What :func:`anonymize_video` found and did.

    ``faces_per_frame``: how many faces were covered in each frame (kept
    faces excluded); ``tracks``: faces followed; ``longest_gap_frames``: the
    longest run of frames inside one track without a detection (covered by
    interpolation); ``audio``: ``"none"`` (the input had none), ``"dropped"``,
    ``"copied"`` or ``"re-encoded"``.
    """

    input: str
    output: str
    container: str
    video_codec: str
    width: int
    height: int
    fps: float
    frames: int
    rotation: int
    color_range: str
    faces_per_frame: List[int]
    tracks: int
    longest_gap_frames: int
    full_searches: int
    crop_searches: int
    audio: str
    method: str
    crf: int
    seconds: float
    notes: List[str] = field(default_factory=list)

    @property
    def frames_with_faces(self) -> int:
        return sum(1 for n in self.faces_per_frame if n)

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "container": self.container,
            "video_codec": self.video_codec,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "frames": self.frames,
            "rotation_applied": self.rotation,
            "color_range": self.color_range,
            "faces_per_frame": list(self.faces_per_frame),
            "frames_with_faces": self.frames_with_faces,
            "max_faces_in_a_frame": max(self.faces_per_frame, default=0),
            "tracks": self.tracks,
            "longest_gap_frames": self.longest_gap_frames,
            "longest_gap_s": round(self.longest_gap_frames / self.fps, 3) if self.fps else None,
            "full_searches": self.full_searches,
            "crop_searches": self.crop_searches,
            "audio": self.audio,
            "method": self.method,
            "crf": self.crf,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------
# Tracking
# --------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _size(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def _inside_share(box: np.ndarray, shape: Tuple[int, ...]) -> float:
    """The share of ``box`` inside a frame of ``shape``."""
    h, w = shape[:2]
    area = (box[2] - box[0]) * (box[3] - box[1])
    if area <= 0:
        return 0.0
    iw = max(0.0, min(box[2], w) - max(box[0], 0.0))
    ih = max(0.0, min(box[3], h) - max(box[1], 0.0))
    return float(iw * ih / area)


def _overlap_share(box: np.ndarray, other: np.ndarray) -> float:
    """The share of ``box`` inside ``other``."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    return float(w * h / area) if area > 0 and w > 0 and h > 0 else 0.0


def _grow(box: np.ndarray, by_px: float) -> np.ndarray:
    return box + np.array([-by_px, -by_px, by_px, by_px])


class _Track:
    __slots__ = ("id", "frames", "boxes", "covers", "scores")

    def __init__(self, track_id: int) -> None:
        self.id = track_id
        self.frames: List[int] = []
        self.boxes: List[np.ndarray] = []  # as detected: for matching and motion
        self.covers: List[np.ndarray] = []  # what is covered at each detection
        self.scores: List[float] = []

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    def add(self, frame: int, box: np.ndarray, score: float, cover: Optional[np.ndarray] = None) -> None:
        self.frames.append(frame)
        self.boxes.append(box)
        self.covers.append(box if cover is None else cover)
        self.scores.append(score)

    def velocity(self) -> np.ndarray:
        """Per-frame motion of the box edges, from the last two detections."""
        if len(self.frames) < 2:
            return np.zeros(4)
        dt = self.frames[-1] - self.frames[-2]
        return (self.boxes[-1] - self.boxes[-2]) / max(1, dt)

    def predict(self, frame: int) -> np.ndarray:
        v = self.velocity()
        dx, dy = (v[0] + v[2]) / 2, (v[1] + v[3]) / 2
        return self.boxes[-1] + np.array([dx, dy, dx, dy]) * (frame - self.last)

    def expected(self, frame: int) -> np.ndarray:
        """The predicted box with the size the face has had lately (the
        median of its last detections), so one partial detection does not
        shrink what is expected next."""
        p = self.predict(frame)
        recent = np.array(self.boxes[-5:])
        w = float(np.median(recent[:, 2] - recent[:, 0]))
        h = float(np.median(recent[:, 3] - recent[:, 1]))
        cx, cy = (p[0] + p[2]) / 2, (p[1] + p[3]) / 2
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def longest_gap(self) -> int:
        return max((b - a - 1 for a, b in zip(self.frames, self.frames[1:])), default=0)

    def box_at(self, frame: int, hold: int, lookahead: int) -> Optional[np.ndarray]:
        """The box that covers this face in ``frame``, or None when the track
        does not reach it."""
        if frame < self.first - lookahead or frame > self.last + hold:
            return None
        if frame <= self.first:
            box, away = self.covers[0], self.first - frame
            motion = np.abs(self._first_velocity()) * away
        elif frame >= self.last:
            # The centre moves on with the track's velocity; the size never
            # shrinks (a shrinking box extrapolated could vanish).
            away = frame - self.last
            velocity = self.velocity()
            shift = (velocity[0] + velocity[2]) / 2, (velocity[1] + velocity[3]) / 2
            box = self.covers[-1] + np.array([shift[0], shift[1], shift[0], shift[1]]) * away
            motion = np.abs(velocity) * away * 0.5
        else:
            i = int(np.searchsorted(self.frames, frame))
            f0, f1 = self.frames[i - 1], self.frames[i]
            if f1 == frame:
                return self.covers[i]
            t = (frame - f0) / (f1 - f0)
            b0, b1 = self.covers[i - 1], self.covers[i]
            box = b0 + (b1 - b0) * t
            away = min(frame - f0, f1 - frame)
            motion = np.abs(b1 - b0) * 0.5 * (away / (f1 - f0)) * 2
        if away == 0:
            return box
        size = _size(box)
        extra = min(_MAX_GROWTH - 1.0, GROWTH_PER_FRAME * away) * size / 2 + float(motion.max())
        return _grow(box, extra)

    def _first_velocity(self) -> np.ndarray:
        if len(self.frames) < 2:
            return np.zeros(4)
        return (self.boxes[1] - self.boxes[0]) / max(1, self.frames[1] - self.frames[0])


class _Tracker:
    """Joins per-frame detections into tracks; a track ends ``hold`` frames
    after its last detection."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.live: List[_Track] = []
        self.ended: List[_Track] = []
        self._next = 0
        # The detections of the last update that matched no track.
        self.unmatched: List[Tuple[np.ndarray, float]] = []

    def expire(self, frame: int) -> None:
        still = []
        for t in self.live:
            (still if frame - t.last <= self.hold else self.ended).append(t)
        self.live = still

    def update(
        self, frame: int, detections: Sequence[Tuple[np.ndarray, float]], create: bool = True, reach: float = 1.0
    ) -> List[_Track]:
        """Adds one frame's detections; returns the live tracks not seen.
        Unmatched detections start new tracks only with ``create``. ``reach``
        scales how far from its predicted centre a track's face may be (the
        second look, twice as wide, looks twice as far)."""
        self.expire(frame)
        pairs = []
        for ti, track in enumerate(self.live):
            if track.frames and track.last == frame:
                continue  # already seen in this frame
            predicted = track.predict(frame)
            size = max(1.0, _size(predicted))
            centre = np.array([(predicted[0] + predicted[2]) / 2, (predicted[1] + predicted[3]) / 2])
            for di, (box, _) in enumerate(detections):
                iou = _iou(predicted, box)
                c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
                near = float(np.hypot(*(c - centre))) / size
                ratio = _size(box) / size
                if iou >= _MATCH_IOU or (near <= _MATCH_CENTRE * reach and 0.5 <= ratio <= 2.0):
                    pairs.append((iou - near, ti, di))
        pairs.sort(reverse=True)
        used_t, used_d = set(), set()
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            track = self.live[ti]
            box, score = detections[di]
            predicted = track.expected(frame)
            cover = None
            if (box[2] - box[0] < _SHRUNK * (predicted[2] - predicted[0])
                    or box[3] - box[1] < _SHRUNK * (predicted[3] - predicted[1])):
                # A face does not shrink this much from one frame to the
                # next: the detector boxed part of it (motion blur, the
                # frame's edge). Cover where it was expected too.
                # The union also stands for the face in the track, so the
                # next frame is not expected where the part was.
                box = cover = np.concatenate([np.minimum(box[:2], predicted[:2]), np.maximum(box[2:], predicted[2:])])
            elif _iou(box, predicted) < _JUMPED:
                # Far from where the face was heading: the detector may have
                # boxed part of it (a face cut by the frame's edge, beside its
                # mirror image in the search's border). Cover both places;
                # the track follows the detection.
                cover = np.concatenate([np.minimum(box[:2], predicted[:2]), np.maximum(box[2:], predicted[2:])])
            track.add(frame, box, score, cover)
        self.unmatched = [d for di, d in enumerate(detections) if di not in used_d]
        for di, (box, score) in enumerate(detections):
            if create and di not in used_d:
                track = _Track(self._next)
                self._next += 1
                track.add(frame, box, score)
                self.live.append(track)
        return [t for i, t in enumerate(self.live) if i not in used_t and t.last != frame]

    def all_tracks(self) -> List[_Track]:
        return self.ended + self.live


def _lost_enough(missed: Sequence[_Track], followed: Sequence[_Track]) -> bool:
    """Whether the faces ``missed`` (of those ``followed``) call for a
    whole-frame search now: those seen in two frames or more, one at least
    and at least _LOST_SHARE of the faces followed."""
    gone = sum(len(t.frames) >= 2 for t in missed)
    return gone > 0 and gone >= _LOST_SHARE * len(followed)


def _covers_at(tracks: Sequence[_Track], frame: int, hold: int, lookahead: int) -> List[np.ndarray]:
    boxes = []
    for t in tracks:
        box = t.box_at(frame, hold, lookahead)
        if box is not None:
            boxes.append(box)
    return boxes


# --------------------------------------------------------------------------
# Detection: full searches and crops around tracked faces
# --------------------------------------------------------------------------


class _Detector:
    def __init__(self, threshold: float, max_side_px: int, tiles: bool, providers) -> None:
        from . import detect

        detect._check_options(threshold, max_side_px)
        self._detect = detect
        self._session = detect._session(providers)
        # Crops are small inputs: one onnxruntime thread each (veil.detect._session).
        self._crop_session = detect._session(providers, threads=1)
        self.threshold = float(threshold)
        self.max_side_px = int(max_side_px)
        self.tiles = tiles
        self.full_searches = 0
        self.crop_searches = 0
        # What the last whole-frame search as asked (self.tiles) cost: the
        # pixels it fed the network plus each call's fixed cost.
        self.full_cost: Optional[float] = None

    def _search(
        self, rgb: np.ndarray, max_side_px: int, tiles: bool, rotations: bool, session=None, **options
    ) -> Tuple[list, float]:
        px: List[int] = []
        rows = self._detect._detect_array(
            self._detect._as_rgb(rgb), self.threshold, max_side_px, tiles, session or self._session, rotations, px,
            **options,
        )
        faces = [(np.array(r[:4], dtype=np.float64), float(r[4])) for r in rows]
        return faces, float(sum(px) + _CROP_CALL_PX * len(px))

    def full(self, rgb: np.ndarray, tiles: Optional[bool] = None, rotations: bool = True) -> List[Tuple[np.ndarray, float]]:
        self.full_searches += 1
        tiles = self.tiles if tiles is None else (tiles and self.tiles)
        faces, cost = self._search(rgb, self.max_side_px, tiles, rotations)
        if tiles == self.tiles and rotations:
            self.full_cost = cost
        return faces

    def crops(
        self, rgb: np.ndarray, predicted: Sequence[np.ndarray], wide: bool = False
    ) -> Optional[List[Tuple[np.ndarray, float]]]:
        """Searches crops around the predicted boxes; None when the crops
        would cost more than _CROP_MAX_SHARE of a complete search.

        A crop follows a face that is already known, upright as it was
        found, so it is searched upright only: the turned copies are the
        whole-frame search's, for faces not yet found. ``wide``: the second
        look for a face its crop missed: twice as wide (fast motion)."""
        h, w = rgb.shape[:2]
        multiple = self._detect.INPUT_MULTIPLE_PX
        searches = []
        cost = 0.0
        for box in predicted:
            if _inside_share(box, rgb.shape) < 0.5:
                continue  # leaving the frame
            size = max(1.0, _size(box))
            side = max(_CROP_MIN_PX, _CROP_FACTOR * size) * (2 if wide else 1)
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x0, y0 = int(max(0, round(cx - side / 2))), int(max(0, round(cy - side / 2)))
            x1, y1 = int(min(w, round(cx + side / 2))), int(min(h, round(cy + side / 2)))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            cut = x0 == 0 or y0 == 0 or x1 == w or y1 == h
            # Network pixels per frame pixel: the face at about _CROP_FACE_PX, the
            # window a whole number of the network's multiples.
            net_side = max(2 * multiple, round(side * _CROP_FACE_PX / size / multiple) * multiple)
            scale = net_side / side
            net_w, net_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            # A crop cut by the frame's edge gets the photo search's mirrored
            # border there, as the whole-frame search does (a face cut by
            # the edge is completed by its mirror image).
            framed = 1 + 2 * _veil.DETECT_BORDER if cut else 1
            padded = [-(-int(math.ceil(n * framed)) // multiple) * multiple for n in (net_w, net_h)]
            cost += padded[0] * padded[1] + _CROP_CALL_PX
            searches.append((x0, y0, x1, y1, net_w, net_h, cut))
        if self.full_cost is None or cost > _CROP_MAX_SHARE * self.full_cost:
            return None
        found: List[Tuple[np.ndarray, float]] = []
        for x0, y0, x1, y1, net_w, net_h, cut in searches:
            self.crop_searches += 1
            crop = _veil.resize_bilinear(np.ascontiguousarray(rgb[y0:y1, x0:x1]), net_w, net_h)
            longer = -(-max(net_w, net_h) // multiple) * multiple
            faces, _ = self._search(crop, max(2 * multiple, longer), False, False, self._crop_session,
                                    border=None if cut else 0.0, mirror=False)
            faces = [f for f in faces if f[1] >= _CROP_MIN_SCORE]
            sx, sy = (x1 - x0) / net_w, (y1 - y0) / net_h
            for box, score in faces:
                # A face cut by the crop's edge is boxed too small; the
                # track's own search finds it whole next time, or a full one.
                found.append((box * np.array([sx, sy, sx, sy]) + np.array([x0, y0, x0, y0]), score))
        # Crops can overlap (two faces side by side): keep the best of duplicates.
        found.sort(key=lambda d: -d[1])
        kept: List[Tuple[np.ndarray, float]] = []
        for box, score in found:
            if all(_iou(box, k[0]) < 0.3 for k in kept):
                kept.append((box, score))
        return kept


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _max_pixels() -> int:
    raw = os.environ.get("VEIL_MAX_VIDEO_PIXELS")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise VideoError(f"VEIL_MAX_VIDEO_PIXELS must be an integer, got {raw!r}") from None
        if value > 0:
            return value
    return DEFAULT_MAX_VIDEO_PIXELS


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    # PyAV gives the display matrix's rotation counterclockwise, in degrees;
    # np.rot90 turns counterclockwise for positive k.
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


_RANGE_NAMES = {0: "unspecified", 1: "limited", 2: "full"}


@dataclass
class _Input:
    container: Any
    video: Any
    audio: Any
    width: int
    height: int
    fps: float
    rate: Fraction
    frames_expected: int


def _is_attached_picture(av, stream) -> bool:
    flag = getattr(getattr(av.stream, "Disposition", None), "attached_pic", None)
    try:
        return bool(flag is not None and stream.disposition & flag)
    except TypeError:
        return False


def _open_input(av, path: Path, max_pixels: int) -> _Input:
    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({exc.strerror or exc})") from None
    try:
        # Cover art is a video stream of one still picture: never the video.
        pictures = [s for s in container.streams.video if not _is_attached_picture(av, s)]
        if not pictures:
            raise VideoError(f"{path}: no video stream")
        video = pictures[0]
        ctx = video.codec_context
        if ctx is None or ctx.codec is None:
            raise VideoError(f"{path}: its video codec is unknown to veil's FFmpeg; nothing written")
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(f"{path}: the video stream has no frame size (corrupt or unknown codec)")
        if width * height > max_pixels:
            raise VideoError(
                f"{path}: frames of {width}x{height} are larger than veil reads "
                f"({max_pixels / 1e6:.0f} MP; VEIL_MAX_VIDEO_PIXELS raises it)"
            )
        rate = video.average_rate or video.guessed_rate or video.base_rate
        if not rate or rate <= 0:
            rate = Fraction(30)
        # Decode errors are errors, never hidden: FFmpeg would otherwise
        # conceal a damaged frame and go on.
        ctx.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
        ctx.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        return _Input(container, video, audio, width, height, float(rate), Fraction(rate), int(video.frames or 0))
    except BaseException:
        container.close()
        raise


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _output_kind(path_in: Path, path_out: Path) -> Tuple[str, str, set, str]:
    ext = path_out.suffix.lower()
    if ext not in _OUTPUTS:
        if ext in _WRITTEN_AS:
            raise VideoError(f"veil does not write {ext} files; name the output {_WRITTEN_AS[ext]}")
        raise VideoError(f"veil writes videos as .mp4, .mov, .m4v, .mkv or .webm, not {ext or 'a name without one'}")
    return _OUTPUTS[ext]


def _temp_path(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(6)}.veil-tmp"


def _strip_empty_udta(path: Path) -> None:
    """FFmpeg's MP4/MOV muxer writes an empty ``udta/meta/ilst`` even with
    no metadata; it is turned into a zeroed ``free`` box of the same size
    (the file's offsets do not change). Anything else in ``udta`` is an
    error: it would mean the muxer wrote metadata veil did not ask for."""
    with open(path, "r+b") as fp:
        size = os.fstat(fp.fileno()).st_size
        for kind, start, end, header in _iter_boxes(fp, 0, size):
            if kind != b"moov":
                continue
            for sub, s_start, s_end, s_header in _iter_boxes(fp, start + header, end):
                if sub != b"udta":
                    continue
                fp.seek(s_start + s_header)
                body = fp.read(s_end - s_start - s_header)
                if not _only_empty_ilst(body):
                    raise VideoError("the muxer wrote user data into the output; nothing written")
                fp.seek(s_start + 4)
                fp.write(b"free")
                fp.write(b"\0" * (s_end - s_start - 8))
        fp.flush()
        os.fsync(fp.fileno())


def _only_empty_ilst(body: bytes) -> bool:
    # udta -> meta (full box) -> hdlr 'mdir' + empty ilst, as FFmpeg writes it.
    if not body:
        return True
    if len(body) < 12 or body[4:8] != b"meta":
        return False
    pos, end = 12, int.from_bytes(body[0:4], "big")
    if end != len(body):
        return False
    while pos + 8 <= end:
        size = int.from_bytes(body[pos : pos + 4], "big")
        kind = body[pos + 4 : pos + 8]
        if size < 8 or pos + size > end:
            return False
        if kind == b"hdlr":
            if body[pos + 16 : pos + 20] != b"mdir":
                return False
        elif kind == b"ilst":
            if size != 8:
                return False
        else:
            return False
        pos += size
    return pos == end


# --------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------

PathLike = Union[str, "os.PathLike[str]"]


def anonymize_video(
    path_in: PathLike,
    path_out: Optional[PathLike] = None,
    *,
    method: str = "fill",
    strength: float = 0.3,
    noise: int = 0,
    shape: str = "ellipse",
    mask_scale: float = 1.3,
    feather: Optional[float] = None,
    feather_px: Optional[float] = None,
    color: Union[int, Sequence[int]] = (0, 0, 0),
    add_regions: Sequence[Tuple[float, float, float, float]] = (),
    keep: Sequence[Any] = (),
    seed: int = 0,
    threshold: Optional[float] = None,
    max_side_px: Optional[int] = None,
    tiles: bool = True,
    providers: Optional[Sequence[str]] = None,
    tracking: bool = True,
    hold_s: float = DEFAULT_HOLD_S,
    lookahead_s: float = DEFAULT_LOOKAHEAD_S,
    full_search_every: int = DEFAULT_FULL_SEARCH_EVERY,
    crf: int = DEFAULT_CRF,
    keep_audio: bool = False,
    overwrite: bool = False,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> VideoReport:
    """Covers every face in every frame of the video at ``path_in`` and
    writes the result to ``path_out`` (default
    :func:`default_video_output_path`); returns a :class:`VideoReport`.

    The covering options (``method`` ... ``seed``) are those of
    :func:`veil.anonymize.anonymize_with_report`; ``add_regions`` are
    covered in every frame; ``keep`` takes points ``(x, y)`` or boxes
    ``(left, top, width, height)`` (a face index means nothing across
    frames) and leaves visible, frame by frame, the face they pick; a
    ``keep`` item that picks no face in any frame is an error. Detection
    options are those of :func:`veil.detect.detect_faces`.

    Tracking: ``tracking=False`` covers each frame's own detections only
    (with a full search on every frame), which is how a per-frame tool
    behaves; it is there to measure what tracking adds. ``hold_s`` and
    ``lookahead_s`` are how long a face stays covered after its last and
    before its first detection; ``full_search_every`` how often, in frames,
    the whole frame is searched (every other time in full detail, shrunk in
    between; crops around tracked faces on the other frames).

    ``crf``: quality, 0-51 (lower is better; default :data:`DEFAULT_CRF`).
    ``keep_audio``: copy the sound (re-encoded when the output container
    cannot hold its codec), without metadata; by default it is dropped.
    ``progress(frames_done, frames_total_or_None)`` is called as frames are
    written.

    Raises :class:`VideoError` (a ``ValueError``) for a video that cannot be
    read completely (corrupt, truncated, unknown codec, no frames, frames
    too large) or written, ``FileExistsError`` when the output exists and
    ``overwrite`` is false, and ``TypeError``/``ValueError`` for bad
    options; in every case nothing is left at ``path_out``.
    """
    _anon = importlib.import_module(".anonymize", __package__)  # veil.anonymize is also the function
    from .detect import DEFAULT_MAX_SIDE_PX, DEFAULT_THRESHOLD, Face

    av = _import_av()
    started = time.perf_counter()
    path_in = Path(os.fspath(path_in))
    target = Path(os.fspath(path_out)) if path_out is not None else default_video_output_path(path_in)
    muxer, encoder, copyable_audio, audio_encoder = _output_kind(path_in, target)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer from 0 to 51, got {crf!r}")
    for name, value in (("hold_s", hold_s), ("lookahead_s", lookahead_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60:
            raise ValueError(f"{name} must be a number of seconds from 0 to 60, got {value!r}")
    if isinstance(full_search_every, bool) or not isinstance(full_search_every, int) or not 1 <= full_search_every <= 300:
        raise ValueError(f"full_search_every must be an integer from 1 to 300, got {full_search_every!r}")
    keep_specs = []
    for item in keep:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            raise ValueError("keep: a face index means nothing across frames; give a point X,Y or a box L,T,W,H")
        keep_specs.append(item)
    # Check every covering option once, before any work, on a blank frame.
    cover_options = dict(
        method=method, strength=strength, noise=noise, shape=shape, mask_scale=mask_scale, feather=feather,
        feather_px=feather_px, color=color, add_regions=list(add_regions), seed=seed,
    )
    _anon.anonymize_with_report(np.zeros((8, 8, 3), np.uint8), faces=[], **cover_options)
    _anon._check_keep(keep_specs)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    max_side_px = DEFAULT_MAX_SIDE_PX if max_side_px is None else max_side_px
    if not path_in.is_file():
        raise FileNotFoundError(f"{path_in}: no such file")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{target} already exists; use --overwrite to replace it")
    if os.path.realpath(target) == os.path.realpath(path_in) and not overwrite:
        raise FileExistsError(f"{target} is the input; refusing to replace it")

    source = _open_input(av, path_in, _max_pixels())
    temp = _temp_path(target)
    try:
        report = _run(
            av, source, path_in, target, temp, muxer, encoder, copyable_audio, audio_encoder,
            cover_options=cover_options, keep_specs=keep_specs, detector=_Detector(threshold, max_side_px, tiles, providers),
            tracking=tracking, hold_s=hold_s, lookahead_s=lookahead_s, full_search_every=full_search_every,
            crf=crf, keep_audio=keep_audio, progress=progress, face_type=Face,
        )
        if muxer in ("mp4", "mov"):
            _strip_empty_udta(temp)
        findings = scan_video(temp)
        if findings:
            raise VideoError("the output would still carry: " + "; ".join(findings) + "; nothing written")
        if overwrite:
            os.replace(temp, target)
        else:
            _io._move_without_replacing(temp, target)
        _io._fsync_folder(target.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, av.error.FFmpegError):
            raise VideoError(f"{path_in}: {exc.strerror or exc}; nothing written") from None
        raise
    finally:
        source.container.close()
    report.seconds = time.perf_counter() - started
    return report


def _run(
    av, source: _Input, path_in: Path, target: Path, temp: Path, muxer: str, encoder: str, copyable_audio: set,
    audio_encoder: str, *, cover_options: dict, keep_specs: list, detector: _Detector, tracking: bool,
    hold_s: float, lookahead_s: float, full_search_every: int, crf: int, keep_audio: bool,
    progress, face_type,
) -> VideoReport:
    _anon = importlib.import_module(".anonymize", __package__)  # veil.anonymize is also the function

    fps = source.fps
    hold = int(math.ceil(hold_s * fps)) if tracking else 0
    lookahead = int(math.ceil(lookahead_s * fps)) if tracking else 0
    if tracking:
        # A small face is found by a complete search, every other regular one.
        lookahead = max(lookahead, 2 * full_search_every - 1)
    every = full_search_every if tracking else 1
    notes: List[str] = []
    stop = threading.Event()
    errors: List[BaseException] = []

    # ---- stage 1: demux and decode (thread) -------------------------------
    decoded: "queue.Queue" = queue.Queue(maxsize=_QUEUE_FRAMES)
    streams = [source.video] + ([source.audio] if source.audio is not None and keep_audio else [])
    state = {"rotation": 0, "color_range": 0, "colorspace": None, "primaries": None, "trc": None}

    def put(item) -> bool:
        while not stop.is_set():
            try:
                decoded.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            count = 0
            for packet in source.container.demux(*streams):
                if stop.is_set():
                    return
                if packet.is_corrupt:
                    raise VideoError(f"{path_in}: a damaged packet in stream {packet.stream.index}; nothing written")
                if packet.stream.type == "audio":
                    if packet.size and not put(("audio", packet)):
                        return
                    continue
                for frame in packet.decode():
                    if frame.is_corrupt:
                        raise VideoError(f"{path_in}: frame {count} cannot be decoded; nothing written")
                    if count == 0:
                        state.update(rotation=int(frame.rotation or 0), color_range=int(frame.color_range or 0),
                                     colorspace=frame.colorspace, primaries=frame.color_primaries, trc=frame.color_trc)
                    rgb = _rotate(frame.to_ndarray(format="rgb24"), int(frame.rotation or 0))
                    if not put(("frame", count, rgb, frame.pts, frame.time_base)):
                        return
                    count += 1
            if source.frames_expected and count < source.frames_expected:
                raise VideoError(
                    f"{path_in}: only {count} of its {source.frames_expected} frames could be read "
                    "(truncated or damaged); nothing written"
                )
            put(("end", count))
        except BaseException as exc:  # handed to the main thread
            if isinstance(exc, av.error.FFmpegError):
                exc = VideoError(f"{path_in}: cannot be decoded ({exc.strerror or exc}); nothing written")
            errors.append(exc)
            stop.set()

    # ---- stage 3: cover, encode and mux (thread) ---------------------------
    encode_q: "queue.Queue" = queue.Queue(maxsize=_QUEUE_FRAMES)
    output = {"container": None, "video": None, "audio": None, "audio_mode": "none", "resampler": None,
              "frames": 0, "last_pts": None}

    def open_output(width: int, height: int) -> None:
        out = av.open(str(temp), "w", format=muxer, options={"fflags": "+bitexact"})
        output["container"] = out
        stream = out.add_stream(encoder, rate=source.rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = source.video.time_base
        ctx = stream.codec_context
        ctx.time_base = source.video.time_base
        ctx.color_range = state["color_range"]
        for name, key in (("colorspace", "colorspace"), ("color_primaries", "primaries"), ("color_trc", "trc")):
            if state[key] is not None:
                with contextlib.suppress(Exception):
                    setattr(ctx, name, state[key])
        if encoder == "libx264":
            ctx.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            ctx.options = {"crf": str(min(63, crf + 11)), "b": "0", "deadline": "realtime", "cpu-used": "8",
                           "row-mt": "1"}
        output["video"] = stream
        if source.audio is not None:
            if not keep_audio:
                output["audio_mode"] = "dropped"
            elif source.audio.codec_context.name in copyable_audio:
                a = out.add_stream_from_template(source.audio)
                a.metadata.clear()
                output["audio"], output["audio_mode"] = a, "copied"
            else:
                rate = source.audio.codec_context.sample_rate or 48000
                if audio_encoder == "libopus":
                    rate = 48000
                a = out.add_stream(audio_encoder, rate=rate)
                layout = source.audio.codec_context.layout.name if source.audio.codec_context.layout else "stereo"
                with contextlib.suppress(Exception):
                    a.layout = layout
                output["audio"], output["audio_mode"] = a, "re-encoded"
                fmt = a.codec_context.codec.audio_formats[0].name if a.codec_context.codec.audio_formats else "fltp"
                output["resampler"] = av.AudioResampler(format=fmt, layout=a.layout.name, rate=rate)
                output["audio_decoder"] = source.audio.codec_context

    def mux_audio(packet) -> None:
        stream = output["audio"]
        if stream is None:
            return
        out = output["container"]
        if output["audio_mode"] == "copied":
            packet.stream = stream
            out.mux(packet)
            return
        for frame in packet.decode():
            for converted in output["resampler"].resample(frame):
                converted.pts = None
                for p in stream.encode(converted):
                    out.mux(p)

    def cover(rgb: np.ndarray, boxes: Sequence[np.ndarray]) -> np.ndarray:
        faces = [face_type(box=tuple(float(v) for v in b), score=1.0, landmarks=()) for b in boxes]
        if not faces and not cover_options["add_regions"]:
            return rgb
        result, _ = _anon.anonymize_with_report(rgb, faces=faces, **cover_options)
        return result

    def write() -> None:
        try:
            pending_audio = []
            while True:
                item = encode_q.get()
                if item is None or stop.is_set():
                    break
                if item[0] == "audio":
                    if output["container"] is None:
                        pending_audio.append(item[1])
                    else:
                        mux_audio(item[1])
                    continue
                _, index, rgb, boxes, pts, time_base = item
                covered = cover(rgb, boxes)
                h, w = covered.shape[:2]
                if output["container"] is None:
                    open_output(w + (w & 1), h + (h & 1))
                    for packet in pending_audio:
                        mux_audio(packet)
                    pending_audio = []
                if (w & 1) or (h & 1):
                    if index == 0:
                        notes.append("odd frame size: one row/column repeated at the edge (4:2:0 needs even sizes)")
                    covered = np.pad(covered, ((0, h & 1), (0, w & 1), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(covered, format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace=state["colorspace"] or None,
                                       dst_color_range=state["color_range"] or None)
                if pts is None or (output["last_pts"] is not None and pts <= output["last_pts"]):
                    step = int(round(1 / (source.fps * source.video.time_base))) or 1
                    pts = (output["last_pts"] + step) if output["last_pts"] is not None else 0
                frame.pts = pts
                frame.time_base = source.video.time_base
                output["last_pts"] = pts
                for packet in output["video"].encode(frame):
                    output["container"].mux(packet)
                output["frames"] += 1
                if progress is not None:
                    progress(output["frames"], source.frames_expected or None)
            if not stop.is_set() and output["container"] is not None:
                for packet in output["video"].encode():
                    output["container"].mux(packet)
                if output["audio_mode"] == "re-encoded":
                    for p in output["audio"].encode():
                        output["container"].mux(p)
        except BaseException as exc:
            if isinstance(exc, av.error.FFmpegError):
                exc = VideoError(f"{target}: cannot be written ({exc.strerror or exc}); nothing written")
            errors.append(exc)
            stop.set()

    reader = threading.Thread(target=read, name="veil-video-read", daemon=True)
    writer = threading.Thread(target=write, name="veil-video-write", daemon=True)
    reader.start()
    writer.start()

    def send(item) -> None:
        while not stop.is_set():
            try:
                encode_q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # ---- stage 2: detect and track (this thread) ---------------------------
    tracker = _Tracker(hold)
    buffer: deque = deque()  # ("frame", index, rgb, pts, tb) or ("audio", packet), in order
    faces_per_frame: List[int] = []
    keep_hits = [0] * len(keep_specs)
    frames_read = 0
    last_full = -10**9
    regular = 0
    panned = 0.0  # how far the faces followed moved since the last whole-frame search, px
    last_whole = -1  # the last frame searched whole

    def boxes_for(index: int) -> List[np.ndarray]:
        loose = [d[0] for d in per_frame.get(index, [])]
        if not tracking:
            return loose
        covers = _covers_at(tracker.all_tracks(), index, hold, lookahead)
        # A crop's face that matched no track (the face sought, boxed far
        # from where its track was heading; a neighbour) is covered in its
        # frame, unless a track's cover already holds (nearly all of) it.
        return covers + [b for b in loose if all(_overlap_share(b, c) < 0.9 for c in covers)]

    per_frame: Dict[int, list] = {}

    def emit(upto: int) -> None:
        """Sends every buffered item whose frame's future is known up to ``upto``."""
        while buffer:
            head = buffer[0]
            if head[0] == "audio":
                send(buffer.popleft())
                continue
            _, index, rgb, pts, tb = head
            if index > upto:
                return
            buffer.popleft()
            boxes = boxes_for(index)
            h, w = rgb.shape[:2]
            boxes = [b for b in boxes if b[2] > 0 and b[3] > 0 and b[0] < w and b[1] < h]
            boxes = [np.clip(b, [0, 0, 0, 0], [w, h, w, h]) for b in boxes]
            boxes = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
            boxes = _drop_kept(boxes, keep_specs, keep_hits, face_type)
            per_frame.pop(index, None)
            faces_per_frame.append(len(boxes))
            send(("frame", index, rgb, boxes, pts, tb))

    try:
        while True:
            if stop.is_set():
                break
            try:
                item = decoded.get(timeout=0.2)
            except queue.Empty:
                continue
            if item[0] == "audio":
                buffer.append(item)
                continue
            if item[0] == "end":
                frames_read = item[1]
                last = next((b for b in reversed(buffer) if b[0] == "frame"), None)
                if tracking and last is not None and last[1] != last_whole:
                    # The last frame has no look-ahead: a face coming into
                    # view there is found by a whole-frame search of it, or
                    # not at all (and the look-ahead then covers it back).
                    tracker.update(last[1], detector.full(last[2]))
                break
            _, index, rgb, pts, tb = item
            if not tracking:
                per_frame[index] = detector.full(rgb)
            else:
                tracker.expire(index)
                live = tracker.live
                # The picture moves on (a pan, a zoom): faces come into view
                # at the rate it moves, so a regular search is also due once
                # the faces followed have moved _PAN_SHARE of the frame.
                due = index - last_full >= every or panned >= _PAN_SHARE * max(rgb.shape[:2])
                search = due  # the whole frame
                tiles = None  # as asked (full-resolution tiles for small faces)
                # Crops follow the faces seen in two frames, and a face seen
                # once in the frame after. A face seen once and then missed
                # is most often a false one (in crowds, a dozen flicker in and
                # out of every frame): it stays covered for the hold, and the
                # next full search looks for it again.
                followed = [t for t in live if len(t.frames) >= 2 or t.last == index - 1]
                if not due and followed:
                    detections = detector.crops(rgb, [t.predict(index) for t in followed])
                    # Crops only follow known faces (a crop also shows parts
                    # of its neighbours); new faces are the full search's.
                    lost = [] if detections is None else tracker.update(index, detections, create=False)
                    loose = list(tracker.unmatched)
                    # A face that left the frame is not lost.
                    lost = [t for t in lost if _inside_share(t.predict(index), rgb.shape) >= 0.5]
                    missed = [t for t in lost if t.last == index - 1]
                    if detections is None:
                        # The crops would cost as much: the whole frame.
                        search = True
                    else:
                        if missed and (
                            second := detector.crops(rgb, [t.predict(index) for t in missed], wide=True)
                        ) is not None:
                            # A track seen in the previous frame is not in
                            # its crop: a second look, wider (fast motion).
                            unseen = tracker.update(index, second, create=False, reach=2.0)
                            missed = [t for t in missed if t in unseen]
                            loose += tracker.unmatched
                        # Faces seen in two frames and still not found (or
                        # where the second look would cost more), at least
                        # _LOST_SHARE of those followed: search the whole
                        # frame now, with this frame's crop results
                        # withdrawn. (A track already missing waits for the
                        # regular search: it was looked for when it went
                        # missing. One seen once, most often a false face,
                        # waits too, covered for the hold, as does one face
                        # lost among many found.)
                        search = _lost_enough(missed, followed)
                        if not search:
                            per_frame[index] = loose
                    if search and detections is not None:
                        for t in tracker.live:
                            if t.last == index:
                                t.frames.pop(), t.boxes.pop(), t.covers.pop(), t.scores.pop()
                        tracker.live = [t for t in tracker.live if t.frames]
                        # Looking for known faces: the tiles, which find only
                        # small ones, are needed only for a small one.
                        shrink = min(1.0, detector.max_side_px / max(rgb.shape[:2]))
                        tiles = any(_size(t.boxes[-1]) * shrink < _SMALL_FACE_PX for t in lost)
                # With no face in sight nothing is searched until the next
                # full search is due: the look-ahead, never shorter than the
                # interval, covers a new face's frames before it is found.
                if search:
                    if due:
                        # Every other regular search is quick: the whole
                        # frame shrunk and mirrored, for faces that come into
                        # view large; the complete one (fine pass, tiles,
                        # turned copies) finds the small and the sideways.
                        quick = regular % 2 == 1
                        regular += 1
                        tracker.update(index, detector.full(rgb, False if quick else None, not quick))
                        last_full = index
                    else:
                        # Off the schedule (crops too dear, or a known face
                        # lost): the faces sought are known and were found
                        # upright, so no turned copies (new and sideways
                        # faces are the regular searches'). It stands in for
                        # the next regular search only if that one is quick:
                        # a complete one still comes on time, and with it
                        # every face the quick passes cannot find.
                        tracker.update(index, detector.full(rgb, tiles, False))
                        if regular % 2 == 1:
                            regular += 1
                            last_full = index
                if search:
                    panned = 0.0
                    last_whole = index
                else:
                    moving = [t for t in tracker.live if t.last == index and len(t.frames) >= 2]
                    if moving:
                        panned += float(np.median([np.hypot(*((t.velocity()[:2] + t.velocity()[2:]) / 2)) for t in moving]))
            buffer.append(("frame", index, rgb, pts, tb))
            emit(index - lookahead)
        if not stop.is_set():
            emit(10**18)
            if frames_read == 0:
                raise VideoError(f"{path_in}: the video has no frames; nothing written")
            missing = [keep_specs[i] for i, n in enumerate(keep_hits) if n == 0]
            if missing:
                raise _anon.KeepError(f"keep {missing[0]!r} matches no face in any frame; nothing written")
    except BaseException:
        stop.set()
        raise
    finally:
        if stop.is_set():
            # Unblock both threads.
            with contextlib.suppress(queue.Empty):
                while True:
                    decoded.get_nowait()
        send(None) if not stop.is_set() else None
        if stop.is_set():
            with contextlib.suppress(queue.Full):
                encode_q.put_nowait(None)
        reader.join()
        writer.join()
        if output["container"] is not None:
            with contextlib.suppress(Exception) if (stop.is_set() or errors) else contextlib.nullcontext():
                output["container"].close()
    if errors:
        raise errors[0]
    if output["frames"] != frames_read:
        raise VideoError(f"{target}: {output['frames']} of {frames_read} frames written; nothing written")

    tracks = tracker.all_tracks() if tracking else []
    if state["rotation"]:
        notes.append(f"rotation of {state['rotation']} degrees applied to the pixels")
    if source.audio is not None:
        notes.append({"dropped": "audio dropped (keep_audio=True keeps it)",
                      "copied": "audio copied without its metadata",
                      "re-encoded": f"audio re-encoded ({audio_encoder}) without its metadata"}[output["audio_mode"]])
    return VideoReport(
        input=str(path_in),
        output=str(target),
        container=muxer,
        video_codec="h264" if encoder == "libx264" else "vp9",
        width=source.height if state["rotation"] % 180 else source.width,
        height=source.width if state["rotation"] % 180 else source.height,
        fps=fps,
        frames=frames_read,
        rotation=state["rotation"],
        color_range=_RANGE_NAMES.get(state["color_range"], str(state["color_range"])),
        faces_per_frame=faces_per_frame,
        tracks=len(tracks),
        longest_gap_frames=max((t.longest_gap() for t in tracks), default=0),
        full_searches=detector.full_searches,
        crop_searches=detector.crop_searches,
        audio=output["audio_mode"],
        method=cover_options["method"] if isinstance(cover_options["method"], str) else str(cover_options["method"]),
        crf=crf,
        seconds=0.0,
        notes=notes,
    )


def _drop_kept(boxes: List[np.ndarray], specs: Sequence[Any], hits: List[int], face_type) -> List[np.ndarray]:
    """Leaves out the boxes a keep item picks in this frame (the rule of
    :mod:`veil.anonymize`: a point inside the box, nearest centre first; a
    box holding at least half of it)."""
    if not specs or not boxes:
        return boxes
    from .anonymize import KeepError, _kept_indices

    faces = [face_type(box=tuple(float(v) for v in b), score=1.0, landmarks=()) for b in boxes]
    drop = set()
    for i, spec in enumerate(specs):
        try:
            picked = _kept_indices(faces, [spec])
        except KeepError:
            continue
        if picked:
            hits[i] += 1
            drop.update(picked)
    return [b for i, b in enumerate(boxes) if i not in drop]


# --------------------------------------------------------------------------
# The byte-level scanner (no FFmpeg)
# --------------------------------------------------------------------------

# MP4/MOV boxes veil's output may hold: containers to descend into, and
# leaves whose contents are only timing, sizes and codec set-up.
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"edts", b"mvex", b"moof", b"traf"}
_MP4_LEAVES = {
    b"ftyp", b"mvhd", b"tkhd", b"elst", b"mdhd", b"hdlr", b"vmhd", b"smhd", b"dref", b"stsd", b"stts", b"stss",
    b"ctts", b"stsc", b"stsz", b"stz2", b"stco", b"co64", b"sgpd", b"sbgp", b"sdtp", b"cslg", b"mdat", b"free",
    b"skip", b"mehd", b"trex", b"mfhd", b"tfhd", b"tfdt", b"trun", b"wide", b"stps",
}
_MP4_HANDLERS = {b"vide", b"soun"}
_MP4_SAMPLE_ENTRIES = {b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09", b"mp4a", b"alac", b"Opus", b"ac-3", b"ec-3",
                       b"fLaC", b".mp3", b"lpcm", b"sowt", b"twos", b"in24", b"fl32"}
_MP4_SAMPLE_CHILDREN = {b"avcC", b"hvcC", b"vpcC", b"btrt", b"pasp", b"colr", b"fiel", b"esds", b"dOps", b"dac3",
                        b"dec3", b"dfLa", b"chan", b"alac", b"wave", b"frma", b"clli", b"mdcv", b"SmDm", b"CoLL",
                        b"chnl", b"enda", b"\0\0\0\0"}


def _iter_boxes(fp: BinaryIO, start: int, end: int) -> Iterator[Tuple[bytes, int, int, int]]:
    """(type, start, end, header size) of each box between ``start`` and
    ``end``; raises VideoError for a box that does not fit."""
    pos = start
    while pos + 8 <= end:
        fp.seek(pos)
        head = fp.read(16)
        size = int.from_bytes(head[0:4], "big")
        kind = head[4:8]
        header = 8
        if size == 1:
            if len(head) < 16:
                raise VideoError("a box is cut short")
            size = int.from_bytes(head[8:16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise VideoError(f"box {kind!r} at {pos} does not fit in its parent")
        yield kind, pos, pos + size, header
        pos += size
    if pos != end and end - pos not in (0,):
        # Up to 7 stray bytes (some muxers pad); anything between is unexplained.
        fp.seek(pos)
        if fp.read(end - pos).strip(b"\0"):
            raise VideoError(f"{end - pos} unexplained bytes at {pos}")


def _describe_user_data(body: bytes) -> List[str]:
    """Names what a ``udta``/``meta`` box holds: its child boxes (``©xyz``
    location, ``©mak`` make, ...) and the names in a ``keys`` box
    (``com.apple.quicktime.location.ISO6709``), read leniently."""
    names: List[str] = []

    def walk(data: bytes, depth: int) -> None:
        pos = 0
        if len(data) >= 12 and data[4:8] not in (b"hdlr", b"keys", b"ilst") and data[0:4] == b"\0\0\0\0":
            pos = 4  # ISO meta is a full box: version and flags first
        while pos + 8 <= len(data) and depth < 4:
            size = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            if size < 8 or pos + size > len(data):
                return
            label = kind.decode("latin-1")
            if kind == b"keys":
                k, count = pos + 16, int.from_bytes(data[pos + 12 : pos + 16], "big")
                for _ in range(min(count, 64)):
                    k_size = int.from_bytes(data[k : k + 4], "big")
                    if k_size < 8 or k + k_size > pos + size:
                        break
                    names.append(data[k + 8 : k + k_size].decode("latin-1"))
                    k += k_size
            elif kind in (b"meta", b"ilst", b"udta"):
                walk(data[pos + 8 : pos + size], depth + 1)
            elif kind not in (b"hdlr", b"free"):
                names.append(label)
            pos += size

    walk(body, 0)
    return names


def _scan_mp4(fp: BinaryIO, size: int, findings: List[str]) -> None:
    def full_box_times(kind: bytes, body: bytes) -> None:
        # mvhd/tkhd/mdhd: version, flags, then creation and modification time.
        if len(body) < 12:
            return
        version = body[0]
        if version == 1 and len(body) >= 20:
            created, modified = struct.unpack(">QQ", body[4:20])
        else:
            created, modified = struct.unpack(">II", body[4:12])
        if created or modified:
            findings.append(f"{kind.decode('latin-1')} creation/modification time")

    def walk(start: int, end: int, where: str) -> None:
        for kind, b_start, b_end, header in _iter_boxes(fp, start, end):
            name = kind.decode("latin-1")
            path = f"{where}/{name}"
            if kind in _MP4_CONTAINERS:
                walk(b_start + header, b_end, path)
                continue
            if kind not in _MP4_LEAVES:
                if kind in (b"udta", b"meta"):
                    fp.seek(b_start + header)
                    inside = _describe_user_data(fp.read(min(b_end - b_start - header, 1 << 20)))
                    findings.append(f"user data {path}" + (f" ({', '.join(inside)})" if inside else ""))
                elif kind == b"uuid":
                    fp.seek(b_start + header)
                    ident = fp.read(16)
                    xmp = ident == bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
                    findings.append(f"{'XMP' if xmp else 'uuid'} box {path}")
                elif kind == b"tref":
                    findings.append(f"track references {path} (chapters or timecode)")
                else:
                    findings.append(f"unexplained box {path}")
                continue
            if kind in (b"mdat", b"free", b"skip", b"wide"):
                if kind != b"mdat":
                    fp.seek(b_start + header)
                    if fp.read(min(b_end - b_start - header, 1 << 20)).strip(b"\0"):
                        findings.append(f"box {path} holds data")
                continue
            fp.seek(b_start + header)
            body = fp.read(b_end - b_start - header)
            if kind in (b"mvhd", b"tkhd", b"mdhd"):
                full_box_times(kind, body)
            elif kind == b"hdlr":
                handler = body[8:12]
                if where.endswith("/mdia") and handler not in _MP4_HANDLERS:
                    findings.append(f"a {handler.decode('latin-1')!r} track (only video and sound are written)")
            elif kind == b"stsd":
                scan_sample_entries(body, path)
            elif kind == b"dref":
                if len(body) >= 8 and int.from_bytes(body[4:8], "big") != 1:
                    findings.append("dref with external references")

    def scan_sample_entries(body: bytes, where: str) -> None:
        count = int.from_bytes(body[4:8], "big") if len(body) >= 8 else 0
        pos = 8
        for _ in range(count):
            if pos + 8 > len(body):
                findings.append(f"{where}: cut short")
                return
            size = int.from_bytes(body[pos : pos + 4], "big")
            kind = body[pos + 4 : pos + 8]
            if kind not in _MP4_SAMPLE_ENTRIES or size < 8 or pos + size > len(body):
                findings.append(f"sample entry {kind.decode('latin-1')!r} in {where}")
                return
            # Fixed fields before the child boxes: visual entries 78 bytes, audio 28 (v0).
            fixed = 78 if kind in (b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09") else 28
            if fixed == 78:
                name_len = body[pos + 8 + 42] if pos + 8 + 42 < len(body) else 0
                if name_len:
                    # The compressor name: FFmpeg leaves it empty with bitexact.
                    findings.append(f"compressor name in {where}/{kind.decode('latin-1')}")
            else:
                version = int.from_bytes(body[pos + 16 : pos + 18], "big")
                fixed += {0: 0, 1: 16, 2: 36}.get(version, 0)
            child = pos + 8 + fixed
            while child + 8 <= pos + size:
                c_size = int.from_bytes(body[child : child + 4], "big")
                c_kind = body[child + 4 : child + 8]
                if c_size < 8 or child + c_size > pos + size:
                    break
                if c_kind not in _MP4_SAMPLE_CHILDREN:
                    findings.append(f"box {c_kind.decode('latin-1')!r} in {where}/{kind.decode('latin-1')}")
                child += c_size
            pos += size

    walk(0, size, "")


# Matroska / WebM element IDs (with their length marker bits, as written).
_EBML_HEADER = 0x1A45DFA3
_SEGMENT = 0x18538067
_MKV_TOP_OK = {0x114D9B74: "SeekHead", 0x1549A966: "Info", 0x1654AE6B: "Tracks", 0x1C53BB6B: "Cues",
               0x1F43B675: "Cluster", 0xEC: "Void", 0xBF: "CRC-32", 0x1254C367: "Tags"}
_MKV_TOP_BAD = {0x1043A770: "chapters", 0x1941A469: "attachments"}
_MKV_INFO_OK = {0x2AD7B1: "TimestampScale", 0x4489: "Duration", 0x4D80: "MuxingApp", 0x5741: "WritingApp",
                0x73A4: "SegmentUUID", 0xEC: "Void", 0xBF: "CRC-32"}
_MKV_INFO_BAD = {0x4461: "creation date (DateUTC)", 0x7BA9: "title", 0x3CB923: "previous segment",
                 0x3EB923: "next segment", 0x4444: "segment family", 0x6924: "chapter translate"}
_MKV_TRACK_ENTRY = 0xAE
_MKV_TRACK_TYPE = 0x83
_MKV_TRACK_NAME = 0x536E
_MKV_TAG = 0x7373
_MKV_SIMPLE_TAG = 0x67C8
_MKV_TAG_NAME = 0x45A3
_MKV_TAG_STRING = 0x4487
# Tags FFmpeg's Matroska muxer writes about the encoding itself.
_MKV_TAGS_OK = {"DURATION", "ENCODER"}


def _read_vint(fp: BinaryIO, keep_marker: bool) -> Tuple[int, int]:
    first = fp.read(1)
    if not first:
        raise VideoError("an element is cut short")
    b = first[0]
    length = 1
    mask = 0x80
    while length <= 8 and not b & mask:
        mask >>= 1
        length += 1
    if length > 8:
        raise VideoError("an invalid element header")
    rest = fp.read(length - 1)
    if len(rest) != length - 1:
        raise VideoError("an element is cut short")
    value = b if keep_marker else b & (mask - 1)
    for c in rest:
        value = (value << 8) | c
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return (-1 if unknown else value), length


def _iter_elements(fp: BinaryIO, start: int, end: int) -> Iterator[Tuple[int, int, int]]:
    """(id, data start, data end) of each EBML element in [start, end)."""
    pos = start
    while pos < end:
        fp.seek(pos)
        element, n1 = _read_vint(fp, True)
        size, n2 = _read_vint(fp, False)
        data = pos + n1 + n2
        if size < 0:
            if element != _SEGMENT:
                raise VideoError(f"element {element:#x} of unknown size")
            size = end - data
        if data + size > end:
            raise VideoError(f"element {element:#x} at {pos} does not fit in its parent")
        yield element, data, data + size
        pos = data + size


def _mkv_allowed(element: int, bad: dict, ok, what: str, findings: List[str]) -> bool:
    """Whether a Matroska element may stay; a finding is noted when not."""
    if element in bad:
        findings.append(bad[element])
        return False
    if element not in ok:
        findings.append(f"unexplained {what} {element:#x}")
        return False
    return True


def _scan_matroska(fp: BinaryIO, size: int, findings: List[str]) -> None:
    def read(start: int, end: int) -> bytes:
        fp.seek(start)
        return fp.read(end - start)

    seen_segment = False
    for element, start, end in _iter_elements(fp, 0, size):
        if element == _EBML_HEADER:
            continue
        if element == 0xEC:
            continue
        if element != _SEGMENT or seen_segment:
            findings.append(f"element {element:#x} outside the segment")
            continue
        seen_segment = True
        for top, t_start, t_end in _iter_elements(fp, start, end):
            if not _mkv_allowed(top, _MKV_TOP_BAD, _MKV_TOP_OK, "element", findings):
                continue
            if top == 0x1549A966:
                for e, _, _ in _iter_elements(fp, t_start, t_end):
                    _mkv_allowed(e, _MKV_INFO_BAD, _MKV_INFO_OK, "info element", findings)
            elif top == 0x1654AE6B:
                for e, e_start, e_end in _iter_elements(fp, t_start, t_end):
                    if e != _MKV_TRACK_ENTRY:
                        continue
                    for f, f_start, f_end in _iter_elements(fp, e_start, e_end):
                        if f == _MKV_TRACK_TYPE:
                            kind = int.from_bytes(read(f_start, f_end), "big")
                            if kind not in (1, 2):
                                names = {0x10: "logo", 0x11: "subtitle", 0x12: "buttons", 0x20: "control",
                                         0x21: "metadata", 3: "complex"}
                                findings.append(f"a {names.get(kind, str(kind))} track")
                        elif f == _MKV_TRACK_NAME:
                            findings.append("a track name")
            elif top == 0x1254C367:
                for tag, g_start, g_end in _iter_elements(fp, t_start, t_end):
                    if tag != _MKV_TAG:
                        continue
                    for s, s_start, s_end in _iter_elements(fp, g_start, g_end):
                        if s != _MKV_SIMPLE_TAG:
                            continue
                        name, value = "", ""
                        for v, v_start, v_end in _iter_elements(fp, s_start, s_end):
                            if v == _MKV_TAG_NAME:
                                name = read(v_start, v_end).decode("utf-8", "replace")
                            elif v == _MKV_TAG_STRING:
                                value = read(v_start, v_end).decode("utf-8", "replace")
                        if name.upper() not in _MKV_TAGS_OK or (name.upper() == "ENCODER" and not value.startswith("Lav")):
                            findings.append(f"tag {name}")
    if not seen_segment:
        findings.append("no segment")


def scan_video(path: PathLike) -> List[str]:
    """Lists what in an MP4/MOV or Matroska/WebM file could locate or name
    it: metadata boxes or elements (``udta``, ``meta``, XMP ``uuid``, tags,
    dates, titles), tracks other than video and sound (subtitles, chapters,
    timecode, data), attachments and cover art, and any box or element it
    does not know. Parses the bytes itself (no FFmpeg). Empty means clean."""
    findings: List[str] = []
    with open(os.fspath(path), "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        head = fp.read(12)
        try:
            if head[:4] == b"\x1a\x45\xdf\xa3":
                _scan_matroska(fp, size, findings)
            elif head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                _scan_mp4(fp, size, findings)
            else:
                findings.append("not an MP4/MOV or Matroska/WebM file")
        except VideoError as exc:
            findings.append(f"unreadable structure: {exc}")
    return findings


# --------------------------------------------------------------------------
# `veil blur clip.mp4`: the options and the per-file work (called by veil.cli)
# --------------------------------------------------------------------------


def add_blur_options(parser) -> None:
    """The video options of ``veil blur``."""
    import argparse

    def bounded(kind, low, high):
        def parse(text: str):
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
            if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
                raise argparse.ArgumentTypeError(f"{text} is out of range: {low} to {high}")
            return value

        return parse

    g = parser.add_argument_group(
        "videos (.mp4 .mov .m4v .mkv .webm .avi; needs PyAV: pip install 'veil[video]')"
    )
    g.add_argument("--crf", type=bounded(int, 0, 51), default=DEFAULT_CRF, metavar="N",
                   help="video quality, 0-51, lower is better and larger (default: %(default)s)")
    g.add_argument("--keep-audio", action="store_true",
                   help="keep the sound (default: dropped, since a voice identifies too; its metadata goes either way)")
    g.add_argument("--hold", type=bounded(float, 0.0, 60.0), default=DEFAULT_HOLD_S, metavar="SECONDS",
                   help="keep a face covered this long after it was last detected (default: %(default)s)")
    g.add_argument("--lookahead", type=bounded(float, 0.0, 60.0), default=DEFAULT_LOOKAHEAD_S, metavar="SECONDS",
                   help="and this long before it was first detected (default: %(default)s)")
    g.add_argument("--full-search-every", type=bounded(int, 1, 300), default=DEFAULT_FULL_SEARCH_EVERY, metavar="N",
                   help="search the whole frame every N frames (every other time in full detail, the others "
                   "shrunk); in between, around tracked faces (default: %(default)s)")
    g.add_argument("--no-tracking", dest="tracking", action="store_false",
                   help="cover each frame's own detections only (a face missed in one frame shows in it)")


def blur_job(job, args, console) -> dict:
    """``veil blur`` on one video file: the record for the report."""
    import sys

    path = Path(job.path)
    if args.output:
        target = Path(args.output)
    elif args.in_place:
        if path.suffix.lower() not in _OUTPUTS:
            raise VideoError(f"veil cannot write {path.suffix} files, so --in-place is impossible; use --out-dir")
        target = path
    elif args.out_dir:
        rel = Path(job.relative)
        target = Path(args.out_dir) / rel.with_suffix(_WRITTEN_AS.get(rel.suffix.lower(), rel.suffix))
    else:
        target = default_video_output_path(path)
    if getattr(args, "format", None):
        raise ValueError("--format is for photos; a video's output name picks its container")
    if os.path.realpath(target) == os.path.realpath(path) and not args.in_place:
        raise FileExistsError(f"{target} is an input; refusing to replace it (use --in-place to mean it)")
    if os.path.lexists(target) and not (args.overwrite or args.in_place):
        raise FileExistsError(f"{target} already exists; use --overwrite to replace it, or --out-dir")
    if target.parent != Path("") and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(desc=job.label, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)

    def progress(done: int, total: Optional[int]) -> None:
        if bar is not None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

    try:
        report = anonymize_video(
            path, target,
            method=args.method, strength=args.strength, noise=args.noise, shape=args.shape,
            mask_scale=args.mask_scale, feather=args.feather, feather_px=args.feather_px, color=args.color,
            add_regions=args.add_region, keep=args.keep, seed=args.seed,
            threshold=args.threshold, max_side_px=args.max_side_px, tiles=args.tiles,
            tracking=args.tracking, hold_s=args.hold, lookahead_s=args.lookahead,
            full_search_every=args.full_search_every, crf=args.crf, keep_audio=args.keep_audio,
            overwrite=args.overwrite or args.in_place, progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    summary = report.to_dict()
    record = {"input": job.label, "status": "done", "kind": "video", "format": report.container.upper(),
              **summary, "faces": report.tracks, "warnings": []}
    if report.audio == "dropped":
        console.say(f"veil: {job.label}: audio dropped (a voice identifies too; --keep-audio keeps it)")
    elif report.audio in ("copied", "re-encoded"):
        console.say(f"veil: {job.label}: audio kept ({report.audio}), its metadata removed")
    if not report.tracks:
        if args.require_faces:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            raise ValueError("no face found in any frame (--require-faces); nothing written")
        record["warnings"].append("no face found in any frame; only the metadata was removed")
        console.say(f"veil: {job.label}: no face found in any frame; wrote {target} with only its metadata removed")
    if not args.json:
        fps = report.frames / report.seconds if report.seconds else 0.0
        console.say(
            f"{job.label} -> {target} ({report.frames} frames, {report.tracks} face track(s), "
            f"faces in {report.frames_with_faces} frames; {report.method}; {fps:.1f} frames/s)",
            stream=sys.stdout,
        )
    return record
