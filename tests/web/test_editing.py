"""Editing in the browser page can never expose a face by accident, in real
headless Chromium, driven as a person would (mouse, keyboard, touch on a
phone-sized screen): a face's cover never moves off it or shrinks, is never
clipped by the border, every change can be undone exactly, the status line
tells the truth, the review shows what will be written, the file is named
neutrally, and bad or huge files are refused from their header.

See conftest.py for when these skip.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
PHOTO = FIXTURES / "two_faces.jpg"
PHONE = dict(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)

# Counts every decode the page could start: the size limit must act on the
# header, before any of these.
COUNT_DECODES = """
  window.__decodes = 0;
  const original = window.createImageBitmap;
  window.createImageBitmap = (...a) => { window.__decodes++; return original.apply(window, a); };
  const decode = HTMLImageElement.prototype.decode;
  HTMLImageElement.prototype.decode = function (...a) { window.__decodes++; return decode.apply(this, a); };
  if (window.ImageDecoder) {
    const D = window.ImageDecoder;
    window.ImageDecoder = function (...a) { window.__decodes++; return new D(...a); };
  }
"""


def open_photo(page, path, timeout_ms: int = 300_000) -> None:
    before = int(page.evaluate("window.veilPage.state.detections"))
    page.set_input_files("#file", str(path))
    page.wait_for_selector(f"body[data-detections='{before + 1}']", state="attached", timeout=timeout_ms)
    settle(page)


def settle(page) -> None:
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def regions(page) -> list:
    return page.evaluate("JSON.parse(JSON.stringify(window.veilPage.state.regions))")


def faces(page) -> list:
    return page.evaluate("window.veilPage.state.detection.faces.map(f => [f.left, f.top, f.right, f.bottom])")


def review_and_download(page, fmt: str = "png"):
    """Opens the review, picks the format, downloads: (bytes, file name)."""
    page.click("#review-open")
    page.wait_for_selector("#review:not([hidden])")
    page.check(f"input[name=format][value='image/{'jpeg' if fmt == 'jpg' else fmt}']")
    with page.expect_download() as info:
        page.click("#download")
    data = Path(info.value.path()).read_bytes()
    name = info.value.suggested_filename
    page.click("#review-back")
    page.wait_for_selector("#work:not([hidden])")
    return data, name


def pixels_of(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def assert_faces_covered(data: bytes, boxes) -> None:
    """Solid fill: every pixel of the oval inscribed in each detected face box
    (inside the 1.3x cover's oval) is black in the downloaded PNG."""
    px = pixels_of(data)
    h, w = px.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    for l, t, r, b in boxes:
        cx, cy, rx, ry = (l + r) / 2, (t + b) / 2, (r - l) / 2, (b - t) / 2
        inside = ((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2 <= 1
        assert inside.sum() > 100
        assert px[inside].max() == 0, f"face {(l, t, r, b)} is not fully covered: max level {px[inside].max()}"


def contains(region: dict, floor: dict) -> bool:
    eps = 1e-6
    return (region["left"] <= floor["left"] + eps and region["top"] <= floor["top"] + eps
            and region["left"] + region["width"] >= floor["left"] + floor["width"] - eps
            and region["top"] + region["height"] >= floor["top"] + floor["height"] - eps)


def status_counts(page) -> tuple:
    text = page.text_content("#status")
    m = re.search(r"(\d+) hidden, (\d+) kept visible by you, (\d+) added by you", text)
    assert m, text
    return tuple(int(v) for v in m.groups())


def truth(page) -> tuple:
    rs = regions(page)
    return (sum(r["fromFace"] and r["hidden"] for r in rs), sum(r["fromFace"] and not r["hidden"] for r in rs),
            sum(not r["fromFace"] for r in rs))


def mouse_drag(page, x0, y0, x1, y1, steps=8):
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()
    settle(page)


def centre(box):
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.fixture()
def phone(browser, base_url):
    ctx = browser.new_context(accept_downloads=True, **PHONE)
    page = ctx.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(base_url)
    page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
    yield page
    ctx.close()


def touch(page, kind: str, points) -> None:
    """A raw touch event through the DevTools protocol (what a finger sends)."""
    cdp = page.context.new_cdp_session(page) if not hasattr(page, "_cdp") else page._cdp
    page._cdp = cdp
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in
                                                                       enumerate(points)]})


