"""The ``veil`` command: ``veil blur``, ``veil cloak``, ``veil detect``, ``veil web``.

Every subcommand that works on photos shares one shape (see
:func:`_photo_options` and :func:`run_batch`): inputs are files or folders
(``--recursive`` for subfolders), ``--jobs N`` runs N photos at once on
threads (the heavy work releases the GIL), a progress bar goes to stderr for
batches, ``--json`` puts one report on stdout, and the exit code is 0 when
every photo was done, 1 when any failed, 2 for a usage error. A
subcommand adds a parser with the shared parents, a ``work(job) -> dict``
function, and calls :func:`run_batch` and :func:`finish`, as ``veil cloak``
does from its own module (:mod:`veil.cli_cloak`).

Writing rules, for every subcommand that writes photos:

* an input is never replaced unless ``--in-place`` is given;
* an existing output is never replaced unless ``--overwrite`` is given;
* writes are atomic (:func:`veil.io.save_image`): a photo that fails leaves
  no file behind, and no file is ever written before its faces are covered.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # argparse's own code for bad usage
EXIT_INTERRUPTED = 130

#: Extensions picked up when a folder is given (explicitly named files are
#: read whatever their name: the decoder decides).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp",
     ".heic", ".heif", ".hif", ".avif", ".gif"}
)


#: Default output names (``photo.veiled.jpg``, ``photo.cloaked.jpg``): files
#: named so are skipped when a folder is read, so a second run over a folder
#: does not process the first run's outputs.
OWN_OUTPUT_SUFFIXES = (".veiled", ".cloaked")


# --------------------------------------------------------------------------
# Argument types: each gives a usage error (exit 2) with a clear message
# --------------------------------------------------------------------------


def _number(kind: type, low: float, high: float, *, low_open: bool = False, what: str = "") -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        bad = isinstance(value, float) and not math.isfinite(value)
        if bad or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {what or f'{low:g} to {high:g}'}")
        return value

    return parse


def _numbers(text: str, count: Sequence[int], what: str) -> Tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in count:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    if not all(abs(v) <= _MAX_COORDINATE for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: pixel values must be within +-{_MAX_COORDINATE:,}")
    return values


# Far beyond any photo; keeps every later sum and product finite and in range.
_MAX_COORDINATE = 2**31 - 1


def _region_arg(text: str) -> Tuple[float, float, float, float]:
    values = _numbers(text, (4,), "a box L,T,W,H in pixels (e.g. 10,20,200,150)")
    if values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be > 0")
    return values  # type: ignore[return-value]


def _keep_arg(text: str):
    if text.strip().isdigit():
        return int(text)
    values = _numbers(text, (2, 4), "a face index, a point X,Y or a box L,T,W,H")
    if len(values) == 4 and (values[2] <= 0 or values[3] <= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be > 0")
    return values


def _color_arg(text: str) -> Tuple[int, int, int]:
    raw = text.strip()
    if raw.startswith("#") and len(raw) == 7:
        try:
            return tuple(int(raw[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            pass
    else:
        try:
            values = [int(p) for p in raw.split(",")]
        except ValueError:
            values = []
        if len(values) == 1:
            values *= 3
        if len(values) == 3 and all(0 <= v <= 255 for v in values):
            return tuple(values)  # type: ignore[return-value]
    raise argparse.ArgumentTypeError(f"{text!r} is not a colour: use R,G,B (0-255), one grey level, or #rrggbb")


def _max_side_arg(text: str) -> int:
    value = _number(int, 64, 100_000)(text)
    if value % 32:
        raise argparse.ArgumentTypeError(f"{text} must be a multiple of 32")
    return int(value)


# --------------------------------------------------------------------------
# The shared options
# --------------------------------------------------------------------------


def _check_output_choice(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    given = (("-o/--output", args.output), ("--out-dir", args.out_dir), ("--in-place", args.in_place))
    chosen = [name for name, on in given if on]
    if len(chosen) > 1:
        parser.error(f"{' and '.join(chosen)} cannot be used together")
    if args.output and (len(args.inputs) != 1 or Path(args.inputs[0]).is_dir()):
        parser.error("-o/--output takes exactly one input file; use --out-dir for several")
    if getattr(args, "command", "blur") != "blur":
        # Commands that read photos with io.load_image directly (veil cloak)
        # have no stdin/stdout or damaged-file path yet: say so instead of
        # writing a file named "-" or ignoring the flag.
        if STDIO in args.inputs or args.output == STDIO:
            parser.error(f"veil {args.command} does not read stdin or write stdout (-); name files")
        if getattr(args, "allow_damaged", False):
            parser.error(f"--allow-damaged is for veil blur and veil detect, not veil {args.command}")
    if STDIO in args.inputs and not args.output:
        parser.error("reading a photo from stdin (-) needs -o OUT or -o - (stdout)")
    if args.in_place and STDIO in args.inputs:
        parser.error("--in-place cannot replace stdin")
    if args.output == STDIO:
        if getattr(args, "json", False):
            parser.error("-o - writes the photo to stdout, so --json cannot use it too")
    elif args.output:
        try:
            OutputPlanner._format_for(Path(args.output), None, args.format.upper() if args.format else None)
        except ValueError as exc:
            parser.error(str(exc))


#: The name that means stdin (as an input) or stdout (as ``-o -``).
STDIO = "-"


def _photo_options() -> argparse.ArgumentParser:
    """Inputs, batch and report options shared by every photo subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photo files or folders of photos")
    p.add_argument("-r", "--recursive", action="store_true", help="also read photos in subfolders of folders given")
    p.add_argument(
        "-j", "--jobs", type=_number(int, 1, 256), default=1, metavar="N",
        help="photos processed at once, on threads (default: %(default)s; each photo already uses every core)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout (messages still go to stderr)")
    p.add_argument(
        "--max-memory-mb", type=_number(float, 1, 2**40, what="a positive number of MiB"), default=None, metavar="MIB",
        help="refuse, before decoding, a photo whose processing would need more memory than this (default: "
        "$VEIL_MAX_DECODE_MB, else 2048: about 100 megapixels; with --jobs N the peak is about 800 MB + N x MIB)",
    )
    p.add_argument(
        "--allow-damaged", action="store_true",
        help="read truncated or damaged photos as far as their data goes (the rest comes out grey or black) "
        "instead of refusing them; the report and stderr say which",
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: on for several photos when stderr is a terminal)",
    )
    return p


