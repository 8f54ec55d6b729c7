"""Hostile and odd input: bounded decoding cost, honest errors for damaged
files, regular files only, names that cannot be printed, hard kills during
a write, and malformed requests to ``veil web``.

Every file here is built at run time (``_imagefiles``); the corpus run over
Pillow's and pillow-heif's own test images is ``make fuzz``.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import _imagefiles as F
import numpy as np
import pytest
from PIL import Image, ImageFile, TiffImagePlugin

import veil
import veil.io as vio
from veil import cli, web

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PORTRAIT = FIXTURES / "portrait.jpg"


def run_veil(*args, cwd=None, timeout=120, env=None, input=None):
    full_env = dict(os.environ, PYTHONWARNINGS="error")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "veil", *map(str, args)],
        cwd=cwd, capture_output=True, timeout=timeout, env=full_env, input=input,
    )


Image.init()  # every plugin registered before a test replaces a method


def files(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --------------------------------------------------------------------------
# 1. The decode budget
# --------------------------------------------------------------------------


def test_huge_size_in_a_few_bytes_is_refused_before_decoding(monkeypatch):
    data = F.jpeg_claiming(10900, 10900)
    assert len(data) < 1000
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded a bomb"))
    with pytest.raises(vio.ImageError, match="decode budget"):
        vio.load_image(data)
    # With a budget large enough, the pixels-per-byte rule still refuses it.
    with pytest.raises(vio.ImageError, match="pixels per byte"):
        vio.load_image(data, max_memory_mb=100_000)


def test_a_valid_png_of_zeros_beyond_the_budget_is_refused(monkeypatch):
    data = F.png_of_zeros(2000, 2000)  # 12 MB of pixels in about 12 KB
    with pytest.raises(vio.ImageError, match="needs about 76 MiB, more than the decode budget of 50 MiB"):
        vio.load_image(data, max_memory_mb=50)
    monkeypatch.setenv(vio.MAX_DECODE_MB_ENV, "50")
    with pytest.raises(vio.ImageError, match="decode budget of 50 MiB"):
        vio.load_image(data)
    monkeypatch.setenv(vio.MAX_DECODE_MB_ENV, "200")
    assert vio.load_image(data).width == 2000


@pytest.mark.parametrize("value", ["0", "-5", "lots", "nan"])
def test_bad_budget_values_are_refused(monkeypatch, value, tmp_path):
    monkeypatch.setenv(vio.MAX_DECODE_MB_ENV, value)
    with pytest.raises(ValueError, match=vio.MAX_DECODE_MB_ENV):
        vio.load_image(F.plain_jpeg())
    r = run_veil("blur", PORTRAIT, "-o", tmp_path / "o.jpg", env={vio.MAX_DECODE_MB_ENV: value})
    assert r.returncode == 2 and b"VEIL_MAX_DECODE_MB" in r.stderr
    assert files(tmp_path) == []


def test_max_memory_mb_option_refuses_with_exit_1(tmp_path):
    r = run_veil("blur", PORTRAIT, "-o", tmp_path / "o.jpg", "--max-memory-mb", "1")
    assert r.returncode == 1 and b"decode budget of 1 MiB" in r.stderr
    assert files(tmp_path) == []


def test_absurd_jpeg_scan_counts_are_refused_before_decoding(monkeypatch):
    data = F.many_scans_jpeg(3000)
    assert Image.open(io.BytesIO(data)).size == (32, 32)  # a file Pillow would decode
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded 3000 scans"))
    with pytest.raises(vio.ImageError, match="more than 100 JPEG scans"):
        vio.load_image(data)


def test_tiff_pages_are_counted_linearly_not_with_n_frames(monkeypatch):
    def quadratic(self):
        raise AssertionError("Pillow's n_frames seeks from the first page for each page")

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "n_frames", property(quadratic))
    with pytest.raises(vio.ImageError, match="multi-page TIFF with 3000 frames"):
        vio.load_image(F.tiff_with_pages(3000))
    with pytest.raises(vio.ImageError, match="with at least 10000 frames"):
        vio.load_image(F.tiff_with_pages(12_000))
    assert vio.load_image(F.tiff_with_pages(1)).width == 1


def test_gif_claiming_a_huge_canvas_is_refused_before_decoding():
    with pytest.raises(vio.ImageError, match="pixels per byte"):
        vio.load_image(F.gif_bomb(10_000, 10_000), max_memory_mb=100_000)


# --------------------------------------------------------------------------
# 2. Truncated or corrupt is an error; --allow-damaged writes it with a note
# --------------------------------------------------------------------------


# A progressive JPEG cut inside its last scan (the last bit of precision of
# the luma detail, about the last 40% of the bytes here) still has every scan
# started, and the cut cannot be seen without decoding the entropy-coded
# data: with an end marker appended it is read as complete (README,
# "Hostile files"). Every other cut is refused.
_JPEG_CUTS = [(f, end, False) for f in (0.2, 0.3, 0.6, 0.9, 0.99) for end in (b"", b"\xff\xd9")]
_JPEG_CUTS += [(f, b"", True) for f in (0.2, 0.6, 0.9)] + [(f, b"\xff\xd9", True) for f in (0.1, 0.3)]


@pytest.mark.parametrize("fraction, end_marker, progressive", _JPEG_CUTS)
def test_truncated_jpeg_is_an_error(fraction, end_marker, progressive):
    data = F.encode_with_pillow(F.photo_like(), "JPEG", progressive=progressive)
    cut = F.truncated(data, fraction, end_marker)
    Image.open(io.BytesIO(cut + b"\xff\xd9")).load()  # Pillow alone fills the rest with grey, silently
    with pytest.raises(vio.ImageError, match="truncated or corrupt"):
        vio.load_image(cut)
    damaged = vio.load_image(cut, allow_damaged=True)
    assert damaged.width == 640 and any("DAMAGED" in n for n in damaged.notes)


@pytest.mark.parametrize(
    "options",
    [{}, {"subsampling": 0}, {"subsampling": 1}, {"optimize": True}, {"quality": 5}, {"quality": 100},
     {"restart_marker_blocks": 1}, {"restart_marker_rows": 1}, {"progressive": True}],
)
@pytest.mark.parametrize("shape", [(1, 1, 3), (17, 33, 3), (999, 1001, 1), (480, 640, 3)])
def test_complete_jpegs_of_every_kind_still_load(options, shape):
    pixels = F.photo_like(shape[0], shape[1])
    if shape[2] == 1:
        pixels = np.ascontiguousarray(pixels[:, :, 0])
    data = F.encode_with_pillow(pixels, "JPEG", **options)
    loaded = vio.load_image(data)
    assert (loaded.height, loaded.width) == shape[:2] and not loaded.notes
    expected = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(loaded.pixels.reshape(expected.shape), expected)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_truncated_files_of_other_formats_are_errors(fmt):
    data = F.encode_with_pillow(F.photo_like(120, 160), fmt)
    with pytest.raises(vio.ImageError):
        vio.load_image(F.truncated(data, 0.6))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF"])
def test_allow_damaged_keeps_what_other_formats_decoded(fmt):
    data = F.encode_with_pillow(F.photo_like(120, 160), fmt)
    loaded = vio.load_image(F.truncated(data, 0.6), allow_damaged=True)
    assert (loaded.height, loaded.width) == (120, 160)
    assert any("DAMAGED" in n for n in loaded.notes)


def test_cli_truncated_photo_writes_nothing_unless_allow_damaged(tmp_path):
    data = PORTRAIT.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(F.truncated(data, 0.3, b"\xff\xd9"))
    r = run_veil("blur", cut)
    assert r.returncode == 1 and b"truncated or corrupt" in r.stderr
    assert files(tmp_path) == ["cut.jpg"]
    r = run_veil("blur", cut, "--allow-damaged", "--json")
    assert r.returncode == 0, r.stderr
    assert b"damaged file read as far as its data goes" in r.stderr
    assert b"damaged file read as far as its data goes" in r.stdout
    assert vio.scan_metadata((tmp_path / "cut.veiled.jpg").read_bytes()) == []


# --------------------------------------------------------------------------
# 3. Only regular files; - is stdin and stdout
# --------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking_the_batch(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    r = run_veil("blur", fifo, photo, timeout=120)  # used to hang forever opening the FIFO
    assert r.returncode == 1
    assert b"FIFO (named pipe), not a regular file" in r.stderr
    assert (tmp_path / "photo.veiled.jpg").is_file()
    with pytest.raises(vio.ImageError, match="FIFO"):
        vio.load_image(fifo)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_refused():
    with pytest.raises(vio.ImageError, match="character device"):
        vio.load_image("/dev/zero")


def test_stdin_to_stdout(tmp_path):
    r = run_veil("blur", "-", "-o", "-", cwd=tmp_path, input=PORTRAIT.read_bytes())
    assert r.returncode == 0, r.stderr
    assert r.stdout[:3] == b"\xff\xd8\xff" and vio.scan_metadata(r.stdout) == []
    assert vio.load_image(r.stdout).width == 364
    assert files(tmp_path) == []  # no file named "-"
    r = run_veil("blur", "-", cwd=tmp_path, input=PORTRAIT.read_bytes())
    assert r.returncode == 2 and b"needs -o" in r.stderr


def test_dash_output_writes_stdout_not_a_file(tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    r = run_veil("blur", photo, "-o", "-", "--format", "png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"\x89PNG") and files(tmp_path) == ["p.jpg"]


def test_only_the_documented_formats_are_read(tmp_path):
    for fmt in ("PPM", "ICO", "TGA", "PCX"):
        data = F.encode_with_pillow(F.photo_like(16, 16), fmt)
        assert Image.open(io.BytesIO(data)).format == fmt
        with pytest.raises(vio.ImageError, match="not an image veil can read"):
            vio.load_image(data)
    r = run_veil("blur", "--help")
    assert b"JPEG (and MPO), PNG, WebP, TIFF, BMP, GIF, HEIC/HEIF and AVIF" in r.stdout


# --------------------------------------------------------------------------
# 4. Names
# --------------------------------------------------------------------------


def test_paths_are_described_losslessly():
    name = os.fsdecode(b"caf\xe9\n.jpg")
    assert vio.describe_path(name) == "caf\\xe9\\x0a.jpg"
    assert vio.describe_path("été.jpg") == "été.jpg"


@pytest.mark.skipif(sys.platform != "linux", reason="needs a filesystem that takes any bytes in names")
def test_non_utf8_name_under_strict_stdout_is_done_not_failed(tmp_path):
    name = os.fsdecode(b"caf\xe9.jpg")
    (tmp_path / name).write_bytes(PORTRAIT.read_bytes())
    env = {"PYTHONIOENCODING": "utf-8:strict"}
    r = run_veil("blur", name, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert b"caf\\xe9.jpg -> caf\\xe9.veiled.jpg" in r.stdout
    assert (tmp_path / os.fsdecode(b"caf\xe9.veiled.jpg")).is_file()


def test_a_legal_long_output_name_works(tmp_path):
    target = tmp_path / ("a" * 245 + ".png")  # 249 bytes; the temporary name used to be longer than 255
    vio.save_image(F.photo_like(8, 8), target)
    assert vio.load_image(target).width == 8


def test_write_errors_name_the_users_path_not_a_temporary_file(tmp_path):
    target = tmp_path / "missing" / "out.png"
    with pytest.raises(FileNotFoundError) as caught:
        vio.save_image(F.photo_like(8, 8), target)
    assert caught.value.filename == str(target)
    assert "veil-tmp" not in str(caught.value)


# --------------------------------------------------------------------------
# 5. A hard kill during a write leaves nothing
# --------------------------------------------------------------------------

_KILL_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import veil.io as vio
    if sys.argv[2] == "named":
        vio._write_unnamed = lambda data, target, overwrite: False
    def slow_fsync(fd):
        print("writing", flush=True)
        time.sleep(60)
    vio.os.fsync = slow_fsync
    vio.save_image(np.zeros((64, 64, 3), np.uint8), sys.argv[1])
    """
)


