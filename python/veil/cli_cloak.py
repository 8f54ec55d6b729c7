"""``veil cloak``: the cloaking subcommand, wired into :mod:`veil.cli` with

    from . import cli_cloak
    cli_cloak.add_parser(sub)

It shares ``veil blur``'s inputs, batch, output and report options and rules
(:mod:`veil.cli`): an input is never replaced unless ``--in-place`` is given,
outputs are written atomically without metadata, exit codes are 0 (every
photo written), 1 (any failed; the rest are still written), 2 (usage).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from . import cli as _cli

_HELP = """\
Change each photo imperceptibly so that face recognizers no longer match the
people in it to their other photos (cloaking, as Fawkes and LowKey do), and
write a copy without metadata.

Cloaking raises the cost of recognising someone; it is not a guarantee.
Newer recognizers, or ones trained on cloaked photos, can still match
(Radiya-Dixit & Tramer, ICLR 2022). To make a face unrecognizable for
certain, use `veil blur`.

Modes (largest change per pixel, SSIM floor of the face region, steps):
{modes}
Each face takes a few seconds on two cores (about twice that in `high`).
"""

_EPILOG = """\
outputs:
  by default  photo.jpg -> photo.cloaked.jpg beside it (never replaces a file)
  -o OUT      one input, written to OUT
  --out-dir   same names, in another folder (subfolders kept)
  --in-place  replace the inputs themselves

examples:
  veil cloak photo.jpg                     writes photo.cloaked.jpg
  veil cloak photo.jpg --mode high         stronger, more visible
  veil cloak group.jpg --face 0 --face 2   only faces 0 and 2 (see: veil detect)
  veil cloak photos/ --out-dir cloaked/ --json > report.json

The JSON report gives, for each face, the SSIM of the changed region and the
cosine similarity (and distance) its embedding kept to the original under
each recognizer the cloak optimised against.