def _detector_options() -> argparse.ArgumentParser:
    from . import detect  # light: onnxruntime loads on first detection

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("face detection")
    g.add_argument(
        "--threshold", type=_number(float, 0.0, 1.0), default=detect.DEFAULT_THRESHOLD, metavar="SCORE",
        help="lowest face score kept, 0-1; lower finds more faces and more false ones (default: %(default)s)",
    )
    g.add_argument(
        "--max-side", type=_max_side_arg, default=detect.DEFAULT_MAX_SIDE_PX, metavar="PX", dest="max_side_px",
        help="the photo is searched shrunk to this longer side (and mirrored and turned), then at twice "
        "that size and in full-resolution tiles for small faces; a multiple of 32 (default: %(default)s)",
    )
    g.add_argument(
        "--no-tiles", dest="tiles", action="store_false", help="skip the fine pass at twice the size and the full-resolution tiles (faster, misses small faces)"
    )
    return p


def _output_options() -> argparse.ArgumentParser:
    """Where and how photos are written, shared by every writing subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output (an input is never replaced unless --in-place is given)")
    # (Checked by _check_output_choice: argparse loses a mutually exclusive
    # group's place in the help when it comes from a parent parser.)
    g.add_argument("-o", "--output", metavar="OUT", help="output file (one input only; the extension picks the format)")
    g.add_argument(
        "--out-dir", metavar="DIR",
        help="write outputs into DIR under the inputs' own names (subfolders kept); created if missing",
    )
    g.add_argument("--in-place", action="store_true", help="replace each input with its anonymized version")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files (never inputs)")
    g.add_argument(
        "--format", choices=("jpeg", "png", "webp", "tiff", "bmp"), type=str.lower,
        help="output format (default: the input's; HEIC/AVIF become JPEG, GIF becomes PNG)",
    )
    g.add_argument(
        "--quality", type=_number(int, 1, 100), default=90, metavar="Q",
        help="JPEG/WebP quality 1-100 (default: %(default)s)",
    )
    return p


# --------------------------------------------------------------------------
# Inputs, outputs and the batch runner
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One input photo: its path, its path relative to the folder it was
    found in (for ``--out-dir``), and how to name it in messages."""

    path: Path
    relative: Path
    label: str


def collect_inputs(inputs: Sequence[str], recursive: bool) -> Tuple[List[Job], List[dict]]:
    """Expands folders into photos. Returns (jobs, failures): a missing path
    or a folder without photos is a failure, reported like a failed photo."""
    jobs: List[Job] = []
    failures: List[dict] = []
    seen = set()

    def add(path: Path, relative: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path, relative, label_for(path)))

    for text in inputs:
        if text == STDIO:
            if STDIO not in seen:
                seen.add(STDIO)
                jobs.append(Job(Path(STDIO), Path("stdin"), "- (stdin)"))
            continue
        path = Path(text)
        if path.is_dir():
            pattern = path.rglob("*") if recursive else path.iterdir()
            found = []
            for item in pattern:
                rel = item.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue  # hidden files and folders, veil's own temporary files
                if not item.is_file() or item.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if Path(item.stem).suffix in OWN_OUTPUT_SUFFIXES:
                    continue  # veil's own outputs from an earlier run
                found.append((item, rel))
            if not found:
                hint = "" if recursive else " (use --recursive for subfolders)"
                failures.append({"input": label_for(text), "error": f"no photos found in folder{hint}"})
            for item, rel in sorted(found):
                add(item, rel)
        elif path.exists():
            add(path, Path(path.name))
        else:
            failures.append({"input": label_for(text), "error": "no such file or folder"})
    return jobs, failures


