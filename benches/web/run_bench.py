"""Browser benchmark of veil's WebAssembly kernels and in-page detection.

Runs benches/web/bench.html in headless Chromium (one page run, 12 MP RGBA):
veil's wasm Gaussian blur (sigma 3, 10 and 33), box blur and pixelation against
StackBlur.js (stackblur-canvas) and the canvas 2D ``filter = 'blur()'``;
then the time to faces for about 1, 3 and 12 MP photos in the real page
(web/dist), with the longest main-thread task during detection.

Usage (after scripts/build_web.sh):

    .venv/bin/python benches/web/run_bench.py [--width 4000 --height 3000] [--repeat 3] [--no-detect | --detect-only]

The bar (from the issue): veil's Gaussian at least 3x faster than StackBlur.js.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

from veil.web import make_server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
STACKBLUR_BAR = 3.0


def assemble(site: Path, wasm: Optional[Path]) -> None:
    dist = ROOT / "web" / "dist"
    if not (dist / "index.html").is_file():
        sys.exit("run_bench: web/dist is not built: run scripts/build_web.sh first")
    shutil.copytree(dist, site, dirs_exist_ok=True)
    if wasm is not None:  # e.g. a build of a proposed kernel change, for an A/B run
        shutil.copy(wasm, site / "veil_wasm.wasm")
        # The server sends a precompressed X.gz in place of X: drop the
        # one of web/dist's module, or the browser gets that instead.
        (site / "veil_wasm.wasm.gz").unlink(missing_ok=True)
    here = Path(__file__).resolve().parent
    for name in ("bench.html", "bench.js"):
        shutil.copy(here / name, site / name)
    stackblur = ROOT / "web" / "node_modules" / "stackblur-canvas" / "dist" / "stackblur.min.mjs"
    if not stackblur.is_file():
        sys.exit("run_bench: stackblur-canvas is not installed: run `npm ci` in web/")
    shutil.copy(stackblur, site / "stackblur.min.mjs")


def print_kernels(result: dict) -> None:
    if "error" in result:
        sys.exit(f"run_bench: the page failed: {result['error']}")
    print(f"\nKernels on a {result['width']}x{result['height']} RGBA image "
          f"({result['width'] * result['height'] / 1e6:.0f} MP), median of {result['repeat']} runs, one thread")
    print(f"{result['userAgent']}\n")
    veil = {r["op"]: r["ms"] for r in result["rows"] if r["impl"] == "veil wasm"}
    print(f"{'operation':<22} {'implementation':<26} {'ms':>9} {'vs veil':>9}  note")
    print("-" * 86)
    last = None
    for r in result["rows"]:
        op = r["op"] if r["op"] != last else ""
        last = r["op"]
        base = veil.get(r["op"])
        ratio = f"{r['ms'] / base:.2f}x" if base else ""
        print(f"{op:<22} {r['impl']:<26} {r['ms']:>9.1f} {ratio:>9}  {r['note']}")
    print()
    for r in result["rows"]:
        if r["impl"] == "StackBlur.js" and r["op"] in veil:
            speedup = r["ms"] / veil[r["op"]]
            verdict = "meets" if speedup >= STACKBLUR_BAR else "MISSES"
            print(f"{r['op']}: veil is {speedup:.1f}x faster than StackBlur.js ({verdict} the {STACKBLUR_BAR:.0f}x bar)")


# Photo sizes for the time to faces: about 1, 3 and 12 megapixels.
DETECT_SIZES = [(1155, 866), (2000, 1500), (4000, 3000)]


def detection_photos(tmp: Path) -> list:
    """One group photo (a project fixture when ../shared is absent) enlarged
    to each of DETECT_SIZES."""
    from PIL import Image

    source = SHARED_FACES / "groups" / "2008_002470.jpg"
    if not source.is_file():
        source = ROOT / "tests" / "fixtures" / "two_faces.jpg"
    photos = []
    for w, h in DETECT_SIZES:
        path = tmp / f"{source.stem}_{w}x{h}.jpg"
        Image.open(source).convert("RGB").resize((w, h), Image.Resampling.BICUBIC).save(path, quality=92)
        photos.append(path)
    return photos


# The page's own detector on the open photo, with main-thread long tasks
# (PerformanceObserver 'longtask') recorded while it runs.
DETECT_TIMED = """async () => {
  const s = window.veilPage.state;
  const tasks = [];
  const observer = new PerformanceObserver((list) => { for (const e of list.getEntries()) tasks.push(e.duration); });
  observer.observe({ type: 'longtask', buffered: false });
  const r = await s.detector.detect(s.photo.original, {});
  await new Promise((done) => setTimeout(done, 50));
  observer.disconnect();
  return { n: r.faces.length, ms: r.ms, passes: r.passes, w: s.photo.width, h: s.photo.height,
           longest: Math.max(0, ...tasks) };
}"""


def time_detection(page, base_url: str, photos: list) -> None:
    page.goto(base_url + "index.html")
    page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
    threads = page.evaluate("window.veilPage.state.detector && window.veilPage.state.detector.numThreads")
    print(f"\nTime to faces in the page (CenterFace, onnxruntime-web wasm in a Web Worker, {threads} thread(s)):"
          " each photo opened once (the page's own detection), then detected again and timed,"
          " with the longest main-thread task during that detection")
    print(f"{'photo':<30} {'size':>11} {'MP':>5} {'passes':>7} {'faces':>6} {'detect ms':>10} {'longest task ms':>16}")
    print("-" * 92)
    for i, photo in enumerate(photos):
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(f"body[data-detections='{i + 1}']", state="attached", timeout=600_000)
        d = page.evaluate(DETECT_TIMED)
        print(f"{photo.name:<30} {d['w']:>5}x{d['h']:<5} {d['w'] * d['h'] / 1e6:>5.1f} {d['passes']:>7} {d['n']:>6}"
              f" {d['ms']:>10.0f} {d['longest']:>16.0f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-detect", action="store_true", help="kernels only")
    parser.add_argument("--detect-only", action="store_true", help="time to faces only, no kernels")
    parser.add_argument("--wasm", type=Path, default=None, help="benchmark this veil_wasm.wasm instead of web/dist's")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        site = Path(tmp) / "site"
        assemble(site, args.wasm)
        server = make_server(site, port=0, quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base_url = f"http://127.0.0.1:{server.server_address[1]}/"
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                if not args.detect_only:
                    t0 = time.time()
                    page.goto(f"{base_url}bench.html?width={args.width}&height={args.height}&repeat={args.repeat}")
                    page.wait_for_selector("body[data-state=done]", state="attached", timeout=900_000)
                    print_kernels(page.evaluate("window.benchResult"))
                    print(f"(kernel page run took {time.time() - t0:.0f} s)")
                if not args.no_detect:
                    time_detection(page, base_url, detection_photos(Path(tmp)))
                browser.close()
        finally:
            server.shutdown()
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
