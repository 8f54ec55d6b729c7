"""``veil blur --ray`` and :mod:`veil.ray` on a local Ray cluster (2 CPUs,
127.0.0.1, no dashboard), against the serial command on the same 50 files,
good and bad mixed. Skipped when Ray (the extra ``veil[ray]``) is absent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# Ray replaces 127.0.0.1 by the machine's network address unless told that
# this is a single-machine setup; this keeps the test cluster on loopback.
# (Read when Ray is imported, and inherited by its processes.)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# No usage report to Ray's servers from a test run.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
ray = pytest.importorskip("ray")

import _imagefiles as F  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from veil.io import load_image, scan_metadata  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    # Ray Data sets its own deprecated options internally; veil's warnings stay errors.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
]

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def veil(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="error")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "veil", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    )


def _encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    return F.encode_with_pillow(pixels, fmt, **options)


def make_archive(folder: Path) -> None:
    """50 files: photos with faces at several small sizes and formats, some
    with planted metadata, in a folder tree; and corrupt, truncated, empty
    and non-image files under photo names."""
    sources = [load_image(FIXTURES / "portrait.jpg").pixels, load_image(FIXTURES / "two_faces.jpg").pixels]
    (folder / "sub").mkdir(parents=True)
    n = 0
    for i in range(40):
        pixels = sources[i % 2]
        side = (96, 128, 160, 200, 240)[i % 5]
        im = Image.fromarray(pixels)
        im.thumbnail((side, side))
        small = np.asarray(im)
        where = folder / "sub" if i % 4 == 3 else folder
        kind = i % 8
        if kind == 0:
            data, ext = F.dirty_jpeg(small), ".jpg"
        elif kind == 1:
            data, ext = _encode(small, "PNG"), ".png"
        elif kind == 2:
            data, ext = F.dirty_png(small), ".png"
        elif kind == 3:
            data, ext = _encode(small, "WEBP", quality=80), ".webp"
        elif kind == 4:
            data, ext = _encode(small[:, :, 0], "JPEG", quality=85), ".jpg"  # grey
        elif kind == 5:
            data, ext = F.dirty_jpeg(small, orientation=6), ".jpeg"
        else:
            data, ext = _encode(small, "JPEG", quality=70 + i % 20), ".jpg"
        (where / f"photo{i:02d}{ext}").write_bytes(data)
        n += 1
    good = (folder / "photo06.jpg").read_bytes()
    bad = {
        "truncated.jpg": good[: len(good) // 2],
        "truncated-header.jpg": good[:40],
        "empty.jpg": b"",
        "text.jpg": b"not a photo at all\n" * 20,
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + os.urandom(300),
        "notes.png": b"hello",
        "garbage.webp": b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(50),
        "sub/half.png": (folder / "photo01.png").read_bytes()[:200],
        "sub/zeros.jpg": bytes(1000),
        "sub/flipped.jpg": bytes(reversed(good)),
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
        n += 1
    assert n == 50


def outputs(folder: Path) -> dict:
    """Every file in an output folder (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def comparable(records: list, out_dir: Path) -> list:
    """Records with the Ray-only field dropped and the output folder named
    the same for both runs."""
    rows = []
    for r in records:
        r = {k: v for k, v in r.items() if k != "resumed"}
        if "output" in r:
            r["output"] = str(Path(r["output"]).relative_to(out_dir))
        rows.append(r)
    return rows


@pytest.fixture(scope="module")
def cluster():
    # address="local": a new cluster of our own, never one already running here.
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
        log_to_driver=False, configure_logging=False,
    )
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The 50 files, and the serial command's outputs and report for them."""
    root = tmp_path_factory.mktemp("archive")
    make_archive(root / "in")
    r = veil("blur", root / "in", "-r", "--out-dir", root / "serial", "--jobs", "1", "--json")
    assert r.returncode == 1, r.stderr  # the bad files fail, the rest are written
    report = json.loads(r.stdout)
    assert report["summary"]["files"] == 50 and report["summary"]["failed"] == 10
    return root, report


