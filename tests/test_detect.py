"""Face detection: decoding, suppression, the model session, and real photos.

Tests that need the shared face photos (``../shared/data/faces``) skip when
that folder is absent, as it is in a fresh clone.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from veil import _veil
from veil import detect as vd

from _bordercut import cut

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
GROUPS = FACES / "groups"
needs_photos = pytest.mark.skipif(not (GROUPS / "boxes.json").is_file(), reason="shared face photos absent")


def load(name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(GROUPS / name).convert("RGB"))


def planes(rows: int, cols: int):
    """Zeroed CenterFace outputs for a rows x cols feature map."""
    return (
        np.zeros((1, 1, rows, cols), np.float32),
        np.zeros((1, 2, rows, cols), np.float32),
        np.zeros((1, 2, rows, cols), np.float32),
        np.zeros((1, 10, rows, cols), np.float32),
    )


def face_row(l, t, r, b, score):
    return [l, t, r, b, score] + [0.0] * 10


# --- decoding ---------------------------------------------------------------


def test_decode_synthetic_heatmap():
    heat, scale, offset, lms = planes(6, 8)
    heat[0, 0, 2, 5] = 0.8  # row 2, col 5
    scale[0, :, 2, 5] = [np.log(20 / 4), np.log(12 / 4)]  # 20 px tall, 12 px wide
    offset[0, :, 2, 5] = [0.5, 0.25]  # (y, x) in cells
    lms[0, 0::2, 2, 5] = 0.4  # every point 40 % of the height down...
    lms[0, 1::2, 2, 5] = [0.0, 0.25, 0.5, 0.75, 1.0]  # ...and spread across
    faces = _veil.decode_centerface(heat, scale, offset, lms, 0.5, 2.0, 2.0)
    assert faces.shape == (1, 15) and faces.dtype == np.float32
    # Centre in network px: x = (5 + 0.25 + 0.5) * 4 = 23, y = (2 + 0.5 + 0.5) * 4 = 12.
    np.testing.assert_allclose(faces[0, :5], [(23 - 6) * 2, (12 - 10) * 2, (23 + 6) * 2, (12 + 10) * 2, 0.8], rtol=1e-6)
    xs, ys = faces[0, 5::2], faces[0, 6::2]
    np.testing.assert_allclose(xs, (17 + 12 * np.array([0, 0.25, 0.5, 0.75, 1.0])) * 2, rtol=1e-6)
    np.testing.assert_allclose(ys, (2 + 0.4 * 20) * 2, rtol=1e-6)


def test_decode_below_threshold_is_an_empty_well_shaped_array():
    heat, scale, offset, lms = planes(4, 4)
    heat[...] = 0.3
    faces = _veil.decode_centerface(heat, scale, offset, lms, 0.3, 1.0, 1.0)
    assert faces.shape == (0, 15) and faces.dtype == np.float32


def test_decode_rejects_bad_inputs():
    heat, scale, offset, lms = planes(4, 4)
    with pytest.raises(ValueError, match="landmarks"):
        _veil.decode_centerface(heat, scale, offset, lms[:, :8], 0.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="scale"):
        _veil.decode_centerface(heat, scale[..., :3], offset, lms, 0.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="score_threshold"):
        _veil.decode_centerface(heat, scale, offset, lms, 1.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="scale_x"):
        _veil.decode_centerface(heat, scale, offset, lms, 0.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="contiguous"):
        _veil.decode_centerface(heat, scale, offset[..., ::-1], lms, 0.5, 1.0, 1.0)
    with pytest.raises(TypeError):
        _veil.decode_centerface(heat.astype(np.float64), scale, offset, lms, 0.5, 1.0, 1.0)


def test_decode_skips_non_finite_cells():
    heat, scale, offset, lms = planes(2, 2)
    heat[...] = 0.9
    scale[0, 0, 0, 0] = 1e4  # exp overflows
    offset[0, 1, 1, 1] = np.nan
    faces = _veil.decode_centerface(heat, scale, offset, lms, 0.5, 1.0, 1.0)
    assert len(faces) == 2 and np.isfinite(faces).all()


# --- non-maximum suppression --------------------------------------------


def test_nms_keeps_the_best_of_overlapping_faces_sorted_by_score():
    faces = np.array(
        [face_row(0, 0, 10, 10, 0.6), face_row(1, 1, 11, 11, 0.9), face_row(50, 50, 60, 60, 0.7)],
        np.float32,
    )
    kept = _veil.non_max_suppression(faces, 0.3)
    np.testing.assert_array_equal(kept, faces[[1, 2]])
    # Idempotent.
    np.testing.assert_array_equal(_veil.non_max_suppression(kept, 0.3), kept)
    # Above the pair's IoU (0.68) nothing is suppressed.
    np.testing.assert_array_equal(_veil.non_max_suppression(faces, 0.7), faces[[1, 2, 0]])


def test_nms_edge_cases():
    empty = _veil.non_max_suppression(np.zeros((0, 15), np.float32), 0.3)
    assert empty.shape == (0, 15)
    with_nan = np.array([face_row(0, np.nan, 10, 10, 0.9), face_row(0, 0, 10, 10, 0.5)], np.float32)
    assert len(_veil.non_max_suppression(with_nan, 0.3)) == 1
    with pytest.raises(ValueError, match="15"):
        _veil.non_max_suppression(np.zeros((3, 14), np.float32), 0.3)


# --- the search driver and its resize -----------------------------------
# (Tile layout and ownership are property-tested in rust/veil-core.)


@pytest.mark.parametrize(
    "shape,size",
    [((37, 53, 3), (20, 11)), ((300, 401, 3), (1024, 766)), ((1000, 1300, 3), (788, 606)), ((5, 7, 1), (3, 9)), ((64, 48, 3), (48, 17)), ((64, 48, 3), (96, 64))],
)
def test_resize_is_pillow_exact(shape, size):
    """The core's resize gives Pillow's very pixels, so the search finds the
    faces the Pillow-based search it was tuned with found. (The search scales
    both axes alike; where one axis grows and the other shrinks, Pillow 13
    may order its two passes otherwise, so that case is not claimed.)"""
    from PIL import Image

    rng = np.random.default_rng(sum(shape) + sum(size))
    image = rng.integers(0, 256, shape, np.uint8)
    # Smooth content too, where rounding differences would show as well.
    image[: shape[0] // 2] = np.linspace(0, 255, shape[1], dtype=np.uint8)[None, :, None]
    mode = {1: "L", 3: "RGB"}[shape[2]]
    pil = Image.fromarray(image[..., 0] if shape[2] == 1 else image, mode)
    expected = np.asarray(pil.resize(size, Image.Resampling.BILINEAR)).reshape(size[1], size[0], shape[2])
    np.testing.assert_array_equal(_veil.resize_bilinear(image, *size), expected)


def test_search_driver_hands_out_inputs_then_faces():
    image = np.zeros((3000, 4000, 3), np.uint8)
    assert _veil.FaceSearch(image, 0.2, 1024, True).progress()[1] == _veil.FaceSearch(image, 0.2, 1024, True, False).progress()[1] + 3
    bordered = _veil.FaceSearch(image, 0.2, 1024, True, rotations=False).next_input()
    assert bordered.shape == (1, 3, 1024, 1280)  # 1024 x 768 framed by 128 px, padded to 32
    search = _veil.FaceSearch(image, 0.2, 1024, True, rotations=False, border=0.0, mirror=False)
    done, total, label = search.progress()
    assert (done, label) == (0, "whole photo") and total == 2 + 6
    blob = search.next_input()
    assert blob.shape == (1, 3, 768, 1024) and blob.dtype == np.float32
    with pytest.raises(ValueError, match="border_fill"):
        _veil.FaceSearch(image, 0.2, 1024, True, border_fill="blue")
    with pytest.raises(ValueError, match="pushed"):
        search.next_input()
    outputs = vd._session().run(vd._OUTPUT_NAMES, {vd._INPUT_NAME: blob})
    with pytest.raises(ValueError, match="expected"):
        search.push_output(*[np.ascontiguousarray(o[..., :-1]) for o in outputs])
    search.push_output(*outputs)
    assert search.progress() == (1, total, "whole photo at 2048x1536")
    # A black photo: the fine pass sees no trace of a face, so no tile runs.
    search.push_output(*vd._session().run(vd._OUTPUT_NAMES, {vd._INPUT_NAME: search.next_input()}))
    assert search.progress() == (2, 2, "done")
    assert search.next_input() is None and len(search.finish()) == 0
    search = _veil.FaceSearch(image, 0.2, 1024, True, rotations=False, border=0.0, mirror=False)
    search.push_output(*vd._session().run(vd._OUTPUT_NAMES, {vd._INPUT_NAME: search.next_input()}))
    with pytest.raises(ValueError, match="not over"):
        search.finish()
    with pytest.raises(RuntimeError, match="finished"):
        search.progress()
    with pytest.raises(ValueError, match="max_side_px"):
        _veil.FaceSearch(image, 0.2, 1000, True)


# --- the public API -------------------------------------------------------


def test_no_faces_is_an_empty_list():
    flat = np.full((200, 300, 3), 128, np.uint8)
    assert vd.detect_faces(flat) == []
    rows = vd._detect_array(flat, vd.DEFAULT_THRESHOLD, vd.DEFAULT_MAX_SIDE_PX, True, vd._session())
    assert rows.shape == (0, 15) and rows.dtype == np.float32


def test_input_validation():
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        vd.detect_faces(image.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        vd.detect_faces(np.zeros((64, 64, 2), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        vd.detect_faces(np.zeros((0, 64, 3), np.uint8))
    with pytest.raises(TypeError):
        vd.detect_faces([[0]])
    with pytest.raises(ValueError, match="threshold"):
        vd.detect_faces(image, threshold=1.5)
    with pytest.raises(ValueError, match="max_side_px"):
        vd.detect_faces(image, max_side_px=1000)
    with pytest.raises(TypeError, match="max_side_px"):
        vd.detect_faces(image, max_side_px=1024.0)
    for shape in [(64, 64), (64, 64, 1), (64, 64, 4), (33, 7, 3), (1, 1, 3)]:
        assert vd.detect_faces(np.zeros(shape, np.uint8)) == []


def test_bad_providers_list_what_is_available(monkeypatch):
    import onnxruntime as ort

    available = ort.get_available_providers()
    with pytest.raises(ValueError, match="available providers are") as info:
        vd.detect_faces(np.zeros((64, 64, 3), np.uint8), providers=["NoSuchExecutionProvider"])
    assert all(p in str(info.value) for p in available)
    with pytest.raises(ValueError, match="available"):
        vd.detect_faces(np.zeros((64, 64, 3), np.uint8), providers=[])
    monkeypatch.setenv("VEIL_PROVIDERS", "NoSuchExecutionProvider")
    with pytest.raises(ValueError, match="VEIL_PROVIDERS"):
        vd.detect_faces(np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setenv("VEIL_PROVIDERS", "CPUExecutionProvider")
    assert vd.detect_faces(np.zeros((64, 64, 3), np.uint8)) == []
    assert vd.detect_faces(np.zeros((64, 64, 3), np.uint8), providers=["CPUExecutionProvider"]) == []


def test_model_hash_mismatch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(vd, "_sessions", {})
    monkeypatch.setattr(vd, "MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        vd.detect_faces(np.zeros((64, 64, 3), np.uint8))


def test_model_file_matches_its_sidecar():
    models = Path(vd.__file__).parent / "models"
    meta = json.loads((models / "centerface.json").read_text())
    data = (models / "centerface.onnx").read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["sha256"] == vd.MODEL_SHA256
    assert meta["licence"]["spdx"] == "MIT"
    assert meta["source"]["sha256"] and meta["preprocessing"]["range"].startswith("raw 0-255")


def test_face_is_frozen_and_comparable():
    face = vd.Face(box=(1.0, 2.0, 3.0, 5.0), score=0.5, landmarks=((0.0, 0.0),) * 5)
    assert face == vd.Face(box=(1.0, 2.0, 3.0, 5.0), score=0.5, landmarks=((0.0, 0.0),) * 5)
    assert (face.width, face.height) == (2.0, 3.0)
    assert np.asarray(face.landmarks).shape == (5, 2)
    with pytest.raises(AttributeError):
        face.score = 1.0  # type: ignore[misc]
    hash(face)


# --- real photos ----------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def check_face_geometry(face: "vd.Face", width: int, height: int) -> None:
    l, t, r, b = face.box
    assert 0 <= l < r <= width and 0 <= t < b <= height
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.landmarks
    assert lex < nx < rex and lmx < rmx  # the image-left point of each pair first
    assert max(ley, rey) < ny < min(lmy, rmy)  # eyes, then nose, then mouth, downwards
    assert l <= min(lex, lmx) and max(rex, rmx) <= r and t <= min(ley, rey) and max(lmy, rmy) <= b


def test_fixture_portrait_has_one_face():
    from PIL import Image

    image = Image.open(FIXTURES / "portrait.jpg")
    faces = vd.detect_faces(image)
    assert len(faces) == 1 and faces[0].score > 0.8
    check_face_geometry(faces[0], *image.size)
    # A face fills a good part of this portrait: the box is not a fragment.
    assert faces[0].height > 0.2 * image.height


def test_fixture_two_faces():
    from PIL import Image

    image = Image.open(FIXTURES / "two_faces.jpg")
    faces = vd.detect_faces(image)
    # The two men, and the girl at the lower right, who is as real a face.
    assert len(faces) == 3
    big = sorted(faces, key=lambda f: -f.width * f.height)[:2]
    assert all(f.score > 0.8 for f in big)
    assert max(f.box[0] for f in big) > min(f.box[2] for f in big)  # side by side, apart
    for face in faces:
        check_face_geometry(face, *image.size)
    # A grey copy finds the same faces.
    grey = np.asarray(image.convert("L"))
    assert len(vd.detect_faces(grey)) == 3


@needs_photos
def test_finds_the_annotated_faces_in_a_group_photo():
    truth = [(l, t, l + w, t + h) for l, t, w, h in json.loads((GROUPS / "boxes.json").read_text())["2008_001322.jpg"]]
    image = load("2008_001322.jpg")
    faces = vd.detect_faces(image)
    assert all(isinstance(f, vd.Face) for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for t in truth:
        assert max(vd.box_iou(f.box, t) for f in faces) >= 0.4
    for f in faces:
        l, t, r, b = f.box
        assert 0 <= l < r <= image.shape[1] and 0 <= t < b <= image.shape[0]
        eyes_y = np.mean([f.landmarks[0][1], f.landmarks[1][1]])
        mouth_y = np.mean([f.landmarks[3][1], f.landmarks[4][1]])
        assert t < eyes_y < mouth_y < b  # eyes above the mouth, inside the box
    # The same photo as a PIL image, and with an alpha channel, gives the same faces.
    from PIL import Image

    assert vd.detect_faces(Image.fromarray(image)) == faces
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    assert vd.detect_faces(rgba) == faces


@needs_photos
def test_no_faces_on_the_dogs():
    dogs = load("dogs.jpg")
    assert vd.detect_faces(dogs, rotations=False) == []
    # Turned copies find the one face there is: a woman's, printed sideways
    # on a book lying at the lower left.
    faces = vd.detect_faces(dogs)
    assert len(faces) == 1
    (l, t, r, b), cx, cy = faces[0].box, 85, 477
    assert l < cx < r and t < cy < b


# --- turned photos ----------------------------------------------------------


def turn_box(box, k: int, width: int, height: int):
    """A (l, t, r, b) box of a width x height photo, in ``np.rot90(photo, k)``."""
    def point(x, y):
        return [(x, y), (y, width - x), (width - x, height - y), (height - y, x)][k % 4]

    (ax, ay), (bx, by) = point(box[0], box[1]), point(box[2], box[3])
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def covered(box, faces, mask_scale: float = 1.3) -> float:
    """The share of ``box`` under veil's mask of ``faces``: the ellipses
    inscribed in the face boxes grown by ``mask_scale``."""
    l, t, r, b = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    ys, xs = np.mgrid[t:b, l:r] + 0.5
    under = np.zeros(ys.shape, bool)
    for f in faces:
        fl, ft, fr, fb = f.box
        cx, cy = (fl + fr) / 2, (ft + fb) / 2
        rx, ry = (fr - fl) * mask_scale / 2, (fb - ft) * mask_scale / 2
        if rx > 0 and ry > 0:
            under |= ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    return float(under.mean()) if under.size else 0.0


@pytest.mark.parametrize("name", ["two_faces.jpg", "portrait.jpg"])
def test_turned_fixture_faces_are_covered(name):
    from PIL import Image

    image = np.asarray(Image.open(FIXTURES / name).convert("RGB"))
    upright = vd.detect_faces(image)
    h, w = image.shape[:2]
    for k in (1, 2, 3):
        faces = vd.detect_faces(np.ascontiguousarray(np.rot90(image, k)))
        for f in upright:
            assert covered(turn_box(f.box, k, w, h), faces) >= 0.9, (name, k, f.box)


@needs_photos
def test_turned_group_photos_leave_no_face_uncovered():
    """The 9 annotated group photos turned 90, 180 and 270 degrees without
    an EXIF tag: 129 turned faces, each at least half under the mask (the
    upright pass alone leaves about 20 uncovered)."""
    truth = json.loads((GROUPS / "boxes.json").read_text())
    uncovered, total = [], 0
    for name, boxes in truth.items():
        if not isinstance(boxes, list):
            continue
        image = load(name)
        h, w = image.shape[:2]
        for k in (1, 2, 3):
            faces = vd.detect_faces(np.ascontiguousarray(np.rot90(image, k)))
            for l, t, bw, bh in boxes:
                total += 1
                if covered(turn_box((l, t, l + bw, t + bh), k, w, h), faces) < 0.5:
                    uncovered.append((name, k, (l, t, bw, bh)))
    assert total == 129
    assert uncovered == []


@needs_photos
def test_tiles_find_small_faces_in_a_big_photo():
    """A group photo shrunk to half (faces of about 18 px) in the middle of a
    4000x3000 canvas: too small for the capped pass alone, found by tiles."""
    from PIL import Image

    photo = Image.fromarray(load("2008_004176.jpg"))
    small = np.asarray(photo.resize((photo.width // 2, photo.height // 2), Image.Resampling.LANCZOS))
    canvas = np.full((3000, 4000, 3), 127, np.uint8)
    canvas[1400 : 1400 + small.shape[0], 1900 : 1900 + small.shape[1]] = small
    truth = json.loads((GROUPS / "boxes.json").read_text())["2008_004176.jpg"]
    truth = [(1900 + l / 2, 1400 + t / 2, 1900 + (l + w) / 2, 1400 + (t + h) / 2) for l, t, w, h in truth]

    def recall(faces):
        return sum(any(vd.box_iou(f.box, t) >= 0.4 for f in faces) for t in truth)

    assert recall(vd.detect_faces(canvas, tiles=False)) < len(truth) // 2
    assert recall(vd.detect_faces(canvas, tiles=True)) == len(truth)


def test_threads_get_exactly_the_serial_result(monkeypatch):
    if (GROUPS / "boxes.json").is_file():
        images = [load(name) for name in ("2008_002470.jpg", "2007_007763.jpg", "2009_004587.jpg")]
        images.append(np.ascontiguousarray(np.tile(images[0], (3, 3, 1))))  # 1500x996: tiled too
    else:
        rng = np.random.default_rng(1)
        images = [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in ((300, 400), (1200, 1300))]
    serial = [vd.detect_faces(image) for image in images]
    assert any(serial) or not (GROUPS / "boxes.json").is_file()
    # Start with no session, so the threads also race to create it.
    monkeypatch.setattr(vd, "_sessions", {})
    results = [None] * 8
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        barrier.wait()
        results[k] = [vd.detect_faces(image) for image in images[k % len(images) :] + images[: k % len(images)]]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, got in enumerate(results):
        shift = k % len(images)
        assert got == serial[shift:] + serial[:shift]


def test_box_iou_of_known_boxes():
    assert vd.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert vd.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert vd.box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert vd.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


# --- faces cut by the photo's edge ------------------------------------------

PORTRAITS = FACES / "portraits"


def uncovered_cuts(image: np.ndarray, share: float) -> list:
    """The edges at which the portrait's face, cut to ``share`` inside the
    photo, is not at least half under the mask."""
    box = max(vd.detect_faces(image), key=lambda f: f.width * f.height).box
    missed = []
    for edge in ("left", "right", "top", "bottom"):
        crop, visible = cut(image, box, edge, share)
        if covered(visible, vd.detect_faces(np.ascontiguousarray(crop))) < 0.5:
            missed.append(edge)
    return missed


@pytest.mark.parametrize("share", [0.6, 0.5, 0.4])
def test_fixture_portrait_cut_by_each_edge_is_covered(share):
    from PIL import Image

    image = np.asarray(Image.open(FIXTURES / "portrait.jpg").convert("RGB"))
    assert uncovered_cuts(image, share) == []


@pytest.mark.skipif(not PORTRAITS.is_dir(), reason="shared portraits absent")
def test_shared_portraits_cut_to_half_are_covered():
    from PIL import Image

    missed = {}
    for path in sorted(PORTRAITS.glob("*.*")):
        if path.suffix.lower() in (".jpg", ".png"):
            image = np.asarray(Image.open(path).convert("RGB"))
            if vd.detect_faces(image) and (edges := uncovered_cuts(image, 0.5)):
                missed[path.name] = edges
    assert missed == {}
