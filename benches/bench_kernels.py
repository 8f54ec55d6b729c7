"""Side-by-side speed of veil's kernels and what a Python user would otherwise call.

On a 12-megapixel RGB and RGBA photo (the bundled fixture, upscaled), in one
run: veil's Gaussian blur at sigma 2, 3, 5, 10, 33 and 100, box blur and
pixelate, with 1 and 2 threads, against OpenCV (GaussianBlur, stackBlur,
blur), Pillow (GaussianBlur, BoxBlur) and a plain copy of the same buffer.
veil and OpenCV both write into a preallocated output (``out=`` / ``dst=``),
as the copy does. Prints a Markdown table of median times, each veil time
as a multiple of the copy (the memory floor), and ratios (peer time / veil
time: above 1 means veil is faster), and veil's Gaussian at more sigmas
(both sides of every change of path) with its slowest time as a multiple
of its fastest.

    python benches/bench_kernels.py [--repeat 7] [--megapixels 12]

The machines are shared and noisy: compare ratios from the same run, not
absolute times across runs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

import veil

try:
    import cv2
except ImportError:  # the bench needs it; say how to get it
    sys.exit("bench_kernels needs OpenCV: pip install opencv-python-headless")

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "two_faces.jpg"


class Ms(float):
    """A median wall time in ms, with the median CPU time of the calling thread (``cpu``)
    and of the whole process, every thread (``cpu_all``)."""

    cpu: float
    cpu_all: float


def median_ms(fn, repeat: int) -> Ms:
    fn()  # warm-up: page faults, thread pools, lazy init
    times, cpus, alls = [], [], []
    for _ in range(repeat):
        a0, c0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        alls.append(time.process_time() - a0)
    ms = Ms(1000 * statistics.median(times))
    ms.cpu = 1000 * statistics.median(cpus)
    ms.cpu_all = 1000 * statistics.median(alls)
    return ms


def stack_blur_ksize(sigma: float) -> int:
    """Stack blur of radius r has variance r(r+2)/6; pick the odd size matching sigma."""
    r = max(1, round(-1 + math.sqrt(1 + 6 * sigma * sigma)))
    return 2 * r + 1


def make_image(megapixels: float, channels: int) -> np.ndarray:
    w = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    h = int(round(w * 3 / 4))
    rgb = Image.open(FIXTURE).convert("RGB").resize((w, h), Image.BICUBIC)
    arr = np.asarray(rgb)
    if channels == 4:
        arr = np.dstack([arr, np.full(arr.shape[:2], 255, np.uint8)])
    return np.ascontiguousarray(arr)


def bench(img: np.ndarray, repeat: int) -> list[tuple[str, str, float, dict[str, float]]]:
    """Rows of (operation, threads, veil ms, {peer: ms})."""
    mode = "RGBA" if img.shape[2] == 4 else "RGB"
    pil = Image.fromarray(img, mode)
    out = np.empty_like(img)
    rows = []
    copy_ms = median_ms(lambda: np.copyto(out, img), repeat)
    for threads in (1, 2):
        cv2.setNumThreads(threads)
        for sigma in (2, 3, 5, 10, 33, 100):
            k = stack_blur_ksize(sigma)
            peers = {
                "cv2.stackBlur": median_ms(lambda: cv2.stackBlur(img, (k, k), dst=out), repeat),
                "PIL.GaussianBlur": median_ms(lambda: pil.filter(ImageFilter.GaussianBlur(sigma)), max(1, repeat // 3)),
            }
            # OpenCV's exact Gaussian grows with sigma; at 100 one run takes many seconds.
            if sigma <= 33:
                peers["cv2.GaussianBlur"] = median_ms(
                    lambda: cv2.GaussianBlur(img, (0, 0), sigma, dst=out, borderType=cv2.BORDER_REPLICATE),
                    max(1, repeat // 3))
            veil_ms = median_ms(lambda: veil.gaussian_blur(img, sigma, threads=threads, out=out), repeat)
            rows.append((f"gaussian sigma={sigma}", str(threads), veil_ms, peers))
        r = 10
        peers = {
            "cv2.blur": median_ms(
                lambda: cv2.blur(img, (2 * r + 1, 2 * r + 1), dst=out, borderType=cv2.BORDER_REPLICATE), repeat),
            "PIL.BoxBlur": median_ms(lambda: pil.filter(ImageFilter.BoxBlur(r)), repeat),
        }
        rows.append((f"box radius={r}", str(threads), median_ms(lambda: veil.box_blur(img, r, threads=threads, out=out), repeat),
                     peers))
        peers = {"copy": copy_ms}
        rows.append(("pixelate block=16", str(threads), median_ms(lambda: veil.pixelate(img, 16, threads=threads, out=out),
                                                              repeat), peers))
    return rows, copy_ms


# Sigmas for the flatness line: the table's, and both sides of every change
# of path (full resolution below 3.35, then copies reduced 2, 3, 4... times).
FLAT_SIGMAS = (2, 2.5, 3, 3.3, 3.4, 4, 5, 6, 6.3, 8, 10, 15, 20, 33, 50, 100)


def flatness(img: np.ndarray, repeat: int) -> str:
    """veil's Gaussian with 1 thread (CPU time) at every sigma of FLAT_SIGMAS,
    and the slowest as a multiple of the fastest."""
    out = np.empty_like(img)
    cpu = {s: median_ms(lambda: veil.gaussian_blur(img, s, threads=1, out=out), repeat).cpu for s in FLAT_SIGMAS}
    slow, fast = max(cpu, key=cpu.get), min(cpu, key=cpu.get)
    cells = ", ".join(f"{s:g}: {ms:.1f}" for s, ms in cpu.items())
    return (f"veil Gaussian, 1 thread, CPU ms by sigma: {cells}\n"
            f"slowest / fastest: {cpu[slow] / cpu[fast]:.2f}x (sigma {slow:g} / sigma {fast:g})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median is shown)")
    parser.add_argument("--megapixels", type=float, default=12.0)
    args = parser.parse_args(argv)
    print(f"# veil kernels vs peers: {args.megapixels:g} MP, median of {args.repeat} runs")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}, Pillow {Image.__version__}, numpy {np.__version__}, veil {veil.__version__}")
    for channels in (3, 4):
        img = make_image(args.megapixels, channels)
        print(f"\n## {img.shape[1]}x{img.shape[0]} {'RGBA' if channels == 4 else 'RGB'}\n")
        rows, copy_ms = bench(img, args.repeat)
        print(f"plain copy (np.copyto): {copy_ms:.1f} ms ({copy_ms.cpu:.1f} ms CPU)\n")
        # With 1 thread everything runs on the calling thread, so its CPU time
        # is each tool's own work, which a busy machine disturbs less than
        # wall time; with 2 threads only wall time means anything.
        # The 2-thread rows also give veil's CPU time summed over all threads
        # as a multiple of its 1-thread CPU time: the work the split adds
        # (halos made twice, start-up per band), which a busy machine does
        # not hide the way it hides the wall-time speedup.
        print("| operation | threads | veil ms | veil / copy | peer | peer ms | peer / veil "
              "| veil CPU ms | peer CPU ms | peer / veil (CPU) | veil 1 -> 2 threads: wall speedup, CPU all threads |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        one = {op: veil_ms for op, threads, veil_ms, _ in rows if threads == "1"}
        for op, threads, veil_ms, peers in rows:
            for i, (peer, ms) in enumerate(peers.items()):
                lead = f"| {op} | {threads} | {veil_ms:.1f} | {veil_ms / copy_ms:.1f}x " if i == 0 else "| | | | "
                cpu = (f"| {veil_ms.cpu:.1f} | {ms.cpu:.1f} | {ms.cpu / veil_ms.cpu:.2f}x |" if threads == "1"
                       else "| | | |")
                split = (f" {one[op] / veil_ms:.2f}x, {veil_ms.cpu_all / one[op].cpu_all:.2f}x |"
                         if threads == "2" and i == 0 else " |")
                print(f"{lead}| {peer} | {ms:.1f} | {ms / veil_ms:.2f}x {cpu}{split}", flush=True)
        print(f"\n{flatness(img, args.repeat)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