def swipe(page, x0, y0, x1, y1, steps=10) -> None:
    touch(page, "touchStart", [(x0, y0)])
    for k in range(1, steps + 1):
        touch(page, "touchMove", [(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps)])
        page.wait_for_timeout(16)
    touch(page, "touchEnd", [])
    page.wait_for_timeout(300)
    settle(page)


# ------------------------------------------------------ covers stay put


def test_mouse_drags_never_move_shrink_or_clip_a_face_cover(page):
    open_photo(page, PHOTO)
    before = regions(page)
    boxes = faces(page)
    assert len(before) >= 2 and all(r["fromFace"] and r["hidden"] for r in before)
    first = page.locator("#overlay .region").first

    # 1. Press on the cover and drag it far away: it stays on the face.
    x, y = centre(first.bounding_box())
    mouse_drag(page, x, y, x + 250, y + 120)
    assert regions(page)[0] == before[0]

    # 2. Drag each corner handle inwards, across the face: the cover never
    # gets smaller than what was detected.
    first.click()  # selects it (shows the handles); a click never uncovers
    assert regions(page)[0]["hidden"] is True
    for corner, (dx, dy) in {"nw": (60, 60), "se": (-60, -60), "ne": (-60, 60), "sw": (60, -60)}.items():
        hx, hy = centre(page.locator(f"#overlay .region[data-id='{before[0]['id']}'] .handle.{corner}").bounding_box())
        mouse_drag(page, hx, hy, hx + dx, hy + dy)
        r = regions(page)[0]
        assert contains(r, r["floor"]) and r["hidden"], (corner, r)

    # 3. Drag the top-left handle far past the photo's border: the cover
    # grows past it and is not clipped (only painting stops at the border).
    page.locator("#viewport").scroll_into_view_if_needed()
    canvas = page.locator("#canvas").bounding_box()
    hx, hy = centre(page.locator(f"#overlay .region[data-id='{before[0]['id']}'] .handle.nw").bounding_box())
    mouse_drag(page, hx, hy, canvas["x"] - 40, canvas["y"] - 40, steps=12)
    grown = regions(page)[0]
    assert grown["left"] < 0 and grown["top"] < 0, grown
    assert contains(grown, before[0])
    # Drag back in: it shrinks no further than the detected cover.
    hx, hy = centre(page.locator(f"#overlay .region[data-id='{before[0]['id']}'] .handle.nw").bounding_box())
    mouse_drag(page, hx, hy, hx + 400, hy + 300, steps=12)
    assert contains(regions(page)[0], before[0]["floor"])
    assert_faces_covered(review_and_download(page)[0], boxes)
    assert page.errors == []


def test_a_cover_you_added_moves_but_stays_whole_past_the_border(page):
    open_photo(page, PHOTO)
    page.locator("#viewport").scroll_into_view_if_needed()
    canvas = page.locator("#canvas").bounding_box()
    x0, y0 = canvas["x"] + 20, canvas["y"] + canvas["height"] - 80
    mouse_drag(page, x0, y0, x0 + 90, y0 + 60)
    added = regions(page)[-1]
    assert not added["fromFace"]
    # Dragged far past the bottom-left corner: it keeps its size, and part
    # of it stays on the photo so it can be found again.
    box = page.locator(f"#overlay .region[data-id='{added['id']}']").bounding_box()
    x, y = centre(box)
    mouse_drag(page, x, y, x - 500, y + 500, steps=10)
    moved = regions(page)[-1]
    assert (moved["width"], moved["height"]) == (added["width"], added["height"])
    w, h = page.evaluate("[window.veilPage.state.photo.width, window.veilPage.state.photo.height]")
    assert moved["left"] < 0 and moved["top"] + moved["height"] > h
    assert moved["left"] + moved["width"] > 0 and moved["top"] < h


