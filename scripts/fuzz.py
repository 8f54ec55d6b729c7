#!/usr/bin/env python3
"""A corpus run of hostile and odd image files through veil, as an attacker
would send them.

The corpus: the test images shipped in the source distributions of Pillow
and pillow-heif (downloaded from PyPI with ``pip download --no-binary``,
cached in ``target/fuzz/``), plus veil's own crafted carriers, made here in
code: every kind of metadata veil strips, every EXIF orientation,
decompression bombs, decoding-cost attacks, and truncations of every format.

Every file goes through ``veil blur`` (the command's ``main``, in a worker
process) and through ``veil.anonymize`` on its bytes. A worker handles one
file at a time, under a per-file wall-clock limit (the worker is killed and
restarted past it) and a per-file memory limit (peak RSS, reset before each
file through ``/proc/self/clear_refs``; an address-space rlimit backs it
up). The run fails on any of:

* a traceback (an exception other than veil's ``ImageError``/``ValueError``
  from the API, any exception out of the command, exit code 2);
* a hang (the time limit) or a memory overrun;
* metadata found in an output by veil's independent scanner;
* a leftover file: anything but the one output of a photo that was done
  (a failed photo must leave nothing);
* the command and the API disagreeing on whether a file can be read.

It prints a summary: files, outcomes, worst wall time, CPU time and memory.

    python scripts/fuzz.py                 everything (make fuzz)
    python scripts/fuzz.py --quick         crafted carriers + a sample, bounded time (make fuzz-quick)
    python scripts/fuzz.py --atheris 300   also a coverage-guided run of veil.io's loader and scanner
    python scripts/fuzz.py --measure-memory [PHOTO...]   peak memory of veil blur per photo (README)
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import resource
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "target" / "fuzz"
SDISTS = (("pillow", "Tests/images/"), ("pillow_heif", "tests/images/"))


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------


def _installed_version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def download_sdists() -> List[Path]:
    """The sdists of the Pillow and pillow-heif versions installed (the ones
    veil runs with), from PyPI, cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = []
    for dist, _ in SDISTS:
        wanted = f"{dist}=={_installed_version(dist)}"
        have = sorted(CACHE.glob(f"{dist}-{_installed_version(dist)}.tar.gz"))
        if not have:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                 wanted, "-d", str(CACHE)],
                check=True,
            )
            have = sorted(CACHE.glob(f"{dist}-{_installed_version(dist)}.tar.gz"))
        if not have:
            raise SystemExit(f"fuzz: pip did not leave {dist}'s sdist in {CACHE}")
        found.append(have[0])
    return found


def extract_test_images(sdists: List[Path], into: Path) -> List[Path]:
    files = []
    for sdist, (_, folder) in zip(sdists, SDISTS):
        target = into / sdist.name.split("-")[0]
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                inner = member.name.split("/", 1)[-1]
                if not member.isfile() or not inner.startswith(folder):
                    continue
                data = archive.extractfile(member).read()
                path = target / inner[len(folder):]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                files.append(path)
    return sorted(files)


