"""Tests for the ``veil`` command, run as a user runs it: ``python -m veil``
in a subprocess. Every failure path has its exit code (0 done, 1 some photos
failed, 2 usage error), and no output may carry metadata."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import _imagefiles as F
import numpy as np
import pytest
from PIL import Image

from veil.io import load_image, scan_metadata

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PORTRAIT = FIXTURES / "portrait.jpg"
TWO_FACES = FIXTURES / "two_faces.jpg"


def veil(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="error")  # a warning is a bug here too
    return subprocess.run(
        [sys.executable, "-m", "veil", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )


def no_face_jpeg() -> bytes:
    """A smooth gradient with metadata: nothing a detector takes for a face."""
    y, x = np.mgrid[0:120, 0:160]
    pixels = np.stack([x * 255 // 160, y * 255 // 120, np.full_like(x, 90)], axis=2).astype(np.uint8)
    return F.dirty_jpeg(pixels)


def files(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def photos(tmp_path):
    """A folder with a dirty portrait, two faces, and a sub-folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "portrait.jpg").write_bytes(F.dirty_jpeg(load_image(PORTRAIT).pixels))
    (tmp_path / "two.jpg").write_bytes(TWO_FACES.read_bytes())
    (tmp_path / "sub" / "deep.jpg").write_bytes(PORTRAIT.read_bytes())
    return tmp_path


# --------------------------------------------------------------------------
# veil blur: the happy path
# --------------------------------------------------------------------------


def test_blur_one_photo_writes_a_clean_copy_beside_it(photos):
    before = (photos / "portrait.jpg").read_bytes()
    r = veil("blur", photos / "portrait.jpg")
    assert r.returncode == 0, r.stderr
    out = photos / "portrait.veiled.jpg"
    assert str(out) in r.stdout and "1 face" in r.stdout
    data = out.read_bytes()
    assert scan_metadata(data) == []
    for secret in (F.SECRET_SERIAL, F.SECRET_XMP, F.SECRET_COMMENT, F.SECRET_TRAILER, F.SECRET_IPTC):
        assert secret not in data
    assert (photos / "portrait.jpg").read_bytes() == before
    assert "\x1b" not in r.stderr  # no progress bar for a single photo


def test_blur_json_report_shape(photos):
    r = veil("blur", photos / "two.jpg", photos / "portrait.jpg", "--json", "--method", "fill", "--strength", "0.3")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["command"] == "blur"
    assert report["settings"]["method"] == "fill" and report["settings"]["strength"] == 0.3
    assert report["summary"] == {"files": 2, "done": 2, "failed": 0, "no_faces": 0}
    assert report["failed"] == []
    two, portrait = report["files"]
    assert two["input"] == str(photos / "two.jpg") and two["status"] == "done"
    assert two["output"] == str(photos / "two.veiled.jpg") and two["format"] == "JPEG"
    assert len(two["faces"]) >= 2 and len(portrait["faces"]) == 1
    f = portrait["faces"][0]
    assert set(f) == {"index", "box", "score", "kept"} and len(f["box"]) == 4 and 0 < f["score"] <= 1
    assert portrait["method"] == "fill" and portrait["strength"] == 0.3
    assert portrait["regions"][0]["source"] == "face"
    for rec in (two, portrait):
        assert scan_metadata(Path(rec["output"]).read_bytes()) == []


