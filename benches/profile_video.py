"""Where veil's video tracking spends its detection, clip by clip.

Runs ``veil.anonymize_video`` in this process on the clips of
``bench_video.py`` (same frames, same ground truth) and counts, through
the detector object the tracker drives: the whole-frame searches, the crop
searches (and the frames where the crops would have cost too much), the
pixels fed to the network and its calls, the CPU seconds of the whole run
(every thread: decoding, detection, covering and encoding), and the
flashes. The network's input pixels plus a fixed cost per call
(``veil.video._CROP_CALL_PX``) are what the tracker itself weighs, and do
not depend on how busy the machine is; the README's video levers were
measured with it. Not a side-by-side benchmark: ``bench_video.py`` is.

Run: ``.venv/bin/python benches/profile_video.py [--clips group,crowd,group2,group3,crowd2,fast] [--frames 75]``
(skips cleanly when ``../shared/data/faces`` is absent).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _videoclips as vc  # noqa: E402
import bench_video as bv  # noqa: E402
from veil import detect, video  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=75, help="frames per clip (default: %(default)s)")
    parser.add_argument("--clips", default="group,crowd,group2,group3,crowd2,fast",
                        help="which clips of bench_video.make_clips (default: %(default)s)")
    args = parser.parse_args()
    if not (bv.GROUPS / "boxes.json").is_file():
        print("skipped: ../shared/data/faces/groups is absent")
        return 0
    counts = {}
    search, crops, full = detect._detect_array, video._Detector.crops, video._Detector.full

    def counted_search(*a, **k):
        pixels = []
        a = list(a)
        if len(a) > 6 and a[6] is not None:
            pixels = a[6]
        else:
            k["input_px"] = pixels
        rows = search(*a, **k)
        counts["pixels"] += sum(pixels)
        counts["calls"] += len(pixels)
        return rows

    def counted_crops(self, rgb, predicted, wide=False):
        found = crops(self, rgb, predicted, wide)
        key = ("second looks" if wide else "crop frames") if found is not None else "crops too dear"
        counts[key] += 1
        return found

    def counted_full(self, rgb, *a, **k):
        counts["full searches"] += 1
        return full(self, rgb, *a, **k)

    detect._detect_array = counted_search
    video._Detector.crops, video._Detector.full = counted_crops, counted_full
    print(f"clips: {bv.SIZE[0]}x{bv.SIZE[1]}, {args.frames} frames each")
    print(f"{'clip':6} {'CPU s':>7} {'flashes':>8} {'full':>5} {'crop frames':>12} {'too dear':>9} "
          f"{'second looks':>13} {'input Mpx':>10} {'calls':>6} {'Mpx + calls':>12}")
    with tempfile.TemporaryDirectory(prefix="veil-profile-video-") as tmp:
        for name, clip in bv.make_clips(args.clips.split(","), args.frames).items():
            src = vc.write_clip(clip, Path(tmp) / f"{name}.mp4", crf=18)
            counts.clear()
            counts.update({k: 0 for k in ("pixels", "calls", "full searches", "crop frames", "crops too dear",
                                          "second looks")})
            cpu = time.process_time()
            video.anonymize_video(src, Path(tmp) / f"{name}.out.mp4", overwrite=True)
            cpu = time.process_time() - cpu
            flashes, _ = vc.count_flashes(vc.read_frames(Path(tmp) / f"{name}.out.mp4"), clip.truth)
            weighed = counts["pixels"] + video._CROP_CALL_PX * counts["calls"]
            print(f"{name:6} {cpu:7.1f} {flashes:8d} {counts['full searches']:5d} {counts['crop frames']:12d} "
                  f"{counts['crops too dear']:9d} {counts['second looks']:13d} {counts['pixels'] / 1e6:10.1f} "
                  f"{counts['calls']:6d} {weighed / 1e6:12.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