def crafted_carriers(into: Path) -> List[Path]:
    """veil's own hostile files, made from generated pixels."""
    sys.path.insert(0, str(ROOT / "tests"))
    import _imagefiles as F
    import numpy as np

    made: Dict[str, bytes] = {}
    photo = F.photo_like(240, 320)
    made["dirty.jpg"] = F.dirty_jpeg(photo)
    made["dirty.png"] = F.dirty_png(photo)
    made["dirty.webp"] = F.dirty_webp(photo, icc=F.linear_rgb_profile())
    made["exif_thumbnail.jpg"] = F.jpeg_with_exif(photo, thumbnail=F.plain_jpeg(F.thumbnail_pattern(24)))
    made["mpo.jpg"] = F.make_mpo(F.plain_jpeg(photo), F.plain_jpeg(F.thumbnail_pattern(32)))
    made["icc.jpg"] = F.insert_jpeg_segments(F.plain_jpeg(photo), [F.icc_segment(F.linear_rgb_profile())])
    for orientation in range(1, 9):
        made[f"orientation_{orientation}.jpg"] = F.dirty_jpeg(photo, orientation=orientation)
        made[f"orientation_{orientation}.png"] = F.png_with_exif_orientation(photo, orientation)
    for fmt, ext in (("GIF", "gif"), ("PNG", "png"), ("WEBP", "webp"), ("TIFF", "tif")):
        made[f"frames.{ext}"] = F.frames_file(fmt, 3)
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "I;16", "1"):
        im = F.Image.fromarray(photo).convert("RGBA" if mode in ("LA", "RGBA") else "RGB").convert(mode)
        for fmt, ext in (("PNG", "png"), ("TIFF", "tif"), ("JPEG", "jpg"), ("BMP", "bmp"), ("WEBP", "webp")):
            buf = io.BytesIO()
            try:
                im.save(buf, fmt)
            except (OSError, ValueError, KeyError):
                continue
            made[f"mode_{mode.replace(';', '')}.{ext}"] = buf.getvalue()
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        exif = b"Exif\x00\x00" + F.build_exif()
        for fmt, ext in (("HEIF", "heic"), ("AVIF", "avif")):
            buf = io.BytesIO()
            F.Image.fromarray(photo).save(buf, fmt, exif=exif, xmp=F.xmp_packet())
            made[f"dirty.{ext}"] = buf.getvalue()
    except Exception as exc:  # an encoder missing in this build: say so, go on
        print(f"fuzz: no HEIF/AVIF carriers ({type(exc).__name__}: {exc})", file=sys.stderr)
    # Bombs and decoding-cost attacks.
    made["bomb_claims_10900.jpg"] = F.jpeg_claiming(10900, 10900)
    made["bomb_claims_60000.jpg"] = F.jpeg_claiming(60000, 60000)
    made["bomb_zeros_8000.png"] = F.png_of_zeros(8000, 8000)
    made["bomb_zeros_1bit_30000.png"] = F.png_of_zeros(30000, 30000, 0, 1)
    made["bomb_header_only.png"] = F.png_bomb_header(50000, 50000)
    made["bomb_canvas.gif"] = F.gif_bomb(30000, 30000)
    made["scans_3000.jpg"] = F.many_scans_jpeg(3000)
    made["tiff_pages_60000.tif"] = F.tiff_with_pages(60000)
    # Truncations of every format, with and without an end marker.
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif"),
                     ("WEBP", "webp")):
        data = F.encode_with_pillow(photo, fmt)
        for fraction in (0.05, 0.2, 0.3, 0.5, 0.9, 0.99):
            made[f"cut_{int(fraction * 100)}.{ext}"] = F.truncated(data, fraction)
        if fmt == "JPEG":
            progressive = F.encode_with_pillow(photo, fmt, progressive=True)
            for fraction in (0.2, 0.3, 0.9):
                made[f"cut_{int(fraction * 100)}_eoi.jpg"] = F.truncated(data, fraction, b"\xff\xd9")
                made[f"cut_{int(fraction * 100)}_progressive_eoi.jpg"] = F.truncated(progressive, fraction, b"\xff\xd9")
    made["empty.jpg"] = b""
    made["not_an_image.jpg"] = b"this is text, not a photo\n" * 10
    rng = np.random.default_rng(14)
    made["noise.jpg"] = b"\xff\xd8\xff" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    into.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in made.items():
        path = into / name
        path.write_bytes(data)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------
# The worker: one file at a time, through the command and the API
# --------------------------------------------------------------------------


