"""Videos: veil and deface 1.5.0 side by side on the same clips, in one run.

The clips (made here, with exact ground truth in every frame, by
``tests/_videoclips.py``): a camera pans and zooms across annotated photos
of ``../shared/data/faces/groups`` (``boxes.json``), at 1920x1080, 25 fps:

* ``group``: across ``2008_001322.jpg`` (7 faces, 37-45 px in the photo);
* ``crowd``: across a 3x3 mosaic of the 9 annotated photos (43 faces);

with bursts of strong motion blur (camera shake) and of darkness, 3 frames
every 15, where a detector working on each frame alone misses faces.

Each tool runs as its own command, as a user runs it, so start-up (imports,
loading the model) is included for both:

* veil: ``veil blur IN -o OUT`` (defaults: tracking, full search every 5
  frames and crops around tracked faces between, tiles on);
* veil ``--no-tiles`` (whole frame shrunk to 1024 px only);
* veil ``--no-tracking`` (a full search of every frame, each frame's own
  detections covered: what per-frame tools do);
* deface: ``deface IN -o OUT --replacewith solid`` (its defaults otherwise:
  CenterFace at full resolution on every frame, threshold 0.2, mask scale
  1.3; ``solid`` black instead of its default blur, so that covered faces
  can be counted the same way for both tools).

Measured: wall seconds, CPU seconds (user + system of the process and the
children it waited for, e.g. deface's ffmpeg, from ``os.wait4``), frames per
CPU-second, peak resident memory (``ru_maxrss``, from a small launcher
process), and flashes: decoded output frames in which a labelled face is
shown (less than 90% of the central 60% of its box is black), counted per
face and per frame.

Bars (issue 11): at 1080p, veil at least 3x deface's frames per CPU-second,
with fewer flashes.

Setup: deface lives in its own environment (with onnxruntime: without it
deface falls back to OpenCV's slower backend)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install deface==1.5.0 onnx onnxruntime

Run: ``.venv/bin/python benches/bench_video.py [--frames N] [--deface PATH]``
(skips cleanly when ``../shared/data/faces`` is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import _videoclips as vc  # noqa: E402
from bench_pipeline import run_timed  # noqa: E402  (a child process's own wall, CPU and peak memory)

GROUPS = REPO.parent / "shared" / "data" / "faces" / "groups"
SIZE = (1920, 1080)

def find_deface(given):
    for c in (given, os.environ.get("VEIL_BENCH_DEFACE"), str(REPO / ".venv-bench" / "bin" / "deface"),
              shutil.which("deface")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def make_clips(wanted, frames: int) -> dict:
    """The named clips of ``frames`` frames each: "group" and "crowd" (the
    benchmark's), and "group2", "group3", "crowd2" and "fast": other photos,
    paths, speeds and rhythms of hard frames, for checking that a change to the tracker
    holds beyond the two it was measured on (benches/profile_video.py)."""
    boxes = json.loads((GROUPS / "boxes.json").read_text())

    def photo(name):
        return np.asarray(Image.open(GROUPS / name).convert("RGB"))

    clips = {}
    if "group" in wanted:
        name = "2008_001322.jpg"
        clips["group"] = vc.camera_clip(photo(name), boxes[name], SIZE, frames, zoom=(1.0, 0.6), hard_every=15,
                                        hard_len=3)
    if "crowd" in wanted:
        mosaic_rgb, labelled = vc.mosaic(GROUPS, sorted(boxes), boxes)
        clips["crowd"] = vc.camera_clip(mosaic_rgb, labelled, SIZE, frames, zoom=(0.7, 0.45), hard_every=15,
                                        hard_len=3, seed=1)
    if "group2" in wanted:
        name = "2007_007763.jpg"
        clips["group2"] = vc.camera_clip(photo(name), boxes[name], SIZE, frames, zoom=(1.0, 0.5), hard_every=15,
                                         hard_len=3, seed=2)
    if "group3" in wanted:
        name = "2008_004176.jpg"
        clips["group3"] = vc.camera_clip(photo(name), boxes[name], SIZE, frames, zoom=(0.9, 0.6), hard_every=12,
                                         hard_len=2, seed=3)
    if "crowd2" in wanted:
        mosaic_rgb, labelled = vc.mosaic(GROUPS, sorted(boxes)[::-1], boxes)
        clips["crowd2"] = vc.camera_clip(mosaic_rgb, labelled, SIZE, frames, zoom=(0.8, 0.5), hard_every=13,
                                         hard_len=3, seed=2)
    if "fast" in wanted:
        # The crowd again, zooming from 0.9 to 0.4 in 8/15 of the frames (40
        # of 75): faces sweep across and into the frame.
        mosaic_rgb, labelled = vc.mosaic(GROUPS, sorted(boxes)[3:] + sorted(boxes)[:3], boxes)
        clips["fast"] = vc.camera_clip(mosaic_rgb, labelled, SIZE, max(2, frames * 8 // 15), zoom=(0.9, 0.4),
                                       hard_every=9, hard_len=2, seed=5)
    unknown = set(wanted) - set(clips)
    if unknown:
        raise SystemExit(f"unknown clip(s): {', '.join(sorted(unknown))}")
    return clips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=75, help="frames per clip (default: %(default)s)")
    parser.add_argument("--deface", help="the deface command (default: .venv-bench/bin/deface, then PATH)")
    parser.add_argument("--clips", default="group,crowd", help="which clips (default: %(default)s)")
    args = parser.parse_args()
    if not (GROUPS / "boxes.json").is_file():
        print("skipped: ../shared/data/faces/groups is absent")
        return 0
    deface = find_deface(args.deface)
    if deface is None:
        print("deface not found: python -m venv .venv-bench && .venv-bench/bin/pip install deface==1.5.0 onnx onnxruntime")
        return 1
    veil = str(Path(sys.executable).parent / "veil")
    print(f"veil: {veil}\ndeface: {deface}\nclips: {SIZE[0]}x{SIZE[1]}, {args.frames} frames each, 25 fps")
    tools = {
        "veil": lambda i, o: [veil, "blur", i, "-o", o, "--overwrite"],
        "veil --no-tiles": lambda i, o: [veil, "blur", i, "-o", o, "--overwrite", "--no-tiles"],
        "veil --no-tracking": lambda i, o: [veil, "blur", i, "-o", o, "--overwrite", "--no-tracking"],
        "deface --replacewith solid": lambda i, o: [deface, i, "-o", o, "--replacewith", "solid"],
    }
    totals = {t: {"frames": 0, "wall": 0.0, "cpu": 0.0, "mb": 0.0, "flashes": 0, "flash_frames": 0, "faces": 0}
              for t in tools}
    with tempfile.TemporaryDirectory(prefix="veil-bench-video-") as tmp:
        tmp = Path(tmp)
        clips = make_clips(args.clips.split(","), args.frames)
        for clip_name, clip in clips.items():
            src = vc.write_clip(clip, tmp / f"{clip_name}.mp4", crf=18)
            faces = sum(len(t) for t in clip.truth)
            shown_before, _ = vc.count_flashes(vc.read_frames(src), clip.truth)
            print(f"\n{clip_name}: {faces} labelled faces over {len(clip.frames)} frames "
                  f"({shown_before} visible before anonymizing)")
            print(f"{'tool':28} {'wall s':>7} {'CPU s':>7} {'frames/CPU-s':>12} {'peak MB':>8} "
                  f"{'flashes':>8} {'flash frames':>12}")
            for tool, cmd in tools.items():
                out = tmp / f"{clip_name}.{tool.split()[0]}.{abs(hash(tool))}.mp4"
                wall, cpu, mb = run_timed(cmd(src, out))
                frames = vc.read_frames(out)
                n = min(len(frames), len(clip.truth))
                flashes, _ = vc.count_flashes(frames[:n], clip.truth[:n])
                flash_frames = vc.flash_frames(frames[:n], clip.truth[:n])
                note = "" if len(frames) == len(clip.truth) else f"  ({len(frames)} frames written!)"
                t = totals[tool]
                t["frames"] += len(clip.truth)
                t["wall"] += wall
                t["cpu"] += cpu
                t["mb"] = max(t["mb"], mb)
                t["flashes"] += flashes
                t["flash_frames"] += flash_frames
                t["faces"] += faces
                print(f"{tool:28} {wall:7.1f} {cpu:7.1f} {len(clip.truth) / cpu:12.2f} "
                      f"{mb:8.0f} {flashes:8d} {flash_frames:12d}{note}", flush=True)
    print("\nall clips")
    base = totals["deface --replacewith solid"]
    base_rate = base["frames"] / base["cpu"]
    print(f"{'tool':28} {'frames':>6} {'CPU s':>7} {'frames/CPU-s':>12} {'vs deface':>9} {'peak MB':>8} "
          f"{'flashes (faces)':>16} {'flash frames':>12}")
    for tool, t in totals.items():
        rate = t["frames"] / t["cpu"]
        print(f"{tool:28} {t['frames']:6d} {t['cpu']:7.1f} {rate:12.2f} {rate / base_rate:8.1f}x {t['mb']:8.0f} "
              f"{t['flashes']:>7d} of {t['faces']:<6d} {t['flash_frames']:12d}")
    v = totals["veil"]
    speed = (v["frames"] / v["cpu"]) / base_rate
    print(f"\nbar: veil >= 3x deface's frames per CPU-second at 1080p ... {speed:.1f}x "
          f"{'met' if speed >= 3 else 'MISSED'}")
    print(f"bar: veil fewer flashes than deface ...................... {v['flashes']} vs {base['flashes']} "
          f"{'met' if v['flashes'] < base['flashes'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