def label_for(path) -> str:
    """How a path is named in messages and reports: always printable, and
    lossless (undecodable bytes of the name appear as ``\\xNN``)."""
    from .io import describe_path

    return describe_path(path)


def read_photo(source, label: str, args: argparse.Namespace):
    """Load one photo (a path or a binary file object) with the run's decode
    budget and damage policy; ``-`` reads all of stdin."""
    from . import io

    options = {"max_memory_mb": getattr(args, "max_memory_mb", None), "allow_damaged": getattr(args, "allow_damaged", False)}
    if isinstance(source, (str, Path)) and str(source) == STDIO and label.startswith(STDIO):
        return io.load_image(sys.stdin.buffer.read(), **options)
    return io.load_image(source, **options)


def damage_warning(loaded) -> Optional[str]:
    from .io import _DAMAGED_NOTE

    return "damaged file read as far as its data goes (--allow-damaged)" if _DAMAGED_NOTE in loaded.notes else None


class OutputPlanner:
    """Decides each output path from the output options, and refuses the
    unsafe ones (replacing an input, an existing file, two inputs writing the
    same output). Thread-safe."""

    def __init__(self, args: argparse.Namespace, inputs: Sequence[Job]) -> None:
        self.args = args
        self._lock = threading.Lock()
        self._claimed: set = set()
        self._inputs = {os.path.realpath(j.path) for j in inputs if j.label != "- (stdin)"}
        self._made: List[Path] = []

    def target(self, job: Job, input_format: Optional[str]) -> Tuple[Path, str]:
        from . import io
        from .anonymize import default_output_path

        args = self.args
        wanted = args.format.upper() if args.format else None
        if args.output == STDIO:
            return Path(STDIO), wanted or io.output_format_for(input_format)
        if args.output:
            path = Path(args.output)
            fmt = self._format_for(path, input_format, wanted)
        elif args.in_place:
            path = job.path
            try:
                # The name's extension decides; a name without one keeps the content's format.
                fmt = io.output_format_for(input_format, path)
            except ValueError:
                raise ValueError(
                    f"veil cannot write {path.suffix} files, so --in-place is impossible; use --out-dir"
                ) from None
            if wanted and wanted != fmt:
                raise ValueError(
                    f"--in-place keeps the file name, which says {fmt}; --format {args.format} contradicts it"
                )
        elif args.out_dir:
            fmt = wanted or io.output_format_for(input_format)
            rel = job.relative
            own = io.output_format_for(None, rel) if rel.suffix.lower() in _WRITABLE_SUFFIXES else None
            if own != fmt:
                rel = rel.with_suffix(io.extension_for(fmt))
            path = Path(args.out_dir) / rel
        else:
            fmt = wanted or io.output_format_for(input_format)
            path = default_output_path(job.path, fmt)

        real = os.path.realpath(path)
        shown = label_for(path)
        if real in self._inputs and not args.in_place:
            raise FileExistsError(f"{shown} is an input; refusing to replace it (use --in-place to mean it)")
        with self._lock:
            # Checked first, so that --overwrite cannot let one photo's output
            # replace another's from the same batch.
            if real in self._claimed:
                raise FileExistsError(f"{shown} is also the output of another input in this batch")
            self._claimed.add(real)
        if os.path.lexists(path) and not (args.overwrite or args.in_place):
            raise FileExistsError(f"{shown} already exists; use --overwrite to replace it, or --out-dir")
        return path, fmt

    # Folders made for outputs, so that a run that fails can take back the
    # empty ones it made.
    def make_folder(self, folder: Path) -> None:
        missing = []
        probe = folder
        while str(probe) not in ("", ".") and not os.path.lexists(probe):
            missing.append(probe)
            probe = probe.parent
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._made.extend(missing)

    def remove_empty_folders(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for folder in sorted(set(made), key=lambda p: len(p.parts), reverse=True):
            try:
                os.rmdir(folder)
            except OSError:
                pass  # not empty: it holds an output (or something else)

    @staticmethod
    def _format_for(path: Path, input_format: Optional[str], wanted: Optional[str]) -> str:
        from . import io

        if path.suffix.lower() in _WRITABLE_SUFFIXES:
            fmt = io.output_format_for(input_format, path)
            if wanted and wanted != fmt:
                raise ValueError(f"--format {wanted.lower()} contradicts the output name {path.name} ({fmt})")
            return fmt
        io.output_format_for(None, path)  # raises for .heic, .gif, ...
        return wanted or io.output_format_for(input_format)


_WRITABLE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp")


class Console:
    """Messages to stderr that do not tear the progress bar."""

    def __init__(self) -> None:
        self.bar = None
        self._lock = threading.Lock()

    def say(self, text: str, *, stream=None) -> None:
        stream = stream or sys.stderr
        with self._lock:
            try:
                if self.bar is not None:
                    self.bar.write(text, file=stream)  # clears the bar, writes, redraws it
                else:
                    print(text, file=stream, flush=True)
            except UnicodeEncodeError:
                # A stream that cannot show some character: say it escaped
                # rather than lose the message (or fail the photo it is about).
                encoding = getattr(stream, "encoding", None) or "ascii"
                safe = text.encode(encoding, "backslashreplace").decode(encoding, "replace")
                print(safe, file=stream, flush=True)
            except (BrokenPipeError, ValueError):
                pass  # the reader went away; the exit code still tells


def describe_error(exc: BaseException) -> str:
    """One line a user can act on."""
    from .io import ImageError

    if isinstance(exc, (ImageError, FileExistsError, ValueError, TypeError)):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {label_for(exc.filename) if exc.filename else exc}"
    if isinstance(exc, OSError):
        return f"cannot write: {exc.strerror or exc}" + (f" ({label_for(exc.filename)})" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def run_batch(
    jobs: Sequence[Job],
    work: Callable[[Job], dict],
    *,
    workers: int,
    progress: Optional[bool],
    console: Console,
) -> List[dict]:
    """Runs ``work`` on every job, ``workers`` at a time; a job that raises
    becomes ``{"input", "status": "failed", "error"}`` and the rest go on.
    Results come back in input order."""
    show = progress if progress is not None else (len(jobs) > 1 and sys.stderr.isatty())
    results: List[Optional[dict]] = [None] * len(jobs)

    def one(i: int) -> None:
        job = jobs[i]
        try:
            record = work(job)
            record.setdefault("status", "done")
        except Exception as exc:  # a bad photo fails alone
            record = {"input": job.label, "status": "failed", "error": describe_error(exc)}
            console.say(f"veil: {job.label}: {record['error']}")
        results[i] = record
        if console.bar is not None:
            console.bar.update(1)

    if show and jobs:
        from tqdm import tqdm

        console.bar = tqdm(total=len(jobs), file=sys.stderr, unit="photo", dynamic_ncols=True)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i in range(len(jobs)):
                one(i)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="veil") as pool:
                for future in [pool.submit(one, i) for i in range(len(jobs))]:
                    future.result()
    finally:
        if console.bar is not None:
            console.bar.close()
            console.bar = None
    return [r for r in results if r is not None]


def finish(command: str, args: argparse.Namespace, settings: dict, records: List[dict], console: Console) -> int:
    """Prints the JSON report (``--json``) and the summary; the exit code."""
    from . import __version__

    failed = [r for r in records if r.get("status") == "failed"]
    done = len(records) - len(failed)
    no_faces = sum(1 for r in records if r.get("status") != "failed" and not r.get("faces"))
    if args.json:
        report = {
            "veil": __version__,
            "command": command,
            "settings": settings,
            "files": records,
            "failed": [{"input": r["input"], "error": r["error"]} for r in failed],
            "summary": {"files": len(records), "done": done, "failed": len(failed), "no_faces": no_faces},
        }
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    if len(records) > 1 or failed:
        without = f", {no_faces} without faces" if no_faces else ""
        console.say(f"veil {command}: {done} done, {len(failed)} failed{without}")
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------
# veil blur
# --------------------------------------------------------------------------

_BLUR_HELP = """\
Find every face in each photo, make it unrecognizable, and write a copy
without metadata (no EXIF, GPS, XMP, IPTC, comments, thumbnails, trailing data;
EXIF orientation applied to the pixels first).

The default covers each face with a solid ellipse: in veil's measurements it
was the only method that neither an independent face recognizer nor the face
detector could see through (blur and pixelation can be partly reversed).
For --method pixelate, gaussian_blur or box_blur, strength is relative to each
face: the block side, the standard deviation or the radius is STRENGTH x the
face size, the larger side of the face box grown by --mask-scale. --noise
LEVELS adds seeded noise on top.

When no face is found, the copy is still written (metadata removed) and the
message says so; --require-faces makes that a failure instead.

Reads JPEG (and MPO), PNG, WebP, TIFF, BMP, GIF, HEIC/HEIF and AVIF, from
regular files or stdin (-); every other format is refused. A truncated or
corrupt photo is an error and nothing is written (--allow-damaged writes
what there is, with a warning); so is one whose decoding would take more
than --max-memory-mb, refused before decoding.
"""

_BLUR_EPILOG = """\
outputs:
  by default  photo.jpg -> photo.veiled.jpg beside it (never replaces a file)
  -o OUT      one input, written to OUT
  --out-dir   same names, in another folder (subfolders kept)
  --in-place  replace the inputs themselves

examples:
  veil blur photo.jpg                      writes photo.veiled.jpg
  veil blur IMG_0042.HEIC -o safe.jpg      HEIC in, JPEG out
  veil blur trip/ -r --out-dir safe/ -j 2  a folder tree, two photos at once
  veil blur photo.jpg --method pixelate --strength 0.3   coarse mosaic instead
  veil blur photo.jpg --keep 0             leave face 0 visible (see: veil detect)
  veil blur photo.jpg --keep 512,300       leave the face at pixel (512, 300) visible
  veil blur photo.jpg --add-region 40,60,120,80   also cover a name tag
  veil blur photos/ --json > report.json
  cat photo.jpg | veil blur - -o - > safe.jpg   stdin to stdout
  veil blur photo.jpg --add-region -10,20,80,60   negative values need no '='

exit codes: 0 every photo written, 1 any photo failed (the others are still
written), 2 usage error.
"""


def _add_blur(sub: argparse._SubParsersAction) -> None:
    a = importlib.import_module(".anonymize", __package__)  # not `from . import`: veil.anonymize is the function

    p = sub.add_parser(
        "blur",
        parents=[_photo_options(), _output_options(), _detector_options()],
        help="anonymize the faces in photos",
        description=_BLUR_HELP,
        epilog=_BLUR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("how faces are covered")
    g.add_argument(
        "--method", choices=a.METHODS, default=a.DEFAULT_METHOD, type=lambda s: s.strip().lower().replace("-", "_"),
        help="pixelate (block means), gaussian_blur, box_blur, or fill (solid --color) (default: %(default)s)",
    )
    g.add_argument(
        "--strength", type=_number(float, 0.0, 1.0, low_open=True, what="above 0, at most 1"),
        default=a.DEFAULT_STRENGTH, metavar="FRACTION",
        help="block/sigma/radius as a fraction of the face size, 0-1 (default: %(default)s)",
    )
    g.add_argument(
        "--noise", type=_number(int, 0, 255), default=a.DEFAULT_NOISE, metavar="LEVELS",
        help="uniform noise +-LEVELS added after the method, 0 = off (default: %(default)s)",
    )
    g.add_argument("--shape", choices=a.SHAPES, default=a.DEFAULT_SHAPE, help="mask shape (default: %(default)s)")
    g.add_argument(
        "--mask-scale", type=_number(float, 1.0, a.MAX_MASK_SCALE), default=a.DEFAULT_MASK_SCALE, metavar="X",
        help=f"grow each face box by X, 1-{a.MAX_MASK_SCALE:g} (default: %(default)s)",
    )
    feather = g.add_mutually_exclusive_group()
    feather.add_argument(
        "--feather", type=_number(float, 0.0, 1.0), default=None, metavar="FRACTION",
        help=f"soft edge beyond the mask, as a fraction of the face size (default: {a.DEFAULT_FEATHER})",
    )
    feather.add_argument(
        "--feather-px", type=_number(float, 0.0, a.MAX_FEATHER_PX), default=None, metavar="PX",
        help="soft edge in pixels instead",
    )
    g.add_argument(
        "--color", type=_color_arg, default=a.DEFAULT_COLOR, metavar="R,G,B",
        help="fill colour for --method fill: R,G,B, a grey level or #rrggbb (default: 0,0,0)",
    )
    g.add_argument("--seed", type=_number(int, 0, 2**64 - 1), default=0, help="noise seed (default: %(default)s)")
    g.add_argument(
        "--add-region", type=_region_arg, action="append", default=[], metavar="L,T,W,H",
        help="also cover this box (left,top,width,height in pixels of the upright photo); repeatable",
    )
    g.add_argument(
        "--keep", type=_keep_arg, action="append", default=[], metavar="INDEX|X,Y|L,T,W,H",
        help="leave a face visible: its index from `veil detect`, a point inside it, or a box holding at "
        "least half of it; repeatable. A --keep that matches no face fails that photo (nothing written)",
    )
    g.add_argument(
        "--require-faces", action="store_true", help="fail (write nothing) for a photo where no face is found"
    )
    g = p.add_argument_group("many photos, many machines (needs the extra: pip install 'veil[ray]')")
    g.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="run on a Ray cluster (ADDRESS, e.g. ray://head:10001; default: RAY_ADDRESS, else one started "
        "here by `ray start`, else a new local one); needs --out-dir on a folder every node sees; "
        "a rerun skips complete outputs",
    )
    g.add_argument(
        "--ray-actors", type=_number(int, 1, 100_000), default=None, metavar="N",
        help="size of the Ray actor pool (default: one per GPU if the cluster has GPUs, else one per CPU)",
    )
    from .video import add_blur_options  # videos: veil.video (PyAV is imported only when a video is read)

    add_blur_options(p)
    p.set_defaults(run=_run_blur, subparser=p)


def _ray_address_given(argv: List[str]) -> List[str]:
    """``--ray`` takes an optional ADDRESS; a photo named after it is not one."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        nxt = out[i + 1]
        if arg == "--ray" and not (nxt in ("auto", "local") or "://" in nxt or re.fullmatch(r"[\w.-]+:\d+", nxt)):
            out[i] = "--ray="
    return out


def _blur_settings(args: argparse.Namespace) -> dict:
    return {
        "method": args.method,
        "strength": args.strength,
        "noise": args.noise,
        "shape": args.shape,
        "mask_scale": args.mask_scale,
        "feather": args.feather,
        "feather_px": args.feather_px,
        "color": list(args.color),
        "seed": args.seed,
        "add_regions": [list(r) for r in args.add_region],
        "keep": [k if isinstance(k, int) else list(k) for k in args.keep],
        "threshold": args.threshold,
        "max_side_px": args.max_side_px,
        "tiles": args.tiles,
        "require_faces": args.require_faces,
    }


def blur_one(
    source,
    label: str,
    args: argparse.Namespace,
    place: Callable[[Optional[str]], Tuple[Path, str]],
    *,
    make_folder: Optional[Callable[[Path], None]] = None,
):
    """One photo through ``veil blur``: decode ``source`` (a path, ``-`` for
    stdin, or a named binary file object; ``label`` names it in the record),
    ask ``place(input_format)`` for the output path and format (it raises to
    refuse), cover the faces, and write atomically (or to stdout for
    ``-o -``). Returns (report record, :class:`AnonymizationReport`, the
    output path, the messages to print as ``(text, stream)``). The command
    and :mod:`veil.ray` both call it, so both write the same bytes."""
    from . import io
    from .anonymize import anonymize_with_report

    loaded = read_photo(source, label, args)
    target, fmt = place(loaded.format)  # refuse before the slow part
    result, report = anonymize_with_report(
        loaded.pixels,
        method=args.method, strength=args.strength, noise=args.noise, shape=args.shape,
        mask_scale=args.mask_scale, feather=args.feather, feather_px=args.feather_px, color=args.color,
        add_regions=args.add_region, keep=args.keep, seed=args.seed,
        threshold=args.threshold, max_side_px=args.max_side_px, tiles=args.tiles,
    )
    if not report.faces and args.require_faces:
        raise ValueError("no face found (--require-faces); nothing written")
    to_stdout = str(target) == STDIO and getattr(args, "output", None) == STDIO
    shown = "stdout" if to_stdout else label_for(target)
    # Everything that can fail, other than the write itself, is done before
    # it: after the write, a failure would report as failed a photo that was
    # written.
    summary = report.to_dict()
    record = {
        "input": label,
        "status": "done",
        "output": "-" if to_stdout else shown,
        "format": fmt,
        "width": summary["width"],
        "height": summary["height"],
        "faces": summary["faces"],
        "regions": summary["regions"],
        "method": report.method,
        "strength": report.strength,
        "noise": report.noise,
        "notes": summary["notes"],
        "warnings": [],
    }
    messages = []
    damaged = damage_warning(loaded)
    if damaged:
        record["warnings"].append(damaged)
        messages.append((f"veil: {label}: {damaged}; wrote {shown}", sys.stderr))
    for text in _clamped_strength_warnings(report):
        record["warnings"].append(text)
        messages.append((f"veil: {label}: {text}", sys.stderr))
    if not report.faces:
        record["warnings"].append("no face found; only the metadata was removed")
        messages.append((f"veil: {label}: no face found; wrote {shown} with only its metadata removed", sys.stderr))
    if not args.json:
        n, k = len(report.faces), len(report.kept)
        kept = f", {k} kept visible" if k else ""
        extra = f", {len(args.add_region)} added region(s)" if args.add_region else ""
        faces = f"{n} face{'s' if n != 1 else ''}"
        line = f"{label} -> {shown} ({faces}{kept}{extra}; {report.method})"
        messages.append((line, sys.stderr if to_stdout else sys.stdout))
    if to_stdout:
        data = io.encode_image(result, fmt, quality=args.quality)
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
    else:
        if target.parent != Path("") and not target.parent.exists():
            (make_folder or (lambda folder: folder.mkdir(parents=True, exist_ok=True)))(target.parent)
        io.save_image(result, target, format=fmt, quality=args.quality, overwrite=args.overwrite or args.in_place)
    return record, report, target, messages


def _run_blur(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import video

    if args.ray is not None:
        try:
            from .ray import run_from_command
        except ImportError as exc:
            parser.error(f"--ray needs Ray: pip install 'veil[ray]' ({exc})")
        return run_from_command(args, parser)
    _check_output_choice(args, parser)
    jobs, failures = collect_inputs(args.inputs, args.recursive)
    console = Console()
    for f in failures:
        console.say(f"veil: {f['input']}: {f['error']}")
    planner = OutputPlanner(args, jobs)

    def work(job: Job) -> dict:
        if video.is_video_path(job.path):
            return video.blur_job(job, args, console)
        record, _, _, messages = blur_one(
            job.path, job.label, args, lambda input_format: planner.target(job, input_format),
            make_folder=planner.make_folder,
        )
        for text, stream in messages:
            console.say(text, stream=stream)
        return record

    records = failures_as_records(failures)
    try:
        records += run_batch(jobs, work, workers=args.jobs, progress=args.progress, console=console)
    finally:
        planner.remove_empty_folders()
    return finish("blur", args, _blur_settings(args), records, console)


def _clamped_strength_warnings(report) -> List[str]:
    """Say when --strength was too small for a face and veil used its
    minimum instead (the minimum keeps a face covered; silently changing
    what the user asked for would not be honest)."""
    from . import anonymize as a

    minimum = {"pixelate": ("block_px", a.MIN_BLOCK_PX), "box_blur": ("radius_px", a.MIN_RADIUS_PX),
               "gaussian_blur": ("sigma_px", a.MIN_SIGMA_PX)}.get(report.method)
    if minimum is None:
        return []
    key, floor = minimum
    def asked(size: float) -> float:
        length = report.strength * size
        return length if key == "sigma_px" else math.ceil(length)

    raised = [r for r in report.regions if r.params.get(key) == floor and asked(r.size_px) < floor]
    if not raised:
        return []
    return [
        f"--strength {report.strength:g} is below veil's minimum for {len(raised)} region(s); "
        f"used {key.replace('_px', '')} {floor:g} px there"
    ]


def failures_as_records(failures: Sequence[dict]) -> List[dict]:
    return [{"input": f["input"], "status": "failed", "error": f["error"]} for f in failures]


# --------------------------------------------------------------------------
# veil detect
# --------------------------------------------------------------------------

_DETECT_HELP = """\
Find the faces in each photo and list them: index, box (left, top, right,
bottom in pixels of the upright photo), score. The indices are the ones
`veil blur --keep INDEX` takes (same detection settings, same order: best
score first). Nothing is changed or written, except --preview.
"""

_DETECT_EPILOG = """\
examples:
  veil detect photo.jpg
  veil detect photo.jpg --preview faces.png   boxes and indices drawn on a copy
  veil detect photos/ -r --json > faces.json

The preview shows the faces UNCOVERED (it is for checking detection, not for
sharing); it carries no metadata.

exit codes: 0 every photo read, 1 any photo failed, 2 usage error.
"""


def _add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        parents=[_photo_options(), _detector_options()],
        help="list the faces found in photos",
        description=_DETECT_HELP,
        epilog=_DETECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preview", metavar="OUT.png", help="write a copy with the face boxes drawn (one input only)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing preview file")
    p.set_defaults(run=_run_detect, subparser=p)


def _run_detect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import io
    from .detect import detect_faces

    if args.preview and (len(args.inputs) != 1 or Path(args.inputs[0]).is_dir()):
        parser.error("--preview takes exactly one input file")
    jobs, failures = collect_inputs(args.inputs, args.recursive)
    console = Console()
    for f in failures:
        console.say(f"veil: {f['input']}: {f['error']}")
    inputs = {os.path.realpath(j.path) for j in jobs}

    def work(job: Job) -> dict:
        loaded = read_photo(job.path, job.label, args)
        faces = detect_faces(loaded.pixels, threshold=args.threshold, max_side_px=args.max_side_px, tiles=args.tiles)
        record = {
            "input": job.label,
            "status": "done",
            "width": loaded.width,
            "height": loaded.height,
            "faces": [
                {
                    "index": i,
                    "box": [round(v, 2) for v in f.box],
                    "score": round(f.score, 4),
                    "landmarks": [[round(x, 2), round(y, 2)] for x, y in f.landmarks],
                }
                for i, f in enumerate(faces)
            ],
            "notes": list(loaded.notes),
        }
        if args.preview:
            target = Path(args.preview)
            if os.path.realpath(target) in inputs:
                raise FileExistsError(f"{target} is an input; refusing to replace it with a preview")
            io.save_image(_draw_preview(loaded.pixels, faces), target, overwrite=args.overwrite)
            record["preview"] = str(target)
        if not faces:
            console.say(f"veil: {job.label}: no face found")
        if not args.json:
            lines = [f"{job.label}: {len(faces)} face{'s' if len(faces) != 1 else ''} ({loaded.width}x{loaded.height})"]
            for i, f in enumerate(faces):
                l, t, r, b = f.box
                lines.append(f"  {i:3d}  box {l:7.1f} {t:7.1f} {r:7.1f} {b:7.1f}  score {f.score:.2f}")
            console.say("\n".join(lines), stream=sys.stdout)
        return record

    records = failures_as_records(failures)
    records += run_batch(jobs, work, workers=args.jobs, progress=args.progress, console=console)
    settings = {"threshold": args.threshold, "max_side_px": args.max_side_px, "tiles": args.tiles}
    return finish("detect", args, settings, records, console)


def _draw_preview(pixels, faces):
    """A copy of the photo with each face's box and index drawn."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    rgb = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels[:, :, :3]
    im = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    draw = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 400))
    try:  # a label readable on a 12 MP photo (Pillow >= 10.1 scales its built-in font)
        font = ImageFont.load_default(size=max(11, round(max(im.size) / 70)))
    except TypeError:  # pragma: no cover - older Pillow
        font = ImageFont.load_default()
    for i, f in enumerate(faces):
        l, t, r, b = f.box
        draw.rectangle((l, t, r, b), outline=(255, 0, 64), width=width)
        label = f"{i} ({f.score:.2f})"
        tl = draw.textbbox((l, t), label, font=font)
        y = max(0, t - (tl[3] - tl[1]) - 2 * width)
        draw.rectangle((l, y, l + (tl[2] - tl[0]) + 2 * width, y + (tl[3] - tl[1]) + 2 * width), fill=(255, 0, 64))
        draw.text((l + width, y + width - (tl[1] - t)), label, fill=(255, 255, 255), font=font)
    return np.asarray(im)