def test_blur_options_reach_the_output(photos):
    r = veil("blur", photos / "portrait.jpg", "-o", photos / "o.png", "--method", "fill", "--noise", "0",
             "--shape", "rectangle", "--color", "255,0,0", "--add-region", "0,0,20,10", "--json")
    assert r.returncode == 0, r.stderr
    out = load_image(photos / "o.png")
    assert out.format == "PNG"
    assert (out.pixels[0:10, 0:20] == (255, 0, 0)).all()
    rec = json.loads(r.stdout)["files"][0]
    l, t, right, b = (int(round(v)) for v in rec["faces"][0]["box"])
    assert (out.pixels[(t + b) // 2, (l + right) // 2] == (255, 0, 0)).all()


def test_keep_leaves_a_face_visible(photos):
    src = load_image(photos / "two.jpg").pixels
    r = veil("blur", photos / "two.jpg", "--keep", "0", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)["files"][0]
    assert [f["kept"] for f in rec["faces"]][:2] == [True, False]
    out = load_image(photos / "two.veiled.jpg").pixels
    l, t, right, b = (int(v) for v in rec["faces"][0]["box"])
    inner = (slice(t + 5, b - 5), slice(l + 5, right - 5))
    assert np.abs(out[inner].astype(int) - src[inner]).mean() < 4  # only JPEG re-encoding


def test_keep_that_matches_no_face_fails_and_writes_nothing(photos):
    r = veil("blur", photos / "portrait.jpg", "--keep", "5")
    assert r.returncode == 1
    assert "no face 5" in r.stderr
    assert not (photos / "portrait.veiled.jpg").exists()


def test_jobs_give_the_same_bytes_as_one_at_a_time(photos, tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    assert veil("blur", photos, "-r", "--out-dir", a).returncode == 0
    assert veil("blur", photos, "-r", "--out-dir", b, "--jobs", "3", "--progress").returncode == 0
    assert files(a) == files(b) == ["portrait.jpg", "sub/deep.jpg", "two.jpg"]
    for name in files(a):
        assert (a / name).read_bytes() == (b / name).read_bytes()


# --------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------


def test_folder_without_recursive_reads_only_its_own_photos(photos):
    r = veil("blur", photos)
    assert r.returncode == 0, r.stderr
    assert files(photos) == ["portrait.jpg", "portrait.veiled.jpg", "sub/deep.jpg", "two.jpg", "two.veiled.jpg"]
    # A second run skips veil's own outputs and refuses to replace them.
    r = veil("blur", photos, "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["summary"]["files"] == 2 and report["summary"]["failed"] == 2
    assert all("already exists" in f["error"] for f in report["failed"])


def test_recursive_out_dir_keeps_the_tree(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "new"
    r = veil("blur", photos, "--recursive", "--out-dir", out, "--format", "png")
    assert r.returncode == 0, r.stderr
    assert files(out) == ["portrait.png", "sub/deep.png", "two.png"]
    for name in files(out):
        assert scan_metadata((out / name).read_bytes()) == []


def test_folder_without_photos_fails(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    r = veil("blur", tmp_path)
    assert r.returncode == 1
    assert "no photos found" in r.stderr


# --------------------------------------------------------------------------
# Failures: exit 1, the rest still written
# --------------------------------------------------------------------------


def test_missing_file_fails_with_exit_1(tmp_path):
    r = veil("blur", tmp_path / "nope.jpg")
    assert r.returncode == 1
    assert "no such file" in r.stderr
    assert files(tmp_path) == []


def test_corrupt_file_in_a_batch_fails_alone(photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (photos / "truncated.jpg").write_bytes(PORTRAIT.read_bytes()[:2000])
    r = veil("blur", photos, "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    failed = {Path(f["input"]).name for f in report["failed"]}
    assert failed == {"broken.jpg", "truncated.jpg"}
    assert report["summary"]["done"] == 2 and report["summary"]["failed"] == 2
    assert (photos / "portrait.veiled.jpg").exists() and (photos / "two.veiled.jpg").exists()
    assert not (photos / "broken.veiled.jpg").exists() and not (photos / "truncated.veiled.jpg").exists()
    assert "broken.jpg" in r.stderr and "truncated.jpg" in r.stderr
    assert not [p for p in photos.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_no_face_is_written_scrubbed_and_said(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(no_face_jpeg())
    r = veil("blur", tmp_path / "empty.jpg", "--json")
    assert r.returncode == 0, r.stderr
    assert "no face found" in r.stderr
    rec = json.loads(r.stdout)["files"][0]
    assert rec["faces"] == [] and any("no face found" in w for w in rec["warnings"])
    assert json.loads(r.stdout)["summary"]["no_faces"] == 1
    assert scan_metadata((tmp_path / "empty.veiled.jpg").read_bytes()) == []


def test_require_faces_fails_and_writes_nothing(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(no_face_jpeg())
    r = veil("blur", tmp_path / "empty.jpg", "--require-faces")
    assert r.returncode == 1
    assert "no face found" in r.stderr
    assert files(tmp_path) == ["empty.jpg"]


def test_existing_output_is_refused_unless_overwrite(photos):
    target = photos / "portrait.veiled.jpg"
    target.write_bytes(b"keep me")
    r = veil("blur", photos / "portrait.jpg")
    assert r.returncode == 1 and "already exists" in r.stderr and "--overwrite" in r.stderr
    assert target.read_bytes() == b"keep me"
    r = veil("blur", photos / "portrait.jpg", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert scan_metadata(target.read_bytes()) == []


def test_an_input_is_never_replaced_without_in_place(photos):
    before = (photos / "portrait.jpg").read_bytes()
    for args in (["-o", photos / "portrait.jpg"], ["-o", photos / "portrait.jpg", "--overwrite"],
                 ["--out-dir", photos, "--overwrite"]):
        r = veil("blur", photos / "portrait.jpg", *args)
        assert r.returncode == 1, args
        assert "input" in r.stderr
        assert (photos / "portrait.jpg").read_bytes() == before


def test_in_place_replaces_the_input(photos):
    r = veil("blur", photos / "portrait.jpg", "--in-place")
    assert r.returncode == 0, r.stderr
    data = (photos / "portrait.jpg").read_bytes()
    assert scan_metadata(data) == [] and F.SECRET_SERIAL not in data
    assert not (photos / "portrait.veiled.jpg").exists()


def test_in_place_cannot_write_heic_names(tmp_path):
    (tmp_path / "phone.heic").write_bytes(PORTRAIT.read_bytes())  # JPEG bytes under a HEIC name
    r = veil("blur", tmp_path / "phone.heic", "--in-place")
    assert r.returncode == 1 and "in-place" in r.stderr
    assert (tmp_path / "phone.heic").read_bytes() == PORTRAIT.read_bytes()


def test_heic_in_jpeg_out(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    data = io.BytesIO()
    try:
        pillow_heif.from_pillow(Image.open(PORTRAIT)).save(data, quality=80)
    except Exception as exc:  # a pillow-heif build without an HEVC encoder
        pytest.skip(f"cannot encode HEIC here: {exc}")
    (tmp_path / "phone.HEIC").write_bytes(data.getvalue())
    r = veil("blur", tmp_path / "phone.HEIC", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)["files"][0]
    assert rec["output"] == str(tmp_path / "phone.veiled.jpg") and rec["format"] == "JPEG"
    assert len(rec["faces"]) == 1
    out = (tmp_path / "phone.veiled.jpg").read_bytes()
    assert out[:3] == b"\xff\xd8\xff" and scan_metadata(out) == []


def test_two_inputs_writing_the_same_output_fail_the_second(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "p.jpg").write_bytes(PORTRAIT.read_bytes())
    r = veil("blur", tmp_path / "a" / "p.jpg", tmp_path / "b" / "p.jpg", "--out-dir", tmp_path / "out", "--overwrite")
    assert r.returncode == 1
    assert "another input" in r.stderr
    assert files(tmp_path / "out") == ["p.jpg"]


# --------------------------------------------------------------------------
# Usage errors: exit 2
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["blur"],
        ["bogus"],
        ["blur", "x.jpg", "--strength", "0"],
        ["blur", "x.jpg", "--strength", "1.5"],
        ["blur", "x.jpg", "--strength", "strong"],
        ["blur", "x.jpg", "--method", "swirl"],
        ["blur", "x.jpg", "--noise", "300"],
        ["blur", "x.jpg", "--mask-scale", "0.5"],
        ["blur", "x.jpg", "--add-region", "1,2,3"],
        ["blur", "x.jpg", "--add-region", "1,2,0,4"],
        ["blur", "x.jpg", "--keep", "a,b"],
        ["blur", "x.jpg", "--keep", "1,2,3"],
        ["blur", "x.jpg", "--color", "300,0,0"],
        ["blur", "x.jpg", "--jobs", "0"],
        ["blur", "x.jpg", "--quality", "101"],
        ["blur", "x.jpg", "--format", "gif"],
        ["blur", "x.jpg", "--max-side", "1000"],
        ["blur", "x.jpg", "--feather", "0.1", "--feather-px", "3"],
        ["blur", "x.jpg", "y.jpg", "-o", "z.jpg"],
        ["blur", "x.jpg", "-o", "z.jpg", "--in-place"],
        ["blur", "x.jpg", "--out-dir", "d", "--in-place"],
        ["detect", "x.jpg", "y.jpg", "--preview", "p.png"],
    ],
)
def test_usage_errors_exit_2(args, tmp_path):
    r = veil(*args, cwd=tmp_path)
    assert r.returncode == 2, (args, r.stderr)
    assert "usage:" in r.stderr
    assert files(tmp_path) == []


@pytest.mark.parametrize("command", [[], ["blur"], ["detect"], ["web"]])
def test_help_answers_what_a_user_needs(command):
    r = veil(*command, "--help")
    assert r.returncode == 0
    text = r.stdout
    assert "usage: veil" in text
    if command in (["blur"], ["detect"]):
        assert "examples:" in text and "exit codes" in text and "default" in text
    if command == ["blur"]:
        for option in ("--method", "--strength", "--noise", "--keep", "--add-region", "--in-place", "--require-faces",
                       "--jobs", "--json", "--recursive", "--out-dir", "--quality", "--format"):
            assert option in text


def test_version():
    r = veil("--version")
    assert r.returncode == 0 and r.stdout.startswith("veil ")


# --------------------------------------------------------------------------
# veil detect
# --------------------------------------------------------------------------


def test_detect_lists_faces_as_json(photos):
    r = veil("detect", photos / "two.jpg", photos / "portrait.jpg", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["command"] == "detect"
    two, portrait = report["files"]
    assert len(portrait["faces"]) == 1 and len(two["faces"]) >= 2
    f = portrait["faces"][0]
    assert f["index"] == 0 and len(f["box"]) == 4 and len(f["landmarks"]) == 5
    assert [g["index"] for g in two["faces"]] == list(range(len(two["faces"])))
    assert files(photos) == ["portrait.jpg", "sub/deep.jpg", "two.jpg"]  # nothing written


def test_detect_text_and_no_face_message(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(no_face_jpeg())
    r = veil("detect", PORTRAIT, tmp_path / "empty.jpg")
    assert r.returncode == 0, r.stderr
    assert "1 face" in r.stdout and "score" in r.stdout
    assert "no face found" in r.stderr


def test_detect_preview_is_metadata_free(photos):
    r = veil("detect", photos / "portrait.jpg", "--preview", photos / "p.png")
    assert r.returncode == 0, r.stderr
    data = (photos / "p.png").read_bytes()
    assert scan_metadata(data) == [] and F.SECRET_SERIAL not in data
    with Image.open(photos / "p.png") as im:
        assert im.size == (364, 455)
    # An existing preview is not replaced silently; an input never.
    assert veil("detect", photos / "portrait.jpg", "--preview", photos / "p.png").returncode == 1
    r = veil("detect", photos / "portrait.jpg", "--preview", photos / "portrait.jpg", "--overwrite")
    assert r.returncode == 1 and "input" in r.stderr


def test_detect_missing_file_exits_1(tmp_path):
    r = veil("detect", tmp_path / "nope.png", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["failed"][0]["error"] == "no such file or folder"


@pytest.mark.skipif(not F.FACES_DIR.is_dir(), reason="../shared/data/faces is not present")
def test_no_face_on_the_dogs_photo(tmp_path):
    # Without its lower left corner, where a book shows a face printed sideways.
    dogs = tmp_path / "in" / "dogs.png"
    dogs.parent.mkdir()
    with Image.open(F.FACES_DIR / "groups" / "dogs.jpg") as im:
        im.crop((160, 0, im.width, im.height)).save(dogs)
    out = tmp_path / "out"
    r = veil("blur", dogs, "--out-dir", out, "--require-faces")
    assert r.returncode == 1 and "no face found" in r.stderr
    assert not out.exists() or files(out) == []