def test_same_report_and_bytes_as_the_serial_command(cluster, archive, tmp_path):
    from veil.ray import anonymize_dataset

    root, serial = archive
    out = tmp_path / "out"
    report = anonymize_dataset([str(root / "in")], str(out), recursive=True, actors=2, progress=False)
    assert comparable(report["files"], out) == comparable(serial["files"], root / "serial")
    assert report["failed"] == serial["failed"]
    assert {k: report["summary"][k] for k in serial["summary"]} == serial["summary"]
    assert report["settings"] == serial["settings"]
    got, want = outputs(out), outputs(root / "serial")
    assert sorted(got) == sorted(want) and len(got) == 40
    for name in want:
        assert got[name] == want[name], name
        assert scan_metadata(got[name]) == []
    for secret in (F.SECRET_SERIAL, F.SECRET_XMP, F.SECRET_COMMENT, F.SECRET_TRAILER, F.SECRET_PNG_TEXT):
        assert not any(secret in data for data in got.values())
    lines = (tmp_path / "out.veil-ray" / "report.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == report["files"]
    assert not [p for p in out.rglob("*.veil-tmp")]


def _descendants(pid: int) -> list:
    """Processes below ``pid`` (read from /proc: Ray's workers are children of
    the raylet this test process started)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _actor_pids() -> list:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"Anonymizer" in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids


def test_killed_worker_then_rerun_gives_the_complete_clean_set(cluster, archive, tmp_path):
    from veil.ray import anonymize_dataset

    root, serial = archive
    out = tmp_path / "out"
    done_dir = tmp_path / "out.veil-ray" / "done"
    outcome: dict = {}

    def first_run() -> None:
        try:
            outcome["report"] = anonymize_dataset(
                [str(root / "in")], str(out), recursive=True, actors=2, progress=False
            )
        except Exception as exc:  # a kill may fail the job; the rerun must mend it
            outcome["error"] = exc

    thread = threading.Thread(target=first_run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and thread.is_alive():
        pids = _actor_pids()
        if pids and done_dir.is_dir() and len(os.listdir(done_dir)) >= 5:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert killed is not None, "no actor was seen working"

    # What an interrupted write leaves: a temporary file beside the outputs.
    # And an output of ours damaged after the fact: the rerun must redo it.
    (out / ".photo00.jpg.0123456789ab.veil-tmp").write_bytes(b"\xff\xd8 half a photo")
    damaged = out / "photo02.png"
    if damaged.exists():
        damaged.write_bytes(damaged.read_bytes()[:100])

    report = anonymize_dataset([str(root / "in")], str(out), recursive=True, actors=2, progress=False)
    assert report["ray"]["stale_removed"] >= 1
    assert report["summary"]["resumed"] >= 5
    assert comparable(report["files"], out) == comparable(serial["files"], root / "serial")
    got, want = outputs(out), outputs(root / "serial")
    assert sorted(got) == sorted(want)
    assert all(got[name] == want[name] for name in want)
    assert not [p for p in out.rglob("*.veil-tmp")]


def test_an_existing_foreign_output_is_refused_and_our_own_is_adopted(cluster, archive, tmp_path):
    from veil.ray import anonymize_dataset

    root, serial = archive
    src = tmp_path / "in"
    src.mkdir()
    for name in ("photo00.jpg", "photo01.png", "photo06.jpg"):
        (src / name).write_bytes((root / "in" / name).read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo00.jpg").write_bytes(b"someone else's file")
    # Our own bytes, without a manifest entry (killed between the two writes).
    (out / "photo01.png").write_bytes((root / "serial" / "photo01.png").read_bytes())
    report = anonymize_dataset([str(src)], str(out), actors=1, progress=False)
    by_name = {Path(r["input"]).name: r for r in report["files"]}
    assert by_name["photo00.jpg"]["status"] == "failed"
    assert "already exists" in by_name["photo00.jpg"]["error"]
    assert (out / "photo00.jpg").read_bytes() == b"someone else's file"
    assert by_name["photo01.png"]["status"] == "done"
    assert by_name["photo06.jpg"]["status"] == "done"
    assert (out / "photo06.jpg").read_bytes() == (root / "serial" / "photo06.jpg").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["photo00.jpg", "photo01.png", "photo06.jpg"]
    assert not [p for p in (tmp_path / "out.veil-ray").rglob("*") if "scratch" in p.parts and p.is_file()]


def test_command_joins_a_cluster_and_prints_a_json_summary(cluster, archive, tmp_path):
    root, serial = archive
    src = tmp_path / "in"
    src.mkdir()
    for name in ("photo00.jpg", "photo05.jpeg", "text.jpg"):
        (src / name).write_bytes((root / "in" / name).read_bytes())
    address = ray.get_runtime_context().gcs_address
    # Relative paths, as a user types them: they mean the same in the actors.
    r = veil("blur", "--ray", address, "in", "--out-dir", "out", "--json", "--ray-actors", "1", cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # text.jpg fails
    assert r.stdout.startswith("{"), (r.stdout[:2000], r.stderr[-3000:])
    report = json.loads(r.stdout)
    assert report["summary"]["done"] == 2 and report["summary"]["failed"] == 1
    assert report["ray"]["actors"] == 1
    assert report["failed"][0]["input"] == "in/text.jpg"
    assert report["files"][0]["output"] == "out/photo00.jpg"
    assert "photos/s" in r.stderr
    assert (tmp_path / "out" / "photo00.jpg").read_bytes() == (root / "serial" / "photo00.jpg").read_bytes()


def test_ray_option_parsing():
    from veil.cli import _ray_address_given, build_parser

    parse = lambda *a: build_parser().parse_args(_ray_address_given(list(a)))  # noqa: E731
    args = parse("blur", "--ray", "photos/", "--out-dir", "x")
    assert args.ray == "" and args.inputs == ["photos/"]
    args = parse("blur", "--ray", "10.0.0.1:6379", "photos/", "--out-dir", "x")
    assert args.ray == "10.0.0.1:6379" and args.inputs == ["photos/"]
    args = parse("blur", "--ray", "ray://head:10001", "a.jpg", "--out-dir", "x")
    assert args.ray == "ray://head:10001"
    assert parse("blur", "a.jpg").ray is None


def test_ray_needs_out_dir(tmp_path):
    r = veil("blur", "--ray", FIXTURES / "portrait.jpg")
    assert r.returncode == 2 and "--out-dir" in r.stderr


def test_without_ray_the_flag_is_a_usage_error(tmp_path):
    # As on a machine without the extra: importing ray fails.
    code = (
        "import sys; sys.modules['ray'] = None; from veil.cli import main; "
        f"sys.exit(main(['blur', '--ray', {str(FIXTURES / 'portrait.jpg')!r}, '--out-dir', {str(tmp_path)!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "veil[ray]" in r.stderr
    assert list(tmp_path.iterdir()) == []
