"""Saves a screenshot of the page with a photo's faces hidden (docs/page.png).

Usage (after scripts/build_web.sh):

    .venv/bin/python web/screenshot.py [PHOTO] [--out docs/page.png] [--method pixelate|blur|solid] [--width 1280]
    .venv/bin/python web/screenshot.py --phone --out docs/page-phone.png   # 390 x 844, touch
    .venv/bin/python web/screenshot.py --review --out docs/page-review.png  # the review step

The default photo is tests/fixtures/two_faces.jpg (a public-domain White
House photograph; see tests/fixtures/README.md).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from veil.web import make_server  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?", default=str(ROOT / "tests" / "fixtures" / "two_faces.jpg"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "page.png"))
    parser.add_argument("--method", default="pixelate", choices=["pixelate", "blur", "solid"])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--phone", action="store_true", help="a 390 x 844 touch screen at 2x (the --width/--height are ignored)")
    parser.add_argument("--review", action="store_true", help="open the review step before the screenshot")
    parser.add_argument("--viewport-only", action="store_true", help="only what fits on the screen, not the whole page")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    server = make_server(ROOT / "web" / "dist", port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            if args.phone:
                page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True)
            else:
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
            page.set_input_files("#file", args.photo)
            page.wait_for_selector("body[data-detections='1']", state="attached", timeout=300_000)
            page.check(f"input[name=method][value={args.method}]")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            if args.review:
                page.click("#review-open")
                page.wait_for_selector("#review-search[data-faces]:not([data-faces=''])", state="attached", timeout=300_000)
                page.evaluate("scrollTo(0, 0)")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=not args.viewport_only)
            print(f"{args.out}: {page.text_content('#status')}")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