def _kill_mid_write(target: Path, mode: str) -> None:
    with subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(target), mode], stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout.readline() == b"writing\n"
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE here")
def test_sigkill_during_a_write_leaves_no_file(tmp_path):
    _kill_mid_write(tmp_path / "out.png", "unnamed")
    assert files(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_stale_named_temporaries_are_removed_by_the_next_write(tmp_path):
    _kill_mid_write(tmp_path / "out.png", "named")
    left = files(tmp_path)
    assert len(left) == 1 and left[0].endswith(".veil-tmp") and len(left[0]) < 30
    vio._cleaned_folders.discard(os.path.abspath(tmp_path))
    vio.save_image(F.photo_like(8, 8), tmp_path / "next.png")
    assert files(tmp_path) == ["next.png"]


# --------------------------------------------------------------------------
# 6. veil web: malformed request paths get a 400
# --------------------------------------------------------------------------


def _raw_request(port: int, path: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "path",
    [b"/index.html%00.js", b"/%00", b"/%C0%AE%C0%AE/index.html", b"/%E0%80%AF", b"/%FF%FE", b"/\xc0\xae",
     b"/index.html%0a", b"/%ED%A0%80"],
)
def test_malformed_request_paths_get_400(tmp_path, path, capfd):
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    server = web.make_server(tmp_path, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        answer = _raw_request(port, path)
        assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400"), answer[:80]
        assert _raw_request(port, b"/index.html").split(b"\r\n")[0].endswith(b"200 OK")  # still serving
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert "Traceback" not in capfd.readouterr().err


# --------------------------------------------------------------------------
# 7. Small things
# --------------------------------------------------------------------------


def test_huge_numbers_are_value_errors():
    pixels = F.photo_like(32, 32)
    with pytest.raises(ValueError, match="radius_px"):
        veil.box_blur(pixels, 2**64)
    with pytest.raises(ValueError, match="block_px"):
        veil.pixelate(pixels, 2**64)
    with pytest.raises(ValueError, match="within"):
        veil.anonymize(pixels, add_regions=[(1e308, 0, 10, 10)])
    with pytest.raises(ValueError, match="too large"):
        veil.anonymize(pixels, add_regions=[(10**400, 0, 10, 10)])


@pytest.mark.parametrize(
    "args",
    [["--add-region", "1e308,0,10,10"], ["--keep", "0,0,1e308,5"], ["-o", "x.gif"], ["-o", "x.jpg", "--format", "png"]],
)
def test_more_usage_errors_exit_2(args, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    r = run_veil("blur", photo, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert files(tmp_path) == ["p.jpg"]


def test_negative_coordinates_need_no_equals_sign(tmp_path):
    out = tmp_path / "o.png"
    r = run_veil("blur", PORTRAIT, "-o", out, "--add-region", "-10,-20,80,90", "--json")
    assert r.returncode == 0, r.stderr
    assert b'"manual"' in r.stdout and out.is_file()


def test_too_small_strength_is_said(tmp_path):
    r = run_veil("blur", PORTRAIT, "-o", tmp_path / "o.png", "--method", "pixelate", "--strength", "0.0001")
    assert r.returncode == 0, r.stderr
    assert b"--strength 0.0001 is below veil's minimum" in r.stderr


def test_a_failed_run_removes_the_folders_it_made(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise vio.ImageError("encoder failed")

    monkeypatch.setattr(vio, "encode_image", refuse)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    out = tmp_path / "new" / "deeper"
    assert cli.main(["blur", str(photo), "--out-dir", str(out)]) == 1
    assert files(tmp_path) == ["p.jpg"]


def test_library_warnings_become_one_line(capsys, monkeypatch):
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    cli._quiet_library_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Metadata Warning,\n  tag 282 had too many entries", UserWarning)
        warnings.warn("Metadata Warning,\n  tag 282 had too many entries", UserWarning)
    assert capsys.readouterr().err == "veil: warning: Metadata Warning, tag 282 had too many entries\n"


def test_detect_reads_stdin_and_cloak_refuses_dash_instead_of_writing_a_file_named_dash(tmp_path):
    r = run_veil("detect", "-", "--json", cwd=tmp_path, input=PORTRAIT.read_bytes())
    assert r.returncode == 0, r.stderr
    assert b'"faces"' in r.stdout
    photo = tmp_path / "p.jpg"
    photo.write_bytes(PORTRAIT.read_bytes())
    r = run_veil("cloak", photo, "-o", "-", cwd=tmp_path)
    assert r.returncode == 2 and b"does not read stdin or write stdout" in r.stderr
    assert files(tmp_path) == ["p.jpg"]
