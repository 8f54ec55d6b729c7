"""Test clips with ground truth in every frame, made from labelled photos.

A virtual camera pans and zooms across a photo whose faces are labelled;
each frame is the camera's window resampled to the frame size, so the
labelled boxes are known exactly in every frame. Some frames are made hard
for a detector, as phone videos are: short bursts of strong motion blur
(camera shake) and of darkness. Used by tests/test_video.py and
benches/bench_video.py.

Flashes are counted on the decoded output: a labelled face is "shown" in a
frame when less than ``COVERED_SHARE`` of the inner part of its box is the
solid fill colour (black).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFilter

Box = Tuple[float, float, float, float]  # left, top, right, bottom

#: The inner part of a labelled box that must be covered (its centre, this
#: fraction of its width and height), and how much of it.
INNER = 0.6
COVERED_SHARE = 0.9
#: A pixel counts as filled when every channel is at most this (black fill
#: after lossy encoding).
FILL_MAX = 40
#: Labelled faces smaller than this in a frame, or less than half inside
#: it, are not counted.
MIN_FACE_PX = 10


@dataclass
class Clip:
    frames: List[np.ndarray]
    truth: List[List[Box]]  # per frame, the labelled boxes visible in it
    fps: int


def camera_clip(
    photo: np.ndarray,
    boxes_ltwh: Sequence[Sequence[float]],
    size: Tuple[int, int],
    frames: int,
    *,
    fps: int = 25,
    zoom: Tuple[float, float] = (1.0, 0.6),
    hard_every: int = 0,
    hard_len: int = 3,
    seed: int = 0,
) -> Clip:
    """A camera moving across ``photo`` (H x W x 3) with faces at
    ``boxes_ltwh`` (left, top, width, height). ``size`` is (width, height)
    of the frames; ``zoom`` the window's share of the photo at the start and
    the end (1 = as much of the photo as fits the frame's aspect, smaller =
    closer); the window's centre sweeps from one side to the other along a
    gentle curve. With ``hard_every``, every that many frames ``hard_len``
    frames get strong motion blur or darkness, alternately."""
    rng = np.random.default_rng(seed)
    ph, pw = photo.shape[:2]
    fw, fh = size
    aspect = fw / fh
    base_w = min(pw, ph * aspect)
    image = Image.fromarray(photo)
    out_frames: List[np.ndarray] = []
    truth: List[List[Box]] = []
    labelled = [(l, t, l + w, t + h) for l, t, w, h in boxes_ltwh]
    for i in range(frames):
        s = i / max(1, frames - 1)
        share = zoom[0] + (zoom[1] - zoom[0]) * s
        ww = base_w * share
        wh = ww / aspect
        # The centre moves across the free room, left to right, with a
        # vertical wave.
        room_x, room_y = pw - ww, ph - wh
        cx = ww / 2 + room_x * s
        cy = wh / 2 + room_y * (0.5 + 0.4 * math.sin(2 * math.pi * s))
        x0, y0 = cx - ww / 2, cy - wh / 2
        frame = image.transform((fw, fh), Image.Transform.EXTENT, (x0, y0, x0 + ww, y0 + wh),
                                resample=Image.Resampling.BILINEAR)
        scale = fw / ww
        visible = []
        for l, t, r, b in labelled:
            box = ((l - x0) * scale, (t - y0) * scale, (r - x0) * scale, (b - y0) * scale)
            inside_w = max(0.0, min(box[2], fw) - max(box[0], 0))
            inside_h = max(0.0, min(box[3], fh) - max(box[1], 0))
            area = (box[2] - box[0]) * (box[3] - box[1])
            if max(box[2] - box[0], box[3] - box[1]) >= MIN_FACE_PX and inside_w * inside_h >= 0.5 * area:
                visible.append(box)
        if hard_every and i % hard_every >= hard_every - hard_len:
            burst = (i // hard_every) % 2
            if burst == 0:
                frame = _motion_blur(np.asarray(frame), max(9, fw // 25), horizontal=bool(rng.integers(2)))
                frame = Image.fromarray(frame)
            else:
                frame = Image.fromarray((np.asarray(frame).astype(np.float32) * 0.25).astype(np.uint8))
        out_frames.append(np.ascontiguousarray(np.asarray(frame.convert("RGB"))))
        truth.append(visible)
    return Clip(out_frames, truth, fps)


def mosaic(folder: Path, names: Sequence[str], boxes: dict) -> Tuple[np.ndarray, List[Tuple[float, float, float, float]]]:
    """The photos ``names`` of ``folder`` side by side, 3 per row, each scaled
    to the same height, and their ``boxes`` (name: left, top, width, height)
    moved with them."""
    photos = [Image.open(folder / n).convert("RGB") for n in names]
    cell_h = 375
    rows, labelled, y = [], [], 0
    for r in range(0, len(photos), 3):
        x = 0
        row = []
        for name, im in zip(names[r : r + 3], photos[r : r + 3]):
            f = cell_h / im.height
            row.append((im.resize((round(im.width * f), cell_h), Image.Resampling.LANCZOS), x))
            labelled += [(x + l * f, y + t * f, w * f, h * f) for l, t, w, h in boxes[name]]
            x += round(im.width * f)
        rows.append((row, x))
        y += cell_h
    canvas = Image.new("RGB", (max(w for _, w in rows), y))
    for i, (row, _) in enumerate(rows):
        for im, x in row:
            canvas.paste(im, (x, i * cell_h))
    return np.asarray(canvas), labelled


def _motion_blur(rgb: np.ndarray, length: int, horizontal: bool) -> np.ndarray:
    """A straight-line motion blur of ``length`` pixels (camera shake)."""
    axis = 1 if horizontal else 0
    acc = np.zeros(rgb.shape, np.float32)
    for k in range(length):
        acc += np.roll(rgb, k - length // 2, axis=axis)
    return (acc / length).astype(np.uint8)


def write_clip(clip: Clip, path: Path, *, codec: str = "libx264", fmt: Optional[str] = None,
               rotation: int = 0, crf: int = 18) -> Path:
    """Encodes the clip with PyAV (the frames as they are; ``rotation`` adds
    a display matrix, the frames being stored turned back the other way)."""
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=clip.fps)
        h, w = clip.frames[0].shape[:2]
        if rotation % 180:
            w, h = h, w
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.codec_context.options = {"crf": str(crf), "preset": "veryfast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb in clip.frames:
            stored = np.ascontiguousarray(np.rot90(rgb, -round(rotation / 90))) if rotation else rgb
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def read_frames(path: Path) -> List[np.ndarray]:
    import av

    with av.open(str(path)) as src:
        return [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]


def covered(frame: np.ndarray, box: Box) -> bool:
    l, t, r, b = box
    h, w = frame.shape[:2]
    mx, my = (r - l) * (1 - INNER) / 2, (b - t) * (1 - INNER) / 2
    x0, x1 = int(max(0, math.floor(l + mx))), int(min(w, math.ceil(r - mx)))
    y0, y1 = int(max(0, math.floor(t + my))), int(min(h, math.ceil(b - my)))
    if x1 <= x0 or y1 <= y0:
        return True  # nothing of the face's centre is in the frame
    inner = frame[y0:y1, x0:x1]
    return float((inner.max(axis=2) <= FILL_MAX).mean()) >= COVERED_SHARE


def count_flashes(frames: Sequence[np.ndarray], truth: Sequence[Sequence[Box]]) -> Tuple[int, int]:
    """(flashes, labelled faces) over the clip: a flash is one labelled face
    shown in one frame."""
    if len(frames) != len(truth):
        raise AssertionError(f"{len(frames)} frames decoded for {len(truth)} labelled")
    flashes = labelled = 0
    for frame, boxes in zip(frames, truth):
        for box in boxes:
            labelled += 1
            flashes += not covered(frame, box)
    return flashes, labelled


def flash_frames(frames: Sequence[np.ndarray], truth: Sequence[Sequence[Box]]) -> int:
    """Frames in which at least one labelled face is shown."""
    return sum(any(not covered(f, b) for b in boxes) for f, boxes in zip(frames, truth))


#: The faces of tests/fixtures/two_faces.jpg as (left, top, width, height),
#: labelled by hand and checked by eye (the two men and the girl at the
#: lower right; the woman cut by the right edge shows no face).
TWO_FACES_BOXES = ((302, 150, 74, 112), (455, 142, 80, 104), (655, 420, 56, 67))