def test_phone_swipes_scroll_and_never_touch_a_cover(phone):
    page = phone
    open_photo(page, PHOTO)
    before = regions(page)
    boxes = faces(page)
    # The photo area lets the browser scroll: no touch-action: none outside Edit.
    assert page.evaluate("getComputedStyle(document.getElementById('overlay')).touchAction") != "none"
    assert page.evaluate("getComputedStyle(document.getElementById('viewport')).touchAction") == "pan-x pan-y"
    region = page.locator("#overlay .region").first
    region.scroll_into_view_if_needed()
    x, y = centre(region.bounding_box())
    scroll0 = page.evaluate("scrollY")
    swipe(page, x, y, x - 30, y - 300)  # a swipe up, starting on a face's cover
    assert page.evaluate("scrollY") > scroll0 + 50, "the swipe did not scroll the page"
    assert regions(page) == before
    # A swipe sideways beside a face leaves nothing behind either.
    canvas = page.locator("#canvas").bounding_box()
    swipe(page, canvas["x"] + 5, canvas["y"] + canvas["height"] - 10, canvas["x"] + 60, canvas["y"] + canvas["height"] - 12)
    assert regions(page) == before

    # In Edit a finger draws a new cover, and a drag on a face's cover still
    # does not move it.
    page.click("#edit")
    assert page.evaluate("getComputedStyle(document.getElementById('overlay')).touchAction") == "none"
    region.scroll_into_view_if_needed()
    x, y = centre(region.bounding_box())
    swipe(page, x, y, x + 80, y + 60)
    assert regions(page)[0] == before[0]
    canvas = page.locator("#canvas").bounding_box()
    swipe(page, canvas["x"] + 10, canvas["y"] + canvas["height"] - 70, canvas["x"] + 70, canvas["y"] + canvas["height"] - 20)
    after = regions(page)
    assert len(after) == len(before) + 1 and not after[-1]["fromFace"]
    assert_faces_covered(review_and_download(page)[0], boxes)
    assert page.errors == []


def test_phone_tap_selects_and_only_the_switch_uncovers(phone):
    page = phone
    open_photo(page, PHOTO)
    region = page.locator("#overlay .region").first
    region.scroll_into_view_if_needed()
    page.touchscreen.tap(*centre(region.bounding_box()))
    settle(page)
    r0 = regions(page)[0]
    assert r0["hidden"] is True and page.evaluate("window.veilPage.state.selected") == r0["id"]
    row = page.locator(f"#region-list li[data-id='{r0['id']}']")
    assert "selected" in row.get_attribute("class")
    row.locator(".keep").tap()
    settle(page)
    assert regions(page)[0]["hidden"] is False
    assert status_counts(page) == truth(page) == (len(regions(page)) - 1, 1, 0)