exit codes: 0 every photo written, 1 any photo failed (the others are still
written), 2 usage error.
"""


class _CloakPlanner(_cli.OutputPlanner):
    """``veil blur``'s output rules, with ``.cloaked`` as the default name."""

    def target(self, job, input_format):
        args = self.args
        if args.output or args.in_place or args.out_dir:
            return super().target(job, input_format)
        from . import io
        from .cloak import cloaked_output_path

        fmt = args.format.upper() if args.format else io.output_format_for(input_format)
        fmt = io.output_format_for(fmt)
        path = cloaked_output_path(job.path, fmt)
        real = os.path.realpath(path)
        if real in self._inputs:
            raise FileExistsError(f"{path} is an input; refusing to replace it (use --in-place to mean it)")
        with self._lock:
            if real in self._claimed:
                raise FileExistsError(f"{path} is also the output of another input in this batch")
            self._claimed.add(real)
        if os.path.lexists(path) and not args.overwrite:
            raise FileExistsError(f"{path} already exists; use --overwrite to replace it, or --out-dir")
        return path, fmt


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``veil cloak`` to the ``veil`` command's subparsers."""
    from .cloak import DEFAULT_MODE, MODES

    out = _cli._output_options()
    # Cloaks are made to survive the messenger's JPEG, not veil's own.
    out.set_defaults(quality=95)
    for action in out._actions:
        if action.dest == "quality":
            action.help = "JPEG/WebP quality 1-100 (default: 95)"
    p = subparsers.add_parser(
        "cloak",
        parents=[_cli._photo_options(), out, _cli._detector_options()],
        help="cloak the faces in photos against face recognition (invisible)",
        description=_HELP.format(modes="\n".join(
            f"  {m.name:<5s}{m.linf:3.0f} levels, SSIM >= {m.ssim_floor:.2f}, {m.steps} steps"
            + (" (default)" if m.name == DEFAULT_MODE else "") for m in MODES.values())),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("cloaking")
    g.add_argument("--mode", choices=tuple(MODES), default=DEFAULT_MODE, type=str.lower,
                   help="strength and budget (default: %(default)s)")
    g.add_argument("--face", type=_cli._number(int, 0, 1_000_000), action="append", default=[], metavar="INDEX",
                   dest="face_indices", help="cloak only this face (index from `veil detect`); repeatable; default: all")
    g.add_argument("--target", metavar="PHOTO", default=None,
                   help="targeted mode: pull the faces toward the identity in PHOTO (a decoy) instead of only away")
    g.add_argument("--seed", type=_cli._number(int, 0, 2**32 - 1), default=0, help="seed (default: %(default)s)")
    g.add_argument("--steps", type=_cli._number(int, 1, 10000), default=None, help="override the mode's steps")
    g.add_argument("--no-robust", dest="robust", action="store_false",
                   help="skip the JPEG/resize averaging (faster, does not survive messengers as well)")
    g.add_argument("--threads", type=_cli._number(int, 1, 256), default=None,
                   help="onnxruntime threads per photo (default: up to 4)")
    p.set_defaults(run=run, subparser=p)


def _settings(args: argparse.Namespace) -> dict:
    from .cloak import MODES

    m = MODES[args.mode]
    return {
        "mode": m.name, "linf": m.linf, "ssim_floor": m.ssim_floor,
        "steps": args.steps or m.steps, "faces": args.face_indices or None, "target": args.target,
        "seed": args.seed, "robust": args.robust, "threshold": args.threshold,
    }


def run(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    """Runs ``veil cloak``; returns the exit code."""
    from . import io
    from .cloak import OUTPUT_SUFFIX, _target_embeddings, _recognizer, cloak_with_report, ENSEMBLE
    from .detect import detect_faces

    parser = parser or getattr(args, "subparser", None)
    if parser is not None:
        _cli._check_output_choice(args, parser)
    jobs, failures = _cli.collect_inputs(args.inputs, args.recursive)
    named = {os.path.realpath(p) for p in args.inputs if Path(p).is_file()}
    # Skip earlier outputs found in folders (named files are always taken).
    jobs = [j for j in jobs if Path(j.path.stem).suffix != OUTPUT_SUFFIX or os.path.realpath(j.path) in named]
    console = _cli.Console()
    for f in failures:
        console.say(f"veil: {f['input']}: {f['error']}")
    target = None
    if args.target is not None:
        try:
            target = dict(zip(ENSEMBLE, _target_embeddings(args.target, [_recognizer(n) for n in ENSEMBLE], 2)))
        except Exception as exc:
            console.say(f"veil: --target {args.target}: {_cli.describe_error(exc)}")
            return _cli.EXIT_USAGE
    planner = _CloakPlanner(args, jobs)
    # Per-face bars only for a single photo (a batch has its own bar).
    face_bars = (args.progress is True or (args.progress is None and sys.stderr.isatty())) and len(jobs) == 1 and not args.json

    def work(job: _cli.Job) -> dict:
        loaded = io.load_image(job.path)
        out_path, fmt = planner.target(job, loaded.format)  # refuse before the slow part
        rgb = loaded.pixels
        faces = detect_faces(
            rgb[:, :, :3] if rgb.shape[2] >= 3 else rgb,
            threshold=args.threshold, max_side_px=args.max_side_px, tiles=args.tiles,
        )
        chosen = faces
        if args.face_indices:
            bad = [i for i in args.face_indices if i >= len(faces)]
            if bad:
                raise ValueError(f"--face {bad[0]}: there is no such face ({len(faces)} found); nothing written")
            chosen = [faces[i] for i in sorted(set(args.face_indices))]
        result, report = cloak_with_report(
            rgb, mode=args.mode, faces=chosen, target=target, seed=args.seed, steps=args.steps,
            robust=args.robust, threads=args.threads, progress=True if face_bars else None,
        )
        if out_path.parent != Path("") and not out_path.parent.exists():
            out_path.parent.mkdir(parents=True, exist_ok=True)
        io.save_image(result, out_path, format=fmt, quality=args.quality, overwrite=args.overwrite or args.in_place)
        summary = report.to_dict()
        index_of = {id(f): i for i, f in enumerate(faces)}
        for rec, face in zip(summary["faces"], chosen):
            rec["index"] = index_of[id(face)]
        record = {
            "input": job.label, "status": "done", "output": str(out_path), "format": fmt,
            "width": summary["width"], "height": summary["height"],
            "faces_found": len(faces), "faces": summary["faces"], "ssim": summary["ssim"],
            "mode": report.mode, "notes": summary["notes"], "warnings": [],
        }
        if not faces:
            record["warnings"].append("no face found; only the metadata was removed")
            console.say(f"veil: {job.label}: no face found; wrote {out_path} with only its metadata removed")
        if not args.json:
            lines = [f"{job.label} -> {out_path} ({len(report.faces)} face(s) cloaked, {report.mode})"]
            for fr in report.faces:
                sims = ", ".join(f"{k} {v:.2f}" for k, v in fr.similarity.items())
                lines.append(f"  face {index_of[id(chosen[report.faces.index(fr)])]}: SSIM {fr.ssim:.3f}, similarity to original: {sims}")
            console.say("\n".join(lines), stream=sys.stdout)
        return record

    records = _cli.failures_as_records(failures) + _cli.run_batch(
        jobs, work, workers=args.jobs, progress=args.progress, console=console
    )
    return _cli.finish("cloak", args, _settings(args), records, console)