def _peak_rss_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set size
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker() -> None:
    import contextlib
    import traceback

    import veil
    from veil import cli
    from veil import io as vio

    out = sys.stdout
    for line in sys.stdin:
        job = json.loads(line)
        path, out_dir = Path(job["path"]), Path(job["out"])
        result: dict = {"path": str(path), "problems": []}
        _peak_rss_reset()
        wall, cpu = time.perf_counter(), time.process_time()

        # 1. veil blur, in this process (its main(), as the console script runs it)
        captured_out, captured_err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(captured_out), contextlib.redirect_stderr(captured_err):
                code = cli.main(["blur", str(path), "--out-dir", str(out_dir), "--json"])
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            code = "traceback"
            result["problems"].append("veil blur raised: " + traceback.format_exc(limit=6))
        result["cli_exit"] = code
        if code not in (0, 1, "traceback"):
            result["problems"].append(f"veil blur exit code {code}: {captured_err.getvalue()[-400:]}")
        if "Traceback" in captured_err.getvalue():
            result["problems"].append("traceback on stderr: " + captured_err.getvalue()[-800:])
        try:
            report = json.loads(captured_out.getvalue()) if code in (0, 1) else None
        except ValueError:
            report = None
            result["problems"].append("veil blur --json printed no JSON")
        if report:
            entry = report["files"][0] if report["files"] else {}
            result["cli_error"] = entry.get("error")
            result["warnings"] = entry.get("warnings", [])
        written = sorted(p for p in out_dir.rglob("*") if p.is_file()) if out_dir.exists() else []
        leftovers = [p for p in out_dir.rglob("*")] if out_dir.exists() else []
        if code == 0:
            if len(written) != 1 or len(leftovers) != 1:
                result["problems"].append(f"done, but the output folder holds {[p.name for p in leftovers]}")
            for p in written:
                findings = vio.scan_metadata(p.read_bytes())
                if findings:
                    result["problems"].append(f"metadata in the output {p.name}: {findings}")
        elif leftovers:
            result["problems"].append(f"failed, but left {[p.name for p in leftovers]}")

        # 2. veil.anonymize on the bytes
        try:
            data = path.read_bytes()
            clean = veil.anonymize(data)
            result["api"] = "done"
            findings = vio.scan_metadata(clean)
            if findings:
                result["problems"].append(f"metadata in veil.anonymize's output: {findings}")
        except ValueError as exc:  # ImageError is a ValueError
            result["api"] = "refused"
            result["api_error"] = str(exc)[:300]
        except BaseException:
            result["api"] = "traceback"
            result["problems"].append("veil.anonymize raised: " + traceback.format_exc(limit=6))
        if (code == 0) != (result["api"] == "done") and code != "traceback":
            result["problems"].append(
                f"veil blur ({code}) and veil.anonymize ({result['api']}) disagree: "
                f"{result.get('cli_error')} / {result.get('api_error')}"
            )
        result["wall_s"] = time.perf_counter() - wall
        result["cpu_s"] = time.process_time() - cpu
        result["peak_mb"] = _peak_rss_mb()
        out.write(json.dumps(result) + "\n")
        out.flush()