# --------------------------------------------------------------------------
# veil web
# --------------------------------------------------------------------------


def _add_web(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web",
        help="serve the in-browser page (photos never leave the browser)",
        description="Serve veil's page on this machine. Everything happens in the browser; no photo is "
        "sent to this server or anywhere else.",
        epilog="example:\n  veil web            then open http://127.0.0.1:8000/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s: this machine only)")
    p.add_argument(
        "--port", type=_number(int, 0, 65535), default=8000, help="port, 0 picks a free one (default: %(default)s)"
    )
    p.add_argument("--root", default=None, help="folder of the built page (default: $VEIL_WEB_ROOT, else veil/_web in an installed package, else web/dist of the source checkout, built by `make web`)")
    p.set_defaults(run=_run_web, subparser=p)


def _run_web(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        from . import web
    except ImportError as exc:
        print(f"veil web: the page is not available in this install ({exc})", file=sys.stderr)
        return EXIT_FAILED
    try:
        web.serve(args.root, args.host, args.port)
    except FileNotFoundError as exc:
        print(f"veil web: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"veil web: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="veil",
        description="Find every face in a photo and make it unrecognizable; strip identifying metadata.",
        epilog="Run `veil COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"veil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_blur(sub)
    try:  # `veil cloak` ships in its own module (veil.cli_cloak)
        from . import cli_cloak
    except ImportError:
        cli_cloak = None
    if cli_cloak is not None:
        cli_cloak.add_parser(sub)
    _add_detect(sub)
    _add_web(sub)
    # A value such as "-10,20,50,50" (--add-region, --keep) is a value, not an
    # option: argparse only knows plain negative numbers.
    for command in [parser, *sub.choices.values()]:
        command._negative_number_matcher = _NEGATIVE_VALUES
    return parser


_NEGATIVE_VALUES = re.compile(r"^-(\d|\.\d)[\d.,eE+-]*$")


def _quiet_library_warnings() -> None:
    """Library warnings (Pillow on odd EXIF, libtiff on unknown tags) become
    one line each on stderr, said once, instead of multi-line tracebacks."""
    import warnings

    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        try:
            print(f"veil: warning: {text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass

    warnings.showwarning = show


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``veil`` with ``argv`` (default: the command line); returns the
    exit code (0 done, 1 some photos failed, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(_ray_address_given(sys.argv[1:] if argv is None else list(argv)))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from . import io

    for check, env in ((io._resolve_max_pixels, io.MAX_PIXELS_ENV), (io._resolve_max_decode_mb, io.MAX_DECODE_MB_ENV)):
        try:
            check(None)
        except ValueError as exc:
            args.subparser.error(f"{exc} (environment variable {env})")
    _quiet_library_warnings()
    budget = getattr(args, "max_memory_mb", None)
    saved = os.environ.get(io.MAX_DECODE_MB_ENV)
    if budget is not None:
        # Every loader in this run honours it, including subcommands that
        # call io.load_image themselves.
        os.environ[io.MAX_DECODE_MB_ENV] = repr(float(budget))
    try:
        return args.run(args, args.subparser)
    except KeyboardInterrupt:
        print("veil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if budget is not None:
            if saved is None:
                os.environ.pop(io.MAX_DECODE_MB_ENV, None)
            else:
                os.environ[io.MAX_DECODE_MB_ENV] = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
