"""``veil blur`` over a Ray cluster: many photos, many machines.

:func:`anonymize_dataset` (and ``veil blur --ray [ADDRESS] INPUT... --out-dir
DIR``) runs a Ray Data pipeline: the inputs become a dataset of file names,
an actor pool reads each file's bytes and anonymizes it, and the driver
collects one report row per file (written as JSON lines). Each actor builds
its onnxruntime session once, in its constructor, and asks Ray for a GPU
when the cluster has one (onnxruntime then picks its GPU provider, when the
workers have the GPU build of onnxruntime).

Every guarantee of the command holds per file, because each file goes
through the command's own per-file function (:func:`veil.cli.blur_one`):
the same output bytes as ``veil blur`` with the same options, the metadata
scanner run on every output before it is written, atomic writes, and a
failed file is a report row with its reason, never a crash of the job.

Resuming. After each output is written, a small manifest entry
(``DIR.veil-ray/done/``, beside the output folder) records the input's sha256, the settings and the
output's sha256. A rerun skips a file whose output exists, matches its
entry, decodes fully and passes the metadata scanner; it removes the
temporary files an interrupted write left behind, and redoes the rest. An
output that exists without an entry (a kill between the write and the
entry) is adopted only if anonymizing the input again gives exactly its
bytes; otherwise it is refused like any existing file (``--overwrite``).

Outputs go to a local folder, which on a cluster must be one that every
node mounts at the same path (NFS, a shared disk); the manifest and the
report go beside it (:func:`state_dir`), so the output folder holds nothing
but anonymized photos. Inputs may be local or on any pyarrow filesystem
(``filesystem=``). Run one job per output folder at a time: a job removes
the temporary files it finds there when it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import io as _bytes_io
import json
import os
import re
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# A privacy tool does not report its use: Ray's usage statistics stay off
# unless the user turned them on (read when Ray is imported).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402  the Ray package (this module is veil.ray; imports are absolute)

__all__ = ["anonymize_dataset", "state_dir"]


def state_dir(out_dir: str) -> Path:
    """Where a run keeps its manifest, report and scratch space: beside the
    output folder (``OUT`` -> ``OUT.veil-ray``), never inside it, so that the
    folder of anonymized photos can be published as it is (the manifest
    names the inputs, and their names can identify)."""
    out = Path(os.path.abspath(out_dir))
    return out.parent / f"{out.name}.veil-ray"

#: A temporary file of :func:`veil.io.save_image` or of the manifest.
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.veil-tmp$")

#: The options of ``veil blur`` that :func:`anonymize_dataset` takes, by the
#: command's own names (``--add-region`` is ``add_region`` and so on).
_OPTIONS = (
    "method", "strength", "noise", "shape", "mask_scale", "feather", "feather_px", "color", "seed",
    "add_region", "keep", "threshold", "max_side_px", "tiles", "require_faces", "format", "quality",
    "overwrite", "recursive",
)


def blur_args(out_dir: str, **options: Any) -> argparse.Namespace:
    """The namespace ``veil blur ... --out-dir OUT_DIR`` would build, with
    ``options`` replacing the defaults (so the defaults are the command's)."""
    from .cli import build_parser

    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) for veil blur: {', '.join(unknown)}")
    args = build_parser().parse_args(["blur", "-", "--out-dir", os.fspath(out_dir)])
    for name, value in options.items():
        setattr(args, name, value)
    if isinstance(args.format, str):
        args.format = args.format.lower()
    args.color = tuple(args.color)
    return args


def _settings_digest(args: argparse.Namespace) -> str:
    from . import __version__
    from .cli import _blur_settings

    settings = dict(_blur_settings(args), format=args.format, quality=args.quality, veil=__version__)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def list_inputs(inputs: Sequence[str], recursive: bool, filesystem=None) -> Tuple[List[dict], List[dict]]:
    """Expands folders into photos, by the command's rules. Returns (rows,
    failures): rows are ``{"path", "relative", "label"}``."""
    from .cli import IMAGE_EXTENSIONS, OWN_OUTPUT_SUFFIXES, collect_inputs

    if filesystem is None:
        jobs, failures = collect_inputs(list(inputs), recursive)
        return [{"path": str(j.path), "relative": str(j.relative), "label": j.label} for j in jobs], failures

    from pyarrow import fs as pafs

    rows: List[dict] = []
    failures: List[dict] = []
    seen = set()
    for text in inputs:
        info = filesystem.get_file_info(text)
        if info.type == pafs.FileType.Directory:
            found = []
            for item in filesystem.get_file_info(pafs.FileSelector(text, recursive=recursive)):
                rel = Path(os.path.relpath(item.path, text))
                if item.type != pafs.FileType.File or any(p.startswith(".") for p in rel.parts):
                    continue
                if rel.suffix.lower() not in IMAGE_EXTENSIONS or Path(rel.stem).suffix in OWN_OUTPUT_SUFFIXES:
                    continue
                found.append((item.path, rel))
            if not found:
                hint = "" if recursive else " (use --recursive for subfolders)"
                failures.append({"input": text, "error": f"no photos found in folder{hint}"})
            for path, rel in sorted(found):
                if path not in seen:
                    seen.add(path)
                    rows.append({"path": path, "relative": str(rel), "label": path})
        elif info.type == pafs.FileType.File:
            if text not in seen:
                seen.add(text)
                rows.append({"path": text, "relative": Path(text).name, "label": text})
        else:
            failures.append({"input": text, "error": "no such file or folder"})
    return rows, failures