class Worker:
    def __init__(self, memory_cap_mb: int) -> None:
        def limits() -> None:
            cap = memory_cap_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        env = dict(os.environ, PYTHONWARNINGS="default")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=limits, env=env, bufsize=0,
        )
        self._err = b""

    def run(self, path: Path, out: Path, timeout: float) -> Optional[dict]:
        """The worker's result, or None when it did not answer in time or died."""
        self.proc.stdin.write((json.dumps({"path": str(path), "out": str(out)}) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout, self.proc.stderr], [], [], left)
            if self.proc.stderr in ready:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                self._err = (self._err + chunk)[-20000:]
            if self.proc.stdout in ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return None
                line += chunk
        return json.loads(line)

    def stderr_tail(self) -> str:
        return self._err.decode("utf-8", "replace")[-1500:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_corpus(files: List[Path], *, time_limit: float, memory_mb: int, budget_s: Optional[float],
               work: Path) -> Tuple[List[dict], int]:
    results: List[dict] = []
    worker_proc = Worker(memory_cap_mb=max(memory_mb * 3, 6144))
    # The first file also pays for importing veil and loading the detector.
    warm = work / "warm.png"
    sys.path.insert(0, str(ROOT / "tests"))
    import _imagefiles as F

    warm.write_bytes(F.encode_with_pillow(F.photo_like(32, 32), "PNG"))
    worker_proc.run(warm, work / "out-warm", timeout=300)
    started = time.monotonic()
    skipped = 0
    for index, path in enumerate(files):
        if budget_s is not None and time.monotonic() - started > budget_s:
            skipped = len(files) - index
            break
        out = work / "out" / f"{index:05d}"
        result = worker_proc.run(path, out, timeout=time_limit)
        if result is None:
            died = worker_proc.proc.poll() is not None
            reason = "the worker died (memory limit or crash)" if died else f"hang: no answer in {time_limit:g} s"
            result = {"path": str(path), "problems": [f"{reason}; {worker_proc.stderr_tail()[-600:]}"],
                      "cli_exit": None, "api": None, "wall_s": time_limit, "cpu_s": None, "peak_mb": None}
            worker_proc.kill()
            worker_proc = Worker(memory_cap_mb=max(memory_mb * 3, 6144))
            worker_proc.run(warm, work / f"out-warm-{index}", timeout=300)
        elif result["peak_mb"] is not None and result["peak_mb"] > memory_mb:
            result["problems"].append(f"memory overrun: peak {result['peak_mb']:.0f} MB > {memory_mb} MB")
        results.append(result)
        if result["problems"]:
            print(f"fuzz: FAIL {path}: {result['problems'][0][:500]}", file=sys.stderr, flush=True)
        if (index + 1) % 100 == 0:
            print(f"fuzz: {index + 1}/{len(files)} files", file=sys.stderr, flush=True)
    worker_proc.proc.stdin.close()
    worker_proc.kill()
    return results, skipped


def outcome(result: dict) -> str:
    if result["problems"]:
        return "FAILED CHECK"
    if result.get("cli_exit") == 0:
        return "written (damaged)" if any("damaged" in w for w in result.get("warnings") or []) else "written"
    error = (result.get("cli_error") or "").lower()
    for key, label in (("pixels per byte", "refused: bomb (pixels per byte)"),
                       ("not an image veil can read", "refused: not a format veil reads"),
                       ("truncated or corrupt", "refused: truncated or corrupt"),
                       ("corrupt", "refused: truncated or corrupt"),
                       ("decode budget", "refused: over the decode budget"),
                       ("decompression bomb", "refused: bomb (pixel limit)"),
                       ("jpeg scans", "refused: too many JPEG scans"),
                       ("animated or multi-page", "refused: animated or multi-page"),
                       ("is empty", "refused: empty"),
                       ("colour mode", "refused: colour mode"),
                       ("floating-point", "refused: colour mode"),
                       ("32-bit integer", "refused: colour mode")):
        if key in error:
            return label
    return "refused: other"


def summarize(results: List[dict], skipped: int, elapsed: float) -> bool:
    counts = collections.Counter(outcome(r) for r in results)
    print(f"\nfuzz: {len(results)} files in {elapsed:.0f} s" + (f" ({skipped} not reached in the time budget)" if skipped else ""))
    for label, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {label}")
    timed = [r for r in results if r.get("wall_s") is not None]
    for key, unit, what in (("wall_s", "s", "wall time"), ("cpu_s", "s", "CPU time"), ("peak_mb", "MB", "peak memory")):
        have = [r for r in timed if r.get(key) is not None]
        if have:
            worst = max(have, key=lambda r: r[key])
            print(f"  worst {what}: {worst[key]:.2f} {unit} ({Path(worst['path']).name})")
    others = [r for r in results if outcome(r) == "refused: other"]
    for r in others[:15]:
        print(f"  (other refusal) {Path(r['path']).name}: {(r.get('cli_error') or '')[:150]}")
    failed = [r for r in results if r["problems"]]
    for r in failed:
        print(f"FAILED {r['path']}:")
        for problem in r["problems"]:
            print("   " + problem.replace("\n", "\n   ")[:2000])
    print("fuzz: " + ("FAILED" if failed else "passed") + f" ({len(failed)} of {len(results)} files failed a check)")
    return not failed


# --------------------------------------------------------------------------
# atheris: coverage-guided, over veil.io's loader and metadata scanner
# --------------------------------------------------------------------------

_ATHERIS_TARGET = r'''
import sys, atheris
with atheris.instrument_imports():
    import veil.io as vio

def one(data: bytes) -> None:
    findings = vio.scan_metadata(data)          # must never raise
    assert isinstance(findings, list)
    if data:
        assert findings == [] or all(isinstance(f, str) for f in findings)
    try:
        vio.load_image(data, max_memory_mb=256)
    except vio.ImageError:
        pass                                    # refusing is fine; anything else is a bug

atheris.Setup(sys.argv, one)
atheris.Fuzz()
'''


def run_atheris(seconds: int, seeds: List[Path], work: Path) -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz: atheris is not installed (pip install -r scripts/requirements-fuzz.txt); skipped", file=sys.stderr)
        return True
    corpus = work / "atheris-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for path in seeds:
        if path.stat().st_size <= 64 * 1024:
            shutil.copy(path, corpus / path.name)
    target = work / "atheris_target.py"
    target.write_text(_ATHERIS_TARGET)
    cmd = [sys.executable, str(target), str(corpus), f"-max_total_time={seconds}", "-rss_limit_mb=3072",
           "-timeout=20", "-max_len=65536", f"-artifact_prefix={work}/atheris-"]
    print(f"fuzz: atheris for {seconds} s over veil.io.load_image and scan_metadata", file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = r.stderr.splitlines()
    progress = [line for line in lines if line.startswith("#") and "cov:" in line]
    done = [line for line in lines if line.startswith("Done ")]
    print("\n".join(progress[-1:] + done[-1:]) or "\n".join(lines[-20:]))
    if r.returncode != 0:
        print("\n".join(lines[-40:]))
    ok = r.returncode == 0
    print("fuzz: atheris " + ("passed" if ok else f"FAILED (exit {r.returncode}); crash input under {work}"))
    return ok


# --------------------------------------------------------------------------
# Peak memory per photo (the README's table)
# --------------------------------------------------------------------------


def measure_memory(extra_files: List[str], work: Path) -> None:
    """Peak RSS of one ``veil blur`` process per photo: synthetic 12, 24 and
    48 MP JPEGs (gradients plus noise), with and without tiles."""
    import numpy as np
    from PIL import Image

    photos = []
    for w, h in ((4000, 3000), (6000, 4000), (8000, 6000)):
        path = work / f"photo_{w * h // 1_000_000}mp.jpg"
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 200 // w, y * 200 // h, (x + y) * 100 // (w + h)], -1).astype(np.uint8)
        noise = np.random.default_rng(0).integers(0, 40, (h, w, 1), dtype=np.uint8)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
        del base, noise, y, x
        photos.append(str(path))
    veil_cmd = [sys.executable, "-m", "veil"]
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(r.returncode, u.ru_maxrss / 1024, u.ru_utime + u.ru_stime)\n"
    )
    print("photo | options | exit | peak MB | CPU s | wall s")
    for photo in photos + list(extra_files):
        for extra in ([], ["--no-tiles"]):
            began = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-c", probe, *veil_cmd, "blur", photo, "-o", str(work / "out.png"), "--overwrite", *extra],
                capture_output=True, text=True,
            ).stdout.split()
            print(f"{Path(photo).name} | {' '.join(extra) or 'default'} | {out[0]} | {float(out[1]):.0f} | "
                  f"{float(out[2]):.1f} | {time.monotonic() - began:.1f}", flush=True)


