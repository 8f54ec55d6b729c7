"""Videos: every face covered in every frame, nothing that locates the file.

Clips are made at test time from real photos (tests/_videoclips.py): a
camera pans and zooms across tests/fixtures/two_faces.jpg (faces labelled by
hand) or the annotated group photos of ../shared/data/faces/groups, with
bursts of motion blur and darkness, so every frame has exact ground truth.
Inputs full of metadata, subtitles, chapters, attachments, cover art and
timecode are built with the ffmpeg command (apt package ffmpeg, installed by
scripts/install_video_deps.sh); outputs are checked by veil's own byte-level
scanner and by ffprobe.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (pip install 'veil[video]') is needed for videos")

from PIL import Image  # noqa: E402

import _videoclips as vc  # noqa: E402
from veil import video  # noqa: E402
from veil.cli import main as veil_main  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
GROUPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "groups"
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")


def _need_ffmpeg():
    if FFMPEG and FFPROBE:
        return
    reason = "ffmpeg/ffprobe not installed (scripts/install_video_deps.sh installs them)"
    if os.environ.get("VEIL_REQUIRE_FFPROBE") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def two_faces_clip():
    photo = np.asarray(Image.open(FIXTURES / "two_faces.jpg").convert("RGB"))
    return vc.camera_clip(photo, vc.TWO_FACES_BOXES, (320, 240), 60, zoom=(1.0, 0.55), hard_every=12, hard_len=3)


@pytest.fixture(scope="module")
def two_faces_mp4(two_faces_clip, tmp_path_factory):
    return vc.write_clip(two_faces_clip, tmp_path_factory.mktemp("clip") / "two_faces.mp4")


def _leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".veil-tmp"))


# --------------------------------------------------------------------------
# Every face in every frame
# --------------------------------------------------------------------------


def test_tracking_leaves_no_flash_where_per_frame_detection_does(two_faces_clip, two_faces_mp4, tmp_path):
    source = vc.read_frames(two_faces_mp4)
    shown, labelled = vc.count_flashes(source, two_faces_clip.truth)
    assert shown >= labelled * 0.9, "the clip's faces must be visible before anonymizing"

    on = video.anonymize_video(two_faces_mp4, tmp_path / "on.mp4")
    off = video.anonymize_video(two_faces_mp4, tmp_path / "off.mp4", tracking=False)
    flashes_on, _ = vc.count_flashes(vc.read_frames(tmp_path / "on.mp4"), two_faces_clip.truth)
    flashes_off, _ = vc.count_flashes(vc.read_frames(tmp_path / "off.mp4"), two_faces_clip.truth)
    assert flashes_on == 0, f"{flashes_on} of {labelled} labelled faces shown with tracking"
    assert flashes_on <= flashes_off
    assert on.frames == off.frames == len(two_faces_clip.frames)
    assert len(on.faces_per_frame) == on.frames
    # Tracking searches the whole frame less often than every frame.
    assert off.full_searches == on.frames and on.full_searches < on.frames or on.crop_searches == 0
    assert on.tracks >= 3 and on.longest_gap_frames >= 1


@pytest.mark.skipif(not (GROUPS / "boxes.json").is_file(), reason="../shared/data/faces/groups is absent")
@pytest.mark.parametrize("name", ["2008_001322.jpg", "2009_004587.jpg"])
def test_no_flash_on_group_photo_clips(name, tmp_path):
    boxes = json.loads((GROUPS / "boxes.json").read_text())[name]
    photo = np.asarray(Image.open(GROUPS / name).convert("RGB"))
    clip = vc.camera_clip(photo, boxes, (480, 360), 50, zoom=(1.0, 0.6), hard_every=10, hard_len=2)
    src = vc.write_clip(clip, tmp_path / "in.mp4")
    video.anonymize_video(src, tmp_path / "out.mp4")
    flashes, labelled = vc.count_flashes(vc.read_frames(tmp_path / "out.mp4"), clip.truth)
    assert labelled > 0
    assert flashes == 0, f"{flashes} of {labelled} labelled faces shown"


@pytest.mark.skipif(not (GROUPS / "boxes.json").is_file(), reason="../shared/data/faces/groups is absent")
def test_no_flash_in_a_crowd(tmp_path):
    # 40-60 faces in view at 1080p, most of them small, with bursts of
    # motion blur and darkness: crops follow them, and faces lost one by one
    # wait for the regular searches, covered meanwhile.
    boxes = json.loads((GROUPS / "boxes.json").read_text())
    photo, labelled = vc.mosaic(GROUPS, sorted(boxes), boxes)
    clip = vc.camera_clip(photo, labelled, (1920, 1080), 30, zoom=(0.7, 0.55), hard_every=10, hard_len=2, seed=4)
    src = vc.write_clip(clip, tmp_path / "in.mp4", crf=18)
    report = video.anonymize_video(src, tmp_path / "out.mp4")
    flashes, labelled_faces = vc.count_flashes(vc.read_frames(tmp_path / "out.mp4"), clip.truth)
    assert labelled_faces >= 30 * 10
    assert flashes == 0, f"{flashes} of {labelled_faces} labelled faces shown"
    assert report.full_searches < 30 // 2  # the crops do most of the following


@pytest.mark.skipif(not (GROUPS / "boxes.json").is_file(), reason="../shared/data/faces/groups is absent")
def test_no_flash_when_the_camera_jumps_between_frames(tmp_path):
    # A whole pan and zoom in 4 frames at 1080p: each face moves by a third
    # of the frame from one frame to the next, out of its crop and of the
    # second look's, so only a whole-frame search finds it again.
    name = "2008_001322.jpg"
    boxes = json.loads((GROUPS / "boxes.json").read_text())[name]
    photo = np.asarray(Image.open(GROUPS / name).convert("RGB"))
    clip = vc.camera_clip(photo, boxes, (1920, 1080), 4, zoom=(1.0, 0.6), hard_every=15, hard_len=3)
    src = vc.write_clip(clip, tmp_path / "in.mp4", crf=18)
    video.anonymize_video(src, tmp_path / "out.mp4")
    flashes, labelled = vc.count_flashes(vc.read_frames(tmp_path / "out.mp4"), clip.truth)
    assert labelled >= 8
    assert flashes == 0, f"{flashes} of {labelled} labelled faces shown"


def test_tracks_cover_before_first_and_after_last_detection():
    track = video._Track(0)
    for f in (10, 12):
        track.add(f, np.array([100.0 + f, 50, 140.0 + f, 100]), 0.9)
    before = track.box_at(7, hold=5, lookahead=3)
    after = track.box_at(16, hold=5, lookahead=3)
    between = track.box_at(11, hold=5, lookahead=3)
    assert track.box_at(6, hold=5, lookahead=3) is None and track.box_at(18, hold=5, lookahead=3) is None
    first = track.boxes[0]
    assert before[0] < first[0] and before[2] > first[2]  # grown, around the first box
    assert after[0] > track.boxes[-1][0] - 20 and after[2] > track.boxes[-1][2] + 4  # moved on with the track
    assert between[0] < 111 and between[2] > 151  # interpolated, grown with the motion
    assert track.longest_gap() == 1


def test_a_detection_that_jumped_is_covered_with_where_the_face_was_heading():
    tracker = video._Tracker(hold=5)
    tracker.update(0, [(np.array([100.0, 100, 200, 200]), 0.9)])
    tracker.update(1, [(np.array([110.0, 100, 210, 200]), 0.9)])
    # Expected near x 120-220; the detector boxes something 60 px above.
    tracker.update(2, [(np.array([120.0, 40, 220, 140]), 0.9)], create=False)
    (track,) = tracker.live
    assert list(track.boxes[-1]) == [120, 40, 220, 140]  # the track follows the detection
    cover = track.covers[-1]
    assert cover[1] <= 40 and cover[3] >= 200 - 1  # both places are covered
    # One already seen in this frame is not matched again.
    assert tracker.update(2, [(np.array([120.0, 40, 220, 140]), 0.9)], create=False) == []
    assert track.frames == [0, 1, 2]


def _record_full_searches(monkeypatch) -> list:
    """The (tiles, rotations) of every whole-frame search, as they run."""
    calls = []
    full = video._Detector.full

    def spy(self, rgb, tiles=None, rotations=True):
        calls.append((tiles, rotations))
        return full(self, rgb, tiles, rotations)

    monkeypatch.setattr(video._Detector, "full", spy)
    return calls


def test_regular_searches_alternate_complete_and_quick(two_faces_mp4, tmp_path, monkeypatch):
    calls = _record_full_searches(monkeypatch)
    report = video.anonymize_video(two_faces_mp4, tmp_path / "out.mp4", full_search_every=4)
    assert report.full_searches == len(calls) >= 15  # 60 frames: every 4th at least
    assert calls[0] == (None, True)  # the first frame gets the complete search
    assert (False, False) in calls  # quick ones, shrunk and mirrored only
    complete = sum(c == (None, True) for c in calls)
    assert complete >= 60 // 8


def _two_faces_photo():
    photo = np.asarray(Image.open(FIXTURES / "two_faces.jpg").convert("RGB"))
    return photo, [np.array([l, t, l + w, t + h], dtype=np.float64) for l, t, w, h in vc.TWO_FACES_BOXES]


def test_a_face_that_comes_into_view_in_the_last_frame_is_covered(tmp_path):
    # Between regular searches only the faces already followed are looked
    # for; the last frame has no look-ahead, so it is searched whole.
    clip = _small_clip(frames=8, size=(240, 320))
    blank = np.full_like(clip.frames[-1], 128)
    frames = [blank] * 7 + [clip.frames[-1]]
    truth = [[]] * 7 + [clip.truth[-1]]
    src = vc.write_clip(vc.Clip(frames, truth, 25), tmp_path / "in.mp4")
    report = video.anonymize_video(src, tmp_path / "out.mp4", full_search_every=5)
    flashes, labelled = vc.count_flashes(vc.read_frames(tmp_path / "out.mp4"), truth)
    assert labelled == 1 and flashes == 0
    assert report.faces_per_frame[-1] >= 1 and report.full_searches == 3  # frames 0, 5 and the last


def test_a_crop_is_one_upright_pass_filling_whole_network_multiples(monkeypatch):
    photo, boxes = _two_faces_photo()
    detector = video._Detector(0.2, 1024, True, None)
    detector.full(photo)  # the cost the crops are weighed against
    seen = []
    search = video._Detector._search

    def spy(self, rgb, max_side_px, tiles, rotations, session=None, **options):
        seen.append((rgb.shape[:2], max_side_px, tiles, rotations, options))
        assert session is self._crop_session  # small inputs: one onnxruntime thread
        return search(self, rgb, max_side_px, tiles, rotations, session, **options)

    monkeypatch.setattr(video._Detector, "_search", spy)
    found = detector.crops(photo, boxes)
    # Faces of 67-112 px, each in a window 2.5x its size, shrunk so that the
    # window is 128 x 128: no padding, no border, no mirrored copy.
    assert seen == [((128, 128), 128, False, False, {"border": 0.0, "mirror": False})] * 3
    for box in boxes:
        assert max(video._iou(box, f[0]) for f in found) > 0.4
    # A crop cut by the frame's edge gets the photo search's border there.
    seen.clear()
    cut = np.ascontiguousarray(photo[:500])
    (found,) = detector.crops(cut, boxes[2:])
    ((shape, _, _, _, options),) = seen
    assert shape[0] < 128 and options == {"border": None, "mirror": False}
    assert video._iou(boxes[2], found[0]) > 0.4


def test_one_face_lost_among_many_found_waits_for_the_regular_search():
    def track(frames):
        t = video._Track(0)
        for f in range(frames):
            t.add(f, np.array([0.0, 0, 10, 10]), 0.9)
        return t

    followed = [track(3) for _ in range(20)]
    assert not video._lost_enough(followed[:1], followed)  # turned away, hidden: covered for the hold
    assert video._lost_enough(followed[:4], followed)  # a fifth at once: a cut, a jump, a blurred frame
    assert video._lost_enough(followed[:1], followed[:1])  # a lone face lost
    assert not video._lost_enough([track(1)], [track(1)])  # seen once: most often a false face


def test_searches_off_the_schedule_skip_turned_copies_and_delay_no_complete_one(two_faces_mp4, tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_CROP_MAX_SHARE", 0.0)  # crops always too dear: the whole frame instead
    calls = _record_full_searches(monkeypatch)
    video.anonymize_video(two_faces_mp4, tmp_path / "out.mp4", full_search_every=4)
    assert len(calls) == 60  # one search in every frame, each followed face's crops being too dear
    complete = [i for i, c in enumerate(calls) if c == (None, True)]
    assert all(not rotations for tiles, rotations in calls if (tiles, rotations) != (None, True))
    # A complete search at least every other interval, however many ran between.
    assert complete[0] == 0 and max(np.diff(complete + [60])) <= 2 * 4
    assert len(complete) <= 60 // 4


def test_a_crop_face_that_matches_no_track_is_covered_in_its_frame(two_faces_mp4, tmp_path, monkeypatch):
    crops = video._Detector.crops
    extra = np.array([276.0, 4, 312, 40])  # the top right corner: no face there

    def with_extra(self, rgb, predicted, wide=False):
        found = crops(self, rgb, predicted, wide)
        return None if found is None else found + [(extra.copy(), 0.9)]

    video.anonymize_video(two_faces_mp4, tmp_path / "plain.mp4")
    monkeypatch.setattr(video._Detector, "crops", with_extra)
    video.anonymize_video(two_faces_mp4, tmp_path / "out.mp4")
    plain = [vc.covered(f, tuple(extra)) for f in vc.read_frames(tmp_path / "plain.mp4")]
    covered = [vc.covered(f, tuple(extra)) for f in vc.read_frames(tmp_path / "out.mp4")]
    # (Dark content counts as covered too: compared with the run without it.)
    assert covered[0] == plain[0]  # the first frame is searched whole: no crops
    assert all(covered[i] for i in range(len(plain)) if plain[i])
    assert sum(c and not p for c, p in zip(covered, plain)) >= 10


# --------------------------------------------------------------------------
# What is kept: size, rate, rotation, range, containers
# --------------------------------------------------------------------------


def _small_clip(frames=8, size=(96, 64)):
    photo = np.asarray(Image.open(FIXTURES / "portrait.jpg").convert("RGB"))
    return vc.camera_clip(photo, [(150, 35, 95, 134)], size, frames, zoom=(1.0, 0.9))


def test_rate_size_frames_and_colour_range_are_kept(tmp_path):
    clip = _small_clip(size=(160, 120))
    path = tmp_path / "full.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.codec_context.color_range = 2  # full ("pc") range
        for i, rgb in enumerate(clip.frames):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", dst_color_range=2)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    report = video.anonymize_video(path, tmp_path / "out.mp4")
    assert report.color_range == "full"
    with av.open(str(tmp_path / "out.mp4")) as got:
        stream = got.streams.video[0]
        frames = list(got.decode(stream))
        assert stream.average_rate == 30
        assert (frames[0].width, frames[0].height) == (160, 120)
        assert len(frames) == len(clip.frames) == report.frames
        assert int(frames[0].color_range) == 2
    # Grey levels stay where they were (no range squeeze): the corner far from the face.
    src = vc.read_frames(path)
    out = vc.read_frames(tmp_path / "out.mp4")
    assert abs(float(src[0][:20, :20].mean()) - float(out[0][:20, :20].mean())) < 4


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_is_applied_to_the_pixels(rotation, tmp_path):
    # The upright picture has a red square at its top left; the file stores
    # it turned, with a display matrix saying how to turn it back.
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[:16, :16] = (255, 0, 0)
    path = vc.write_clip(vc.Clip([upright] * 3, [[]] * 3, 25), tmp_path / "rot.mp4", rotation=rotation)
    with av.open(str(path)) as src:
        assert abs(next(src.decode(video=0)).rotation) == abs(rotation)
    report = video.anonymize_video(path, tmp_path / "out.mp4")
    assert abs(report.rotation) == abs(rotation) and (report.width, report.height) == (96, 64)
    with av.open(str(tmp_path / "out.mp4")) as got:
        frame = next(got.decode(video=0))
        assert frame.rotation == 0  # no display matrix left: the pixels are upright
        rgb = frame.to_ndarray(format="rgb24")
    assert rgb.shape[:2] == (64, 96)
    red = (rgb[:, :, 0] > 128) & (rgb[:, :, 1] < 80)
    ys, xs = np.nonzero(red)
    assert ys.max() < 20 and xs.max() < 20 and len(ys) > 150
    if FFMPEG:  # as FFmpeg's own player-side rotation shows it
        _ffmpeg("-i", path, "-frames:v", "1", tmp_path / "ref.png")
        ref = np.asarray(Image.open(tmp_path / "ref.png").convert("RGB"))
        assert np.abs(ref.astype(int) - rgb.astype(int)).mean() < 6


@pytest.mark.parametrize(
    "name, out_ext, codec",
    [("c.mov", ".mov", "h264"), ("c.mkv", ".mkv", "h264"), ("c.m4v", ".m4v", "h264"),
     ("c.avi", ".mp4", "h264"), ("c.webm", ".webm", "vp9")],
)
def test_containers(name, out_ext, codec, tmp_path):
    clip = _small_clip(frames=6)
    fmt = {"c.mov": "mov", "c.mkv": "matroska", "c.m4v": "mp4", "c.avi": "avi", "c.webm": "webm"}[name]
    encoder = {"c.avi": "mpeg4", "c.webm": "libvpx-vp9"}.get(name, "libx264")
    src = vc.write_clip(clip, tmp_path / name, codec=encoder, fmt=fmt)
    report = video.anonymize_video(src)
    out = tmp_path / ("c.veiled" + out_ext)
    assert report.output == str(out) and out.is_file()
    assert video.scan_video(out) == []
    with av.open(str(out)) as got:
        assert got.streams.video[0].codec_context.name == codec
        assert sum(1 for _ in got.decode(video=0)) == 6
    with pytest.raises(video.VideoError, match="does not write .avi"):
        video.anonymize_video(src, tmp_path / "x.avi")


# --------------------------------------------------------------------------
# Nothing that locates or names the video
# --------------------------------------------------------------------------


def _ffmpeg(*args):
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True, timeout=60)


@pytest.fixture(scope="module")
def rich_inputs(tmp_path_factory):
    """A MOV and an MKV carrying every kind of identifying data."""
    _need_ffmpeg()
    d = tmp_path_factory.mktemp("rich")
    (d / "s.srt").write_text("1\n00:00:00,000 --> 00:00:00,300\nmeet at 5 Main St\n")
    (d / "ch.txt").write_text(";FFMETADATA1\ntitle=trip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=300\ntitle=Home\n")
    portrait = Image.open(FIXTURES / "portrait.jpg").convert("RGB").resize((96, 120))
    portrait.save(d / "cover.png")
    src = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:d=0.4", "-f", "lavfi", "-i", "sine=d=0.4"]
    place = ["-metadata", "location=+48.8577+002.2950/", "-metadata", "creation_time=2026-11-30T10:00:00Z"]
    mov, mkv = d / "rich.mov", d / "rich.mkv"
    _ffmpeg(*src, "-i", d / "s.srt", "-i", d / "cover.png", "-i", d / "ch.txt",
            "-map", "0", "-map", "1", "-map", "2", "-map", "3", "-map_metadata", "4", "-map_chapters", "4",
            "-c:v:0", "libx264", "-c:a", "aac", "-c:s", "mov_text", "-c:v:1", "png", "-disposition:v:1", "attached_pic",
            *place, "-metadata", "com.apple.quicktime.location.ISO6709=+48.8577+002.2950+035.000/",
            "-metadata", "make=Apple", "-metadata", "model=iPhone 15", "-metadata:s:v:0", "title=cam",
            "-metadata:s:a", "title=mic", "-timecode", "01:00:00:00", "-movflags", "use_metadata_tags", mov)
    _ffmpeg(*src, "-i", d / "s.srt", "-i", d / "ch.txt", "-map", "0", "-map", "1", "-map", "2",
            "-map_metadata", "3", "-map_chapters", "3", "-c:v", "libx264", "-c:a", "aac", "-c:s", "srt",
            "-attach", d / "cover.png", "-metadata:s:t", "mimetype=image/png", *place,
            "-metadata:s:v", "title=cam", "-metadata:s:a", "title=mic", "-timecode", "01:00:00:00", mkv)
    return {"mov": mov, "mkv": mkv}


def _probe(path: Path) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


# What ffprobe reports from the containers' own structure, not metadata.
_ALLOWED_FORMAT_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}
_ALLOWED_STREAM_TAGS = {"handler_name": {"VideoHandler", "SoundHandler"}, "vendor_id": None, "DURATION": None,
                        "language": {"und"}, "ENCODER": None}


def _assert_probe_clean(info: dict, audio: bool) -> None:
    assert info["chapters"] == []
    tags = info["format"].get("tags", {})
    assert set(tags) <= _ALLOWED_FORMAT_TAGS, tags
    assert tags.get("encoder", "Lavf") == "Lavf"  # FFmpeg's fixed name, no version
    kinds = [s["codec_type"] for s in info["streams"]]
    assert kinds == (["video", "audio"] if audio else ["video"])
    for s in info["streams"]:
        assert s.get("disposition", {}).get("attached_pic", 0) == 0
        for key, value in s.get("tags", {}).items():
            assert key in _ALLOWED_STREAM_TAGS, (key, value)
            allowed = _ALLOWED_STREAM_TAGS[key]
            assert allowed is None or value in allowed, (key, value)
            if key == "ENCODER":
                assert value.startswith("Lavc")


@pytest.mark.parametrize("kind", ["mov", "mkv"])
@pytest.mark.parametrize("keep_audio", [False, True])
def test_no_metadata_left(rich_inputs, kind, keep_audio, tmp_path):
    src = rich_inputs[kind]
    before = " ".join(video.scan_video(src))
    # The scanner sees every kind of identifying data in the inputs...
    if kind == "mov":
        for what in ("location", "ISO6709", "creation_time", "make", "model", "'text' track", "'tmcd' track",
                     "creation/modification time"):
            assert what in before, what
    else:
        for what in ("creation date", "track name", "subtitle track", "chapters", "attachments", "tag LOCATION"):
            assert what in before, what
    probe_in = _probe(src)
    assert probe_in["chapters"] and len(probe_in["streams"]) >= 3
    # ...and none of it in the outputs, by its reading and by ffprobe's.
    out = tmp_path / f"out.{kind}"
    report = video.anonymize_video(src, out, keep_audio=keep_audio)
    assert report.audio == ("copied" if keep_audio else "dropped")
    assert video.scan_video(out) == []
    _assert_probe_clean(_probe(out), audio=keep_audio)
    data = out.read_bytes()
    for needle in (b"48.8577", b"iPhone", b"Apple", b"2026-11-30", b"Main St", b"Home", b"cam", b"mic", b"trip"):
        assert needle not in data, needle


def test_scanner_flags_pyav_metadata_and_passes_veil_output(two_faces_mp4, tmp_path):
    path = tmp_path / "meta.mp4"
    with av.open(str(path), "w") as out:
        out.metadata.update({"location": "+48.8577+002.2950/", "title": "home"})
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    found = " ".join(video.scan_video(path))
    assert "user data" in found and "loci" in found
    assert video.scan_video(two_faces_mp4)  # PyAV's own writing leaves its encoder name
    video.anonymize_video(path, tmp_path / "clean.mp4")
    assert video.scan_video(tmp_path / "clean.mp4") == []
    (tmp_path / "junk.mp4").write_bytes(b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x0cuuidXXXX")
    assert video.scan_video(tmp_path / "junk.mp4")


# --------------------------------------------------------------------------
# Bad input: a clear error, nothing left behind
# --------------------------------------------------------------------------


def _fails_cleanly(src: Path, tmp_path: Path, match: str, **options) -> None:
    out = tmp_path / "out" / "bad.mp4"
    out.parent.mkdir(exist_ok=True)
    with pytest.raises(video.VideoError, match=match):
        video.anonymize_video(src, out, **options)
    assert not out.exists() and _leftovers(out.parent) == []


def test_truncated_video_fails(two_faces_mp4, tmp_path):
    data = two_faces_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    _fails_cleanly(cut, tmp_path, "truncated|damaged|cannot be decoded|not a readable")


def test_damaged_frame_mid_stream_fails(two_faces_mp4, tmp_path):
    data = bytearray(two_faces_mp4.read_bytes())
    mdat = data.find(b"mdat")
    rng = np.random.default_rng(1)
    start = mdat + len(data[mdat:]) // 2
    data[start : start + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    _fails_cleanly(bad, tmp_path, "cannot be decoded|damaged")


def test_not_a_video_unknown_codec_no_frames_and_huge_frames_fail(two_faces_mp4, tmp_path, monkeypatch):
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    _fails_cleanly(tmp_path / "text.mp4", tmp_path, "not a readable video")

    # A Matroska file whose codec ID names no codec FFmpeg knows.
    clip = _small_clip(frames=3)
    known = vc.write_clip(clip, tmp_path / "known.mkv", fmt="matroska").read_bytes()
    assert known.count(b"V_MPEG4/ISO/AVC") == 1
    (tmp_path / "unknown.mkv").write_bytes(known.replace(b"V_MPEG4/ISO/AVC", b"V_VEIL/UNKNOWN!"))
    _fails_cleanly(tmp_path / "unknown.mkv", tmp_path, "codec is unknown")

    empty = tmp_path / "empty.mkv"
    with av.open(str(empty), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()  # the header, then no frame at all
    assert empty.stat().st_size > 0
    _fails_cleanly(empty, tmp_path, "no frames|no frame size|not a readable")

    monkeypatch.setenv("VEIL_MAX_VIDEO_PIXELS", "10000")
    _fails_cleanly(two_faces_mp4, tmp_path, "larger than veil reads")


def test_existing_output_and_bad_options_are_refused(two_faces_mp4, tmp_path):
    out = tmp_path / "exists.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        video.anonymize_video(two_faces_mp4, out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="crf"):
        video.anonymize_video(two_faces_mp4, tmp_path / "a.mp4", crf=60)
    with pytest.raises(ValueError, match="index"):
        video.anonymize_video(two_faces_mp4, tmp_path / "a.mp4", keep=[0])
    with pytest.raises(ValueError):
        video.anonymize_video(two_faces_mp4, tmp_path / "a.mp4", method="smudge")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "a.mp4").exists()


def test_keep_leaves_only_the_picked_face(two_faces_clip, two_faces_mp4, tmp_path):
    # A point on the left man's face in the first frame (the camera starts wide).
    l, t, r, b = two_faces_clip.truth[0][0]
    x, y = (l + r) / 2, (t + b) / 2
    report = video.anonymize_video(two_faces_mp4, tmp_path / "k.mp4", keep=[(x, y)])
    first = vc.read_frames(tmp_path / "k.mp4")[0]
    assert not vc.covered(first, two_faces_clip.truth[0][0])
    assert all(vc.covered(first, box) for box in two_faces_clip.truth[0][1:])
    assert report.frames == len(two_faces_clip.frames)
    with pytest.raises(ValueError, match="matches no face"):
        video.anonymize_video(two_faces_mp4, tmp_path / "k2.mp4", keep=[(1, 1, 2, 2)])
    assert not (tmp_path / "k2.mp4").exists() and _leftovers(tmp_path) == []


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def test_veil_blur_video_json_and_audio_message(tmp_path, capsys):
    clip = _small_clip(frames=10, size=(128, 96))
    path = tmp_path / "talk.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
        for rgb in clip.frames:
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    code = veil_main(["blur", str(path), "--json", "--crf", "28"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    record = report["files"][0]
    assert record["status"] == "done" and record["output"] == str(tmp_path / "talk.veiled.mp4")
    assert len(record["faces_per_frame"]) == record["frames"] == 10
    assert record["max_faces_in_a_frame"] >= 1 and "longest_gap_frames" in record
    assert record["audio"] == "dropped" and "audio dropped" in captured.err
    with av.open(record["output"]) as got:
        assert not got.streams.audio

    code = veil_main(["blur", str(path), "-o", str(tmp_path / "with_sound.mkv"), "--keep-audio"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "audio kept" in captured.err
    with av.open(str(tmp_path / "with_sound.mkv")) as got:
        assert len(got.streams.audio) == 1

    # An existing output fails that file, exit code 1, nothing replaced.
    code = veil_main(["blur", str(path)])
    assert code == 1 and "already exists" in capsys.readouterr().err

    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"\0" * 100)
    assert veil_main(["blur", str(bad)]) == 1
    assert not (tmp_path / "bad.veiled.mov").exists() and _leftovers(tmp_path) == []


def test_help_names_the_video_options():
    out = subprocess.run([sys.executable, "-m", "veil", "blur", "--help"], capture_output=True, text=True, check=True)
    for option in ("--crf", "--keep-audio", "--hold", "--lookahead", "--full-search-every", "--no-tracking"):
        assert option in out.stdout