class _NamedBytes(_bytes_io.BytesIO):
    """File bytes that carry their path, so that :func:`veil.io.load_image`
    names the file in its messages exactly as when it opens the path."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def _read(path: str, filesystem) -> bytes:
    """A file's bytes; errors worded as :func:`veil.io.load_image` words them.
    A local path goes through veil.io's own opening, which reads only
    regular files (a FIFO would block an actor forever)."""
    from .io import _open_failure, _open_regular_file, describe_path

    name = repr(describe_path(path))
    if filesystem is None:
        with _open_regular_file(path, name) as f:
            return f.read()
    try:
        with filesystem.open_input_stream(path) as f:
            return f.read()
    except OSError as exc:
        raise _open_failure(exc, name) from None


# --------------------------------------------------------------------------
# The manifest: what a rerun may skip
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry_path(state: Path, label: str) -> Path:
    return state / "done" / f"{_sha256(label.encode())[:40]}.json"


def _write_text_atomically(text: str, target: Path) -> None:
    """Write ``text`` to ``target`` through a temporary file, fsync and
    rename, so a kill leaves the old file or the new one, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{secrets.token_hex(6)}.veil-tmp"
    try:
        with open(temp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_json_atomically(data: dict, target: Path) -> None:
    _write_text_atomically(json.dumps(data), target)


def _read_entry(path: Path) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
        return entry if isinstance(entry, dict) else None
    except (OSError, ValueError):
        return None  # missing or damaged: the file is simply redone


def output_is_complete(path: Path, sha256: Optional[str] = None) -> bool:
    """The output is there, has the bytes recorded (when ``sha256`` is
    given), decodes to the end, and the metadata scanner finds nothing."""
    from .io import ImageError, load_image, scan_metadata

    try:
        data = path.read_bytes()
    except OSError:
        return False
    if sha256 is not None and _sha256(data) != sha256:
        return False
    try:
        load_image(data)
    except (ImageError, ValueError):
        return False
    return scan_metadata(data) == []


def remove_stale_temporaries(out_dir: Path, state: Path) -> int:
    """Removes what interrupted writes left in ``out_dir`` and ``state``
    (temporary files of outputs and manifest entries, scratch copies).
    Returns how many."""
    import shutil

    removed = 0
    for top in (out_dir, state):
        for folder, dirs, names in os.walk(top):
            for name in names:
                if _TEMP_NAME.match(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
    scratch = state / "scratch"
    if scratch.exists():
        removed += sum(1 for p in scratch.rglob("*") if p.is_file())
        shutil.rmtree(scratch, ignore_errors=True)
    return removed


# --------------------------------------------------------------------------
# The actor
# --------------------------------------------------------------------------


class Anonymizer:
    """One actor of the pool: builds the detector session once, then takes
    batches of ``{"index", "path", "relative", "label"}`` rows and returns
    ``{"index", "record"}`` (the report record as JSON)."""

    def __init__(self, args: argparse.Namespace, inputs: Sequence[str], cwd: str, filesystem=None) -> None:
        from . import detect
        from .cli import Job, OutputPlanner

        # Relative paths mean what they meant where the job was started (a
        # Ray worker starts in a folder of Ray's own).
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.args = args
        self.state = state_dir(args.out_dir)
        self.filesystem = filesystem
        self.digest = _settings_digest(args)
        self.session = detect._session()  # onnxruntime, once per actor
        # Decides the output paths as the command does. It never sees the
        # existing files as a refusal (that decision is made here, where a
        # complete output of an earlier run can be told from a foreign one),
        # but it still refuses to replace an input.
        named = copy.copy(args)
        named.overwrite = True
        self.namer = OutputPlanner(named, [Job(Path(p), Path(p), p) for p in inputs])
        self.scratch = self.state / "scratch" / f"{os.getpid()}-{secrets.token_hex(4)}"

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        import numpy as np

        records = []
        for path, relative, label in zip(batch["path"], batch["relative"], batch["label"]):
            records.append(json.dumps(self.one(str(path), str(relative), str(label))))
        return {"index": np.asarray(batch["index"]), "record": np.asarray(records, dtype=object)}

    def one(self, path: str, relative: str, label: str) -> dict:
        from .cli import describe_error

        try:
            return self._one(path, relative, label)
        except Exception as exc:  # a bad photo fails alone, as in run_batch
            return {"input": label, "status": "failed", "error": describe_error(exc)}

    def _one(self, path: str, relative: str, label: str) -> dict:
        from .cli import Job, blur_one, label_for

        data = _read(path, self.filesystem)
        input_sha = _sha256(data)
        entry_path = _entry_path(self.state, label)
        entry = _read_entry(entry_path)
        if entry and entry.get("input_sha256") == input_sha and entry.get("settings") == self.digest:
            output = Path(entry.get("output", ""))
            if output_is_complete(output, entry.get("output_sha256")):
                return dict(entry["record"], resumed=True)
            # Ours (the entry says so) but damaged or gone: redo it.
            with contextlib.suppress(FileNotFoundError):
                output.unlink()
            with contextlib.suppress(FileNotFoundError):
                entry_path.unlink()

        job = Job(Path(path), Path(relative), label)
        existing: List[Path] = []

        def place(input_format: Optional[str]) -> Tuple[Path, str]:
            target, fmt = self.namer.target(job, input_format)
            if os.path.lexists(target) and not self.args.overwrite:
                # Written by someone else, or by us just before a kill: write
                # a scratch copy and compare.
                existing.append(target)
                return self.scratch / _sha256(label.encode())[:16] / target.name, fmt
            return target, fmt

        record, _, written, _ = blur_one(_NamedBytes(data, path), label, self.args, place)
        output = written
        if existing:
            target, scratch = existing[0], written
            try:
                same = scratch.read_bytes() == target.read_bytes()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    scratch.unlink()
            if not same:
                raise FileExistsError(f"{label_for(target)} already exists; use --overwrite to replace it, or --out-dir")
            record["output"] = label_for(target)
            output = target
        _write_json_atomically(
            {
                "input": label, "input_sha256": input_sha, "settings": self.digest,
                "output": str(output), "output_sha256": _sha256(output.read_bytes()), "record": record,
            },
            entry_path,
        )
        return record


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------


def _cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def _quiet_ray_deprecations(function):
    """Ray Data sets some of its own deprecated options internally; that must
    not fail a run under ``python -W error``."""

    @functools.wraps(function)
    def quiet(*args: Any, **kwargs: Any):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
            return function(*args, **kwargs)

    return quiet


@_quiet_ray_deprecations
def anonymize_dataset(
    paths_or_dataset: Any,
    out_dir: str,
    *,
    actors: Optional[int] = None,
    gpus: Optional[bool] = None,
    filesystem=None,
    address: Optional[str] = None,
    progress: Optional[bool] = None,
    report_path: Optional[str] = None,
    **options: Any,
) -> dict:
    """Anonymizes many photos on a Ray cluster, as ``veil blur --out-dir``.

    Args:
        paths_or_dataset: a path or a list of paths (files and folders, as
            for the command), or a Ray dataset with a ``path`` column (as
            ``ray.data.read_binary_files(..., include_paths=True)`` gives;
            its bytes are read again by the actors, so that a file that
            cannot be read is a report row, not a failed job).
        out_dir: the output folder (shared by all nodes on a cluster).
        actors: size of the actor pool (default: one per GPU when the
            cluster has GPUs, else one per CPU).
        gpus: give each actor a GPU (default: when the cluster has one).
        filesystem: a ``pyarrow.fs.FileSystem`` the inputs are on (default:
            local files).
        address: the Ray cluster to join when Ray is not yet started here
            (default: ``ray.init()``'s own choice: ``RAY_ADDRESS``, else a
            cluster started on this machine by ``ray start``, else a new one).
        progress: veil's progress bar on stderr (files done, failed, per
            second; default: when stderr is a terminal).
        report_path: where the JSON-lines report goes (default:
            ``OUT_DIR.veil-ray/report.jsonl``, see :func:`state_dir`).
        **options: ``veil blur``'s options by name (``method``, ``strength``,
            ``quality``, ``format``, ``overwrite``, ``recursive``, ...).

    Returns:
        The report of ``veil blur --json`` (``files`` in input order), with
        ``summary`` extended by ``resumed``, ``seconds`` and ``per_second``,
        and a ``ray`` section (actors, GPUs, stale files removed, report).
    """
    from . import __version__
    from .cli import _blur_settings, failures_as_records

    args = blur_args(out_dir, **options)
    out = Path(out_dir)
    if filesystem is None and isinstance(paths_or_dataset, (str, os.PathLike)):
        paths_or_dataset = [os.fspath(paths_or_dataset)]
    if isinstance(paths_or_dataset, ray.data.Dataset):
        rows = [
            {"path": r["path"], "relative": Path(r["path"]).name, "label": r["path"]}
            for r in paths_or_dataset.select_columns(["path"]).iter_rows()
        ]
        failures: List[dict] = []
    else:
        rows, failures = list_inputs(list(paths_or_dataset), args.recursive, filesystem)
    state = state_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state.mkdir(exist_ok=True)
    stale = remove_stale_temporaries(out, state)

    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    use_gpus = _cluster_gpus() > 0 if gpus is None else bool(gpus)
    if actors is None:
        actors = max(1, _cluster_gpus() if use_gpus else int(ray.cluster_resources().get("CPU", 1)))
    results: List[Optional[dict]] = [None] * len(rows)
    if rows:
        inputs = [os.path.realpath(r["path"]) for r in rows] if filesystem is None else []
        items = [dict(r, index=i) for i, r in enumerate(rows)]
        # One block per few files, so that the pool stays busy and a killed
        # actor costs little work.
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), actors * 32)))
        ds = ds.map_batches(
            Anonymizer,
            fn_constructor_kwargs={"args": args, "inputs": inputs, "cwd": os.getcwd(), "filesystem": filesystem},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=0 if use_gpus else 1,
            num_gpus=1 if use_gpus else 0,
        )
        show = progress if progress is not None else sys.stderr.isatty()
        bar = None
        context = ray.data.DataContext.get_current()
        ray_bars = context.enable_progress_bars
        if show:
            from tqdm import tqdm

            context.enable_progress_bars = False  # one bar: veil's (done, failed, photos/s)
            bar = tqdm(total=len(rows), file=sys.stderr, unit="photo", dynamic_ncols=True)
        failed = 0
        try:
            for row in ds.iter_rows():
                record = json.loads(row["record"])
                results[int(row["index"])] = record
                if record.get("status") == "failed":
                    failed += 1
                if bar is not None:
                    bar.set_postfix(failed=failed, refresh=False)
                    bar.update(1)
        finally:
            context.enable_progress_bars = ray_bars
            if bar is not None:
                bar.close()
    seconds = time.perf_counter() - started

    records = failures_as_records(failures) + [r for r in results if r is not None]
    failed_records = [r for r in records if r.get("status") == "failed"]
    report_file = Path(report_path) if report_path else state / "report.jsonl"
    _write_lines_atomically(records, report_file)
    done = len(records) - len(failed_records)
    return {
        "veil": __version__,
        "command": "blur",
        "settings": _blur_settings(args),
        "files": records,
        "failed": [{"input": r["input"], "error": r["error"]} for r in failed_records],
        "summary": {
            "files": len(records),
            "done": done,
            "failed": len(failed_records),
            "no_faces": sum(1 for r in records if r.get("status") != "failed" and not r.get("faces")),
            "resumed": sum(1 for r in records if r.get("resumed")),
            "seconds": round(seconds, 3),
            "per_second": round(len(rows) / seconds, 3) if seconds > 0 else None,
        },
        "ray": {"actors": actors, "gpus": use_gpus, "stale_removed": stale, "report": str(report_file)},
    }