# --------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="crafted carriers plus a fixed sample of the corpus, within --budget seconds")
    parser.add_argument("--budget", type=float, default=None,
                        help="stop starting files after this many seconds (default: none; 150 with --quick)")
    parser.add_argument("--sample", type=int, default=120, help="corpus files in --quick (default: %(default)s)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per file (default: %(default)s)")
    parser.add_argument("--memory-mb", type=int, default=3072, help="peak MB per file (default: %(default)s)")
    parser.add_argument("--atheris", type=int, default=0, metavar="SECONDS", help="also run atheris this long")
    parser.add_argument("--no-download", action="store_true", help="crafted carriers only")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--measure-memory", nargs="*", metavar="PHOTO", default=None,
                        help="only measure peak memory of veil blur on 12/24/48 MP photos (and PHOTOs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker()
        return 0
    if args.measure_memory is not None:
        with tempfile.TemporaryDirectory(prefix="veil-memory-") as folder:
            measure_memory(args.measure_memory, Path(folder))
        return 0
    budget = args.budget if args.budget is not None else (150.0 if args.quick else None)
    work = Path(tempfile.mkdtemp(prefix="veil-fuzz-"))
    began = time.monotonic()
    try:
        crafted = crafted_carriers(work / "crafted")
        corpus: List[Path] = []
        if not args.no_download:
            corpus = extract_test_images(download_sdists(), work / "corpus")
        if args.quick:
            corpus = random.Random(14).sample(corpus, min(args.sample, len(corpus)))
        files = crafted + corpus
        print(f"fuzz: {len(crafted)} crafted carriers, {len(corpus)} files from the sdists' test images",
              file=sys.stderr, flush=True)
        results, skipped = run_corpus(files, time_limit=args.time_limit, memory_mb=args.memory_mb,
                                      budget_s=budget, work=work)
        ok = summarize(results, skipped, time.monotonic() - began)
        if args.atheris:
            ok = run_atheris(args.atheris, crafted, work) and ok
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"fuzz: work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