def test_touch_targets_and_tags(phone):
    page = phone
    open_photo(page, PHOTO)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    small = page.evaluate(
        """() => [...document.querySelectorAll('#work button:not(.region), #work label, #work input[type=range], #work summary')]
              .filter(e => e.offsetParent !== null)
              .map(e => { const r = e.getBoundingClientRect(); return [e.id || e.textContent.trim(), r.width, r.height]; })
              .filter(([, w, h]) => h < 44 || w < 44)"""
    )
    assert small == []
    # Tags never cover each other, and stay inside the photo's frame, below
    # the status line.
    tags = page.evaluate(
        """() => [...document.querySelectorAll('#overlay .tag')].map(t => { const r = t.getBoundingClientRect();
                 return [r.left, r.top, r.right, r.bottom]; })"""
    )
    assert tags
    for i, a in enumerate(tags):
        for b in tags[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    status = page.locator("#status").bounding_box()
    frame = page.locator("#viewport").bounding_box()
    assert all(t[1] >= status["y"] + status["height"] and t[1] >= frame["y"] - 0.5 for t in tags)


def test_zoom_buttons_reach_100_percent_and_pinch_zooms(phone):
    page = phone
    open_photo(page, PHOTO)
    width = page.evaluate("window.veilPage.state.photo.width")
    fit = page.locator("#canvas").bounding_box()["width"]
    assert fit < width
    page.click("#zoom-100")
    settle(page)
    assert abs(page.locator("#canvas").bounding_box()["width"] - width) < 1
    assert page.text_content("#zoom-level") == "100%"
    # Panning at 100%: the frame scrolls over the photo.
    page.evaluate("document.getElementById('viewport').scrollLeft = 200")
    assert page.evaluate("document.getElementById('viewport').scrollLeft") == 200
    # Picking a face in the list brings it into the frame, to check it at 100%.
    last = regions(page)[-1]
    page.locator(f"#region-list li[data-id='{last['id']}'] .pick").tap()
    settle(page)
    box = page.locator(f"#overlay .region[data-id='{last['id']}']").bounding_box()
    frame = page.locator("#viewport").bounding_box()
    cx, cy = centre(box)
    assert frame["x"] <= cx <= frame["x"] + frame["width"] and frame["y"] <= cy <= frame["y"] + frame["height"]
    page.click("#zoom-fit")
    page.click("#zoom-in")
    settle(page)
    assert page.locator("#canvas").bounding_box()["width"] > fit * 1.4
    page.click("#zoom-out")
    settle(page)
    assert abs(page.locator("#canvas").bounding_box()["width"] - fit) < 1
    # Two fingers spreading apart zoom in, and move no cover.
    before = regions(page)
    page.locator("#viewport").scroll_into_view_if_needed()
    frame = page.locator("#viewport").bounding_box()
    cx, cy = centre(frame)
    touch(page, "touchStart", [(cx - 30, cy), (cx + 30, cy)])
    for k in range(1, 11):
        touch(page, "touchMove", [(cx - 30 - 8 * k, cy), (cx + 30 + 8 * k, cy)])
        page.wait_for_timeout(16)
    touch(page, "touchEnd", [])
    settle(page)
    assert page.locator("#canvas").bounding_box()["width"] > fit * 2
    assert regions(page) == before


# ------------------------------------------------- undo, reset, status


def test_undo_redo_restore_the_exact_previous_state(page):
    open_photo(page, PHOTO)
    state = "window.veilPage.state"
    snap = lambda: page.evaluate(  # noqa: E731
        f"""JSON.stringify({{ regions: {state}.regions, method: document.querySelector('input[name=method]:checked').value,
             strength: document.getElementById('strength').value, noise: document.getElementById('noise').checked,
             ellipse: document.getElementById('ellipse').checked }})""")
    history = [snap()]
    assert page.is_disabled("#undo")
    # A series of different edits, each one step.
    page.locator("#region-list li .keep").first.click()  # keep face 1 visible
    history.append(snap())
    page.locator("#viewport").scroll_into_view_if_needed()
    canvas = page.locator("#canvas").bounding_box()
    mouse_drag(page, canvas["x"] + 15, canvas["y"] + canvas["height"] - 90, canvas["x"] + 95, canvas["y"] + canvas["height"] - 30)
    history.append(snap())
    added = regions(page)[-1]
    hx, hy = centre(page.locator(f"#overlay .region[data-id='{added['id']}'] .handle.se").bounding_box())
    mouse_drag(page, hx, hy, hx + 30, hy + 20)
    history.append(snap())
    page.check("input[name=method][value=pixelate]")
    history.append(snap())
    page.uncheck("#ellipse")
    history.append(snap())
    assert len(set(history)) == len(history)
    n = len(history)

    # Undo by button and by Ctrl+Z: each step back is exactly the state before.
    for k in range(n - 1, 0, -1):
        if k % 2:
            page.click("#undo")
        else:
            page.keyboard.press("Control+z")
        settle(page)
        assert snap() == history[k - 1], k
    assert page.is_disabled("#undo")
    # Redo by button, Ctrl+Shift+Z and Ctrl+Y.
    keys = ["#redo", "Control+Shift+z", "Control+y"]
    for k in range(1, n):
        how = keys[k % 3]
        page.click(how) if how.startswith("#") else page.keyboard.press(how)
        settle(page)
        assert snap() == history[k], k
    # The preview after undo equals a full redraw of that state.
    page.keyboard.press("Control+z")
    settle(page)
    incremental = page.evaluate("Array.from(document.getElementById('canvas').getContext('2d').getImageData(0,0,800,571).data.filter((_, i) => i % 97 === 0))")
    page.evaluate("() => { window.veilPage.state.photo.drawn = false; window.veilPage.render(); }")
    full = page.evaluate("Array.from(document.getElementById('canvas').getContext('2d').getImageData(0,0,800,571).data.filter((_, i) => i % 97 === 0))")
    assert incremental == full

    # Reset to detected: every face hidden, nothing added; itself undoable.
    page.click("#reset")
    settle(page)
    rs = regions(page)
    assert all(r["fromFace"] and r["hidden"] for r in rs) and len(rs) == len(faces(page))
    assert [(r["left"], r["top"], r["width"], r["height"]) for r in rs] == [
        (r["floor"]["left"], r["floor"]["top"], r["floor"]["width"], r["floor"]["height"]) for r in rs]
    page.click("#undo")
    settle(page)
    assert snap() == history[n - 2]


def test_status_line_counts_match_the_regions(page):
    open_photo(page, PHOTO)
    n = len(regions(page))
    assert status_counts(page) == truth(page) == (n, 0, 0)
    page.locator("#region-list li .keep").nth(1).click()
    assert status_counts(page) == truth(page) == (n - 1, 1, 0)
    page.click("#add")
    settle(page)
    assert status_counts(page) == truth(page) == (n - 1, 1, 1)
    page.keyboard.press("Delete")  # the new cover has the focus
    settle(page)
    assert status_counts(page) == truth(page) == (n - 1, 1, 0)
    # Keyboard: K on a focused face keeps it visible; arrows never move it.
    first = page.locator("#overlay .region").first
    first.focus()
    box0 = regions(page)[0]
    for key in ["ArrowLeft"] * 5 + ["ArrowUp"] * 5 + ["Shift+ArrowLeft"] * 30 + ["Shift+ArrowUp"] * 30:
        page.keyboard.press(key)
    r = regions(page)[0]
    assert contains(r, box0["floor"]) and (r["left"], r["top"]) == (box0["left"], box0["top"])
    page.keyboard.press("k")
    assert status_counts(page) == truth(page) == (n - 2, 2, 0)
    page.keyboard.press("Control+z")
    assert status_counts(page) == truth(page) == (n - 1, 1, 0)


# -------------------------------------------------------- review, name


def test_review_shows_the_file_and_warns(page, tmp_path):
    named = tmp_path / "IMG_20261130_184512_Place-de-la-Republique.jpg"
    shutil.copy(PHOTO, named)
    open_photo(page, named)
    page.click("#review-open")
    page.wait_for_selector("#review-search[data-faces]:not([data-faces=''])", state="attached", timeout=120_000)
    # The editing view (boxes, tags) is gone; the review shows the encoded file.
    assert page.is_hidden("#work") and page.is_visible("#review-image")
    assert page.get_attribute("#review-visible", "data-kept") == "0"
    assert page.get_attribute("#review-search", "data-faces") == "0"  # solid fill: no face left to find
    assert page.is_hidden("#review-warnings")
    shown = page.evaluate(
        """async () => { const b = await (await fetch(document.getElementById('review-image').src)).arrayBuffer();
                         return Array.from(new Uint8Array(b)); }""")
    with page.expect_download() as info:
        page.click("#download")
    assert Path(info.value.path()).read_bytes() == bytes(shown)  # the review shows exactly the file
    first = info.value.suggested_filename
    page.click("#review-back")

    # A kept face and pixelation: both warned about; the detector finds faces again.
    page.locator("#region-list li .keep").first.click()
    page.check("input[name=method][value=pixelate]")
    page.fill("#strength", "1")
    page.dispatch_event("#strength", "change")
    page.click("#review-open")
    page.wait_for_selector("#review-search[data-faces]:not([data-faces=''])", state="attached", timeout=120_000)
    warnings = page.text_content("#review-warnings")
    assert "kept visible" in warnings and "only solid fill passed" in warnings
    assert page.get_attribute("#review-visible", "data-kept") == "1"
    assert int(page.get_attribute("#review-search", "data-faces")) >= 1
    page.check("input[name=format][value='image/png']")
    with page.expect_download() as info:
        page.click("#download")
    second = info.value.suggested_filename
    data = Path(info.value.path()).read_bytes()
    assert (first, second) == ("veil-1.jpg", "veil-2.png")
    for part in ("IMG", "20261130", "184512", "Place", "Republique"):
        assert part not in first + second
        assert part.encode() not in data


def test_cancel_stops_the_search_and_says_so(browser, base_url):
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        page.goto(base_url)
        page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
        # Hold the search at its first progress report, so Cancel is pressed mid-way.
        page.evaluate("""() => { const d = window.veilPage.state.detector; const detect = d.detect;
            d.detect = (img, o) => new Promise((res, rej) => {
              o.onProgress?.(0, 3, 'whole photo');
              o.signal?.addEventListener('abort', () => rej(new DOMException('stopped', 'AbortError')));
              window.__finish = () => detect(img, o).then(res, rej);
            }); }""")
        page.set_input_files("#file", str(PHOTO))
        page.wait_for_selector("#progress:not([hidden])")
        assert "whole photo" in page.text_content("#progress-text")
        assert page.is_visible("#canvas")  # the photo stays visible while it works
        page.click("#cancel")
        page.wait_for_selector("body[data-detections='1']", state="attached")
        assert page.is_hidden("#progress") and page.is_visible("#search-again")
        assert "stopped" in page.text_content("#caveat")
        page.click("#review-open")
        page.wait_for_selector("#review:not([hidden])")
        assert "not searched" in page.text_content("#review-warnings")
    finally:
        ctx.close()


# -------------------------------------------------------------- inputs


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "gif", "gif-frame", "bmp"])
def test_a_huge_photo_is_refused_from_its_header(page, tmp_path, fmt):
    page.add_init_script(COUNT_DECODES)
    page.reload()
    page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
    if fmt == "png":
        data = png_header_only(20000, 20000)
    elif fmt == "jpeg":
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 20000, 20000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        data = b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", 66) + b"Exif\0\0" + b"\0" * 58 + sof + b"\xff\xda\0\x08\x01\x01\x00\x00\x3f\x00" + b"\0" * 32 + b"\xff\xd9"
    elif fmt == "webp":
        body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (19999).to_bytes(3, "little") + (19999).to_bytes(3, "little")
        data = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
    elif fmt == "gif":
        data = b"GIF89a" + struct.pack("<HH", 20000, 20000) + b"\0\0\0" + b";"
    elif fmt == "gif-frame":
        # A 1 x 1 screen, a comment extension, then a 20000 x 20000 frame.
        data = (b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x80\0\0" + b"\0" * 6 + b"\x21\xfe\x03abc\0"
                + b"\x2c" + struct.pack("<HHHH", 0, 0, 20000, 20000) + b"\0" + b"\x08\x02\x4c\x01\0" + b";")
    else:
        # Run-length encoded: 400 MP in about a kilobyte (a real bomb format).
        offset = 14 + 40 + 256 * 4
        data = (b"BM" + struct.pack("<IHHI", offset + 2, 0, 0, offset)
                + struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 8, 1, 2, 0, 0, 256, 0) + b"\0" * 1024 + b"\0\1")
    path = tmp_path / f"huge.{fmt.split('-')[0]}"
    path.write_bytes(data)
    assert len(data) < 2000
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "too large (20000 x 20000)" in page.text_content("#error")
    assert page.evaluate("window.__decodes") == 0
    assert page.evaluate("window.veilPage.state.photo") is None
    # A normal photo still opens (and is decoded) afterwards.
    open_photo(page, PHOTO)
    assert page.evaluate("window.__decodes") == 1