def _write_lines_atomically(records: Iterable[dict], target: Path) -> None:
    _write_text_atomically("".join(json.dumps(r) + "\n" for r in records), target)


# --------------------------------------------------------------------------
# veil blur --ray
# --------------------------------------------------------------------------


def run_from_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``veil blur --ray``: the command's options, run by :func:`anonymize_dataset`."""
    from .cli import EXIT_FAILED, EXIT_OK, Console

    if args.output or args.in_place or not args.out_dir:
        parser.error("--ray writes into a folder: give --out-dir DIR (not -o or --in-place)")
    options = {name: getattr(args, name) for name in _OPTIONS}
    console = Console()
    try:
        report = anonymize_dataset(
            args.inputs, args.out_dir, actors=args.ray_actors, address=args.ray or None,
            progress=args.progress, **options,
        )
    except (ray.exceptions.RayError, ConnectionError, RuntimeError, TimeoutError) as exc:
        where = f" at {args.ray}" if args.ray else ""
        console.say(f"veil: the Ray job{where} failed: {exc}".rstrip())
        console.say("veil: outputs written so far are complete; run the same command again to finish the rest")
        return EXIT_FAILED
    for f in report["failed"]:
        console.say(f"veil: {f['input']}: {f['error']}")
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    s = report["summary"]
    resumed = f", {s['resumed']} already complete" if s["resumed"] else ""
    console.say(
        f"veil blur --ray: {s['done']} done{resumed}, {s['failed']} failed, "
        f"{s['per_second'] or 0:.2f} photos/s on {report['ray']['actors']} actor(s); "
        f"report: {report['ray']['report']}"
    )
    return EXIT_FAILED if s["failed"] else EXIT_OK