def test_non_image_and_truncated_files_get_a_clear_message(page, tmp_path):
    from PIL import Image

    cases = {}
    (tmp_path / "notes.jpg").write_text("shopping list: milk, bread\n")
    cases["notes.jpg"] = "not a photo"
    jpeg = PHOTO.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    cases["cut.jpg"] = "cut short"
    buf = io.BytesIO()
    Image.open(PHOTO).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases["cut.png"] = "cut short"
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "empty"
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64
    (tmp_path / "photo.heic").write_bytes(heic)
    cases["photo.heic"] = "damaged"  # an HEIC header with no image in it
    for name, words in cases.items():
        page.evaluate("() => { document.getElementById('error').hidden = true; }")
        page.set_input_files("#file", str(tmp_path / name))
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        text = page.text_content("#error")
        assert words in text, (name, text)
        assert page.evaluate("window.veilPage.state.photo") is None, name


# --------------------------------------------------------------- brush


def test_brush_paints_a_cover_along_the_stroke(page):
    open_photo(page, PHOTO)
    n = len(regions(page))
    page.click("#brush")
    assert page.get_attribute("#brush", "aria-pressed") == "true"
    page.locator("#viewport").scroll_into_view_if_needed()
    canvas = page.locator("#canvas").bounding_box()
    w, h = page.evaluate("[window.veilPage.state.photo.width, window.veilPage.state.photo.height]")
    scale = w / canvas["width"]
    # A stroke across the lower left of the photo (a sign, say), in a zigzag.
    path = [(0.05, 0.80), (0.15, 0.70), (0.25, 0.85), (0.35, 0.75)]
    page.mouse.move(canvas["x"] + path[0][0] * canvas["width"], canvas["y"] + path[0][1] * canvas["height"])
    page.mouse.down()
    for fx, fy in path[1:]:
        page.mouse.move(canvas["x"] + fx * canvas["width"], canvas["y"] + fy * canvas["height"], steps=6)
    page.mouse.up()
    settle(page)
    rs = regions(page)
    assert len(rs) == n + 1
    stroke = rs[-1]
    assert not stroke["fromFace"] and len(stroke["dabs"]) > 10
    assert status_counts(page) == truth(page) == (n, 0, 1)
    # Consecutive dabs overlap: the stroke is one unbroken cover.
    d = np.diff(np.array(stroke["dabs"]), axis=0)
    assert np.hypot(d[:, 0], d[:, 1]).max() <= stroke["radius"] / 2 + 1e-6
    page.click("#brush")  # off again, so the review's download is a plain click
    px = pixels_of(review_and_download(page)[0])
    # Every pixel along the painted path is covered (solid: black).
    for (ax, ay), (bx, by) in zip(path, path[1:]):
        for t in np.linspace(0, 1, 25):
            x = (ax + (bx - ax) * t) * w
            y = (ay + (by - ay) * t) * h
            assert px[int(y), int(x)].max() == 0, (x, y)
    assert stroke["radius"] == pytest.approx(12 * scale, rel=0.02)
    # One undo removes the whole stroke.
    page.keyboard.press("Control+z")
    assert len(regions(page)) == n
