"""The browser page, in real headless Chromium: detection agrees with the
Python package, downloads hide faces and carry no metadata, nothing leaves
the page's origin, the controls work by mouse, keyboard and on a phone.

See conftest.py for when these skip.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails, in CI) with the reason
    expect = None

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
GROUPS = ROOT.parent / "shared" / "data" / "faces" / "groups"

# Photos with several faces (and one with none) whose face count the page
# must get exactly as veil.detect does. Project fixtures always; the shared
# photos when ../shared/data is present. bald_guys and obama_and_biden are
# large enough to take the fine pass and the tiles too.
PHOTOS = [FIXTURES / "two_faces.jpg", FIXTURES / "portrait.jpg"] + [
    GROUPS / name for name in ("2008_002470.jpg", "2008_001322.jpg", "bald_guys.jpg", "obama_and_biden.jpg", "dogs.jpg")
]


def photo_param(path: Path):
    marks = []
    if not path.is_file():
        marks.append(pytest.mark.skip(reason=f"{path} absent (shared photos are not in a fresh clone)"))
    return pytest.param(path, id=path.name, marks=marks)


def open_photo(page, path, timeout_ms: int = 300_000) -> dict:
    """Opens a photo in the page through its file input and waits for detection."""
    before = int(page.evaluate("window.veilPage.state.detections"))
    page.set_input_files("#file", str(path))
    page.wait_for_selector(f"body[data-detections='{before + 1}']", state="attached", timeout=timeout_ms)
    return page.evaluate(
        """() => {
          const s = window.veilPage.state;
          return {
            width: s.photo.width, height: s.photo.height,
            faces: s.detection ? s.detection.faces.map(f => [f.left, f.top, f.right, f.bottom, f.score]) : null,
            regions: s.regions.map(r => ({ left: r.left, top: r.top, width: r.width, height: r.height, hidden: r.hidden })),
            error: window.veilPage.lastError,
          };
        }"""
    )


def python_faces(path: Path):
    from veil.detect import detect_faces
    from veil.io import load_image

    pixels = load_image(path).pixels
    return pixels, detect_faces(pixels)


def settle(page) -> None:
    """Waits until the page has drawn what the last input changed (it redraws once per frame)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def download(page, button: str) -> bytes:
    """Downloads through the review step; `button` names the format as the
    page's old buttons did ("#download-jpeg" or "#download-png")."""
    fmt = "image/png" if button.endswith("png") else "image/jpeg"
    page.click("#review-open")
    page.wait_for_selector("#review:not([hidden])")
    page.check(f"input[name=format][value='{fmt}']")
    with page.expect_download() as info:
        page.click("#download")
    data = Path(info.value.path()).read_bytes()
    page.click("#review-back")
    page.wait_for_selector("#work:not([hidden])")
    return data


# ---------------------------------------------------------------- serving


def test_server_sends_isolation_csp_and_mime_types(base_url):
    def head(path):
        with urllib.request.urlopen(base_url + path) as r:
            return r.headers

    page = head("")
    assert page["Cross-Origin-Opener-Policy"] == "same-origin"
    assert page["Cross-Origin-Embedder-Policy"] == "require-corp"
    csp = page["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page["Content-Type"].startswith("text/html")
    assert head("veil_wasm.wasm")["Content-Type"] == "application/wasm"
    assert head("ort/ort-wasm-simd-threaded.mjs")["Content-Type"].startswith("text/javascript")
    assert head("ort/ort-wasm-simd-threaded.wasm")["Content-Type"] == "application/wasm"
    for missing in ("models/", "nothing-here.js", "../Cargo.toml", "%2e%2e/Cargo.toml"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base_url + missing)
        err.value.close()
        assert err.value.code == 404, missing


def test_page_is_isolated_and_loads_everything(page):
    assert page.evaluate("crossOriginIsolated") is True
    assert page.evaluate("window.veilPage.state.detector !== null")
    assert page.errors == []


# -------------------------------------------------------------- detection


@pytest.mark.parametrize("path", [photo_param(p) for p in PHOTOS])
def test_face_count_matches_python(page, path):
    pixels, expected = python_faces(path)
    got = open_photo(page, path)
    assert got["error"] is None
    assert (got["height"], got["width"]) == pixels.shape[:2]
    assert len(got["faces"]) == len(expected), (got["faces"], [f.box for f in expected])
    # Same preprocessing, decoding and suppression: the boxes agree too, up
    # to the float noise between onnxruntime-web and native onnxruntime.
    unmatched = [[*f.box, f.score] for f in expected]
    for box in got["faces"]:
        best = min(unmatched, key=lambda face: np.abs(np.subtract(box[:4], face[:4])).max())
        assert np.allclose(box[:4], best[:4], atol=1.0), (box, best)
        assert abs(box[4] - best[4]) < 0.01
        unmatched.remove(best)
    assert len(got["regions"]) == len(expected) and all(r["hidden"] for r in got["regions"])


# ---------------------------------------------------- hiding and download


@pytest.fixture()
def dirty_rotated_photo(tmp_path) -> Path:
    """two_faces.jpg stored rotated, with EXIF orientation 6 saying how to
    turn it upright, plus GPS, serials, a thumbnail, XMP, IPTC, comments, an
    MPF second image and a hidden trailing JPEG."""
    from PIL import Image

    import _imagefiles as f

    upright = np.asarray(Image.open(FIXTURES / "two_faces.jpg").convert("RGB"))
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # orientation 6 turns it back clockwise
    path = tmp_path / "dirty.jpg"
    path.write_bytes(f.dirty_jpeg(stored, orientation=6))
    return path


def jpeg_markers(data: bytes) -> list:
    """The markers of a JPEG's segments, up to its first scan, plus EOI."""
    markers, i = [0xD8], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return markers


def face_masks(shape, faces, inner: float = 0.6, outer: float = 1.3 * 1.1):
    """Boolean masks: the centre of every face box (scaled by `inner`), and
    everything outside every face's region grown by `outer` (the page hides
    the box grown by 1.3, with a soft edge)."""
    h, w = shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    inside = np.zeros((h, w), bool)
    near = np.zeros((h, w), bool)
    for face in faces:
        l, t, r, b = face.box
        cx, cy, fw, fh = (l + r) / 2, (t + b) / 2, r - l, b - t
        inside |= (abs(xs + 0.5 - cx) <= fw * inner / 2) & (abs(ys + 0.5 - cy) <= fh * inner / 2)
        near |= (abs(xs + 0.5 - cx) <= fw * outer / 2 + 2) & (abs(ys + 0.5 - cy) <= fh * outer / 2 + 2)
    return inside, ~near


def test_pixelate_download_hides_faces_and_strips_metadata(page, dirty_rotated_photo):
    from PIL import Image

    import _imagefiles as f

    original, faces = python_faces(dirty_rotated_photo)
    assert len(faces) >= 2
    got = open_photo(page, dirty_rotated_photo)
    # Orientation applied to the pixels: the page's photo is upright.
    assert (got["height"], got["width"]) == original.shape[:2] == (571, 800)
    # Solid is the default (the measured-safest method); this test pixelates.
    assert page.is_checked("input[name=method][value=solid]")
    page.check("input[name=method][value=pixelate]")

    data = download(page, "#download-jpeg")
    out = Image.open(io.BytesIO(data))
    assert out.format == "JPEG" and out.size == (800, 571)
    # No metadata of any kind: no EXIF (so no GPS, serial or thumbnail), no
    # XMP, IPTC, comment, MPF, ICC or trailing data.
    assert len(out.getexif()) == 0 and "exif" not in out.info
    assert set(out.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density", "progressive", "progression"}, out.info
    markers = jpeg_markers(data)
    assert set(markers) <= {0xD8, 0xE0, 0xDB, 0xC4, 0xC0, 0xC2, 0xDD, 0xDA, 0xD9}, [hex(m) for m in markers]
    assert b"Exif\x00\x00" not in data and b"http://ns.adobe.com/xap" not in data and b"MPF\x00" not in data
    for secret in (f.SECRET_SERIAL, f.SECRET_OWNER, f.SECRET_MAKE, f.SECRET_XMP, f.SECRET_IPTC,
                   f.SECRET_COMMENT, f.SECRET_TRAILER):
        assert secret not in data
    assert data.endswith(b"\xff\xd9")

    pixels = np.asarray(out.convert("RGB")).astype(np.int16)
    diff = np.abs(pixels - original.astype(np.int16)).mean(axis=2)
    inside, outside = face_masks(original.shape, faces)
    for face in faces:
        l, t, r, b = (int(round(v)) for v in face.box)
        face_diff = diff[t:b, l:r].mean()
        assert face_diff > 10, f"face {face.box} barely changed: mean difference {face_diff:.1f}"
    assert diff[inside].mean() > 15
    # Elsewhere only JPEG re-encoding (quality 0.92) differs.
    assert diff[outside].mean() < 2.0
    assert np.percentile(diff[outside], 99.9) < 20

    # PNG is lossless: away from the faces it is the decoded photo itself
    # (up to the two JPEG decoders' rounding).
    png = Image.open(io.BytesIO(download(page, "#download-png")))
    assert png.format == "PNG" and png.size == (800, 571)
    assert not ({"exif", "xmp", "icc_profile", "XML:com.adobe.xmp", "srgb", "gamma"} & set(png.info)), png.info
    png_diff = np.abs(np.asarray(png.convert("RGB")).astype(np.int16) - original.astype(np.int16))
    assert png_diff[outside].max() <= 2
    assert page.errors == []


def test_no_request_leaves_the_origin(page, base_url, requests_log, dirty_rotated_photo):
    open_photo(page, dirty_rotated_photo)
    page.check("input[name=method][value=blur]")
    download(page, "#download-jpeg")
    assert requests_log.urls, "no requests were recorded"
    assert requests_log.off_origin(base_url) == []
    # The model and both wasm modules came from the page's own origin.
    for part in ("models/centerface.onnx", "veil_wasm.wasm", "ort-wasm-simd-threaded.wasm"):
        assert any(u.startswith(base_url) and u.endswith(part) for u in requests_log.urls), part


def test_csp_blocks_requests_to_other_origins(page):
    result = page.evaluate(
        """async () => {
          const violations = [];
          document.addEventListener('securitypolicyviolation', e => violations.push(e.violatedDirective));
          let fetched;
          try { await fetch('http://192.0.2.1/leak'); fetched = 'sent'; } catch (e) { fetched = 'blocked'; }
          const img = new Image();
          const loaded = await new Promise(r => { img.onload = () => r('sent'); img.onerror = () => r('blocked'); img.src = 'http://192.0.2.1/pixel.png'; });
          await new Promise(r => setTimeout(r, 50));
          return { fetched, loaded, violations };
        }"""
    )
    assert result["fetched"] == "blocked" and result["loaded"] == "blocked"
    assert "connect-src" in result["violations"] and "img-src" in result["violations"]


# ----------------------------------------------------------- interaction


def region_buttons(page):
    return page.query_selector_all("#overlay .region")


def canvas_pixels(page):
    return np.array(
        page.evaluate(
            """() => { const c = document.getElementById('canvas');
                      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""
        ),
        dtype=np.uint8,
    )


def test_click_keeps_a_face_and_drag_adds_a_region(page):
    got = open_photo(page, FIXTURES / "two_faces.jpg")
    n = len(got["regions"])
    assert n >= 2
    first = page.locator("#overlay .region").first
    box = first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # A click on a face's cover only selects it; its "Keep visible" switch shows it.
    assert page.evaluate("window.veilPage.state.regions[0].hidden") is True
    keep = page.locator("#region-list li .keep").first
    expect(keep).to_have_attribute("aria-pressed", "false")
    keep.click()
    expect(keep).to_have_attribute("aria-pressed", "true")  # kept visible
    assert page.evaluate("window.veilPage.state.regions[0].hidden") is False

    # The kept face shows the original pixels again.
    settle(page)
    r = got["regions"][0]
    shown = canvas_pixels(page).reshape(got["height"], got["width"], 4)
    original = np.array(page.evaluate(
        "() => Array.from(window.veilPage.state.photo.original.data)"), dtype=np.uint8).reshape(shown.shape)
    t, l = int(r["top"]), int(r["left"])
    crop = (slice(t, t + int(r["height"])), slice(l, l + int(r["width"])))
    assert np.array_equal(shown[crop], original[crop])

    # Dragging on an empty part of the photo adds a hidden region there.
    canvas = page.query_selector("#canvas").bounding_box()
    x0, y0 = canvas["x"] + 5, canvas["y"] + canvas["height"] - 60
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 40, y0 + 30, steps=5)
    page.mouse.move(x0 + 80, y0 + 50, steps=5)
    page.mouse.up()
    settle(page)
    regions = page.evaluate("window.veilPage.state.regions")
    assert len(regions) == n + 1 and regions[-1]["hidden"] and not regions[-1]["fromFace"]
    scale = got["width"] / canvas["width"]
    assert abs(regions[-1]["width"] - 80 * scale) < 3 * scale

    # A corner handle resizes the selected region.
    handle = page.query_selector(f"#overlay .region[data-id='{regions[-1]['id']}'] .handle.se").bounding_box()
    hx, hy = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(hx, hy)
    page.mouse.down()
    page.mouse.move(hx + 20, hy + 10, steps=4)
    page.mouse.up()
    settle(page)
    resized = page.evaluate("window.veilPage.state.regions.at(-1)")
    assert resized["width"] > regions[-1]["width"] + 10 * scale
    assert page.errors == []


def test_keyboard_toggles_moves_and_adds(page):
    open_photo(page, FIXTURES / "two_faces.jpg")
    first = page.locator("#overlay .region").first
    first.focus()
    page.keyboard.press("k")
    assert page.evaluate("window.veilPage.state.regions[0].hidden") is False
    page.keyboard.press("k")
    assert page.evaluate("window.veilPage.state.regions[0].hidden") is True
    # A cover you added moves with the arrows (a face's cover does not).
    page.click("#add")
    before = page.evaluate("window.veilPage.state.regions.at(-1).left")
    for key in ["ArrowRight"] * 6 + ["Shift+ArrowDown"] * 4 + ["ArrowUp"] * 3:
        page.keyboard.press(key)
    assert page.evaluate("window.veilPage.state.regions.at(-1).left") > before
    page.keyboard.press("Delete")
    # The preview is redrawn only where regions are or were: after moving and
    # resizing it must equal a redraw of the whole photo.
    settle(page)
    incremental = canvas_pixels(page)
    page.evaluate("() => { window.veilPage.state.photo.drawn = false; window.veilPage.render(); }")
    assert np.array_equal(incremental, canvas_pixels(page))
    n = len(region_buttons(page))
    page.click("#add")  # "Add a box" focuses the new box
    settle(page)
    assert len(region_buttons(page)) == n + 1
    assert page.evaluate("document.activeElement.classList.contains('region')")
    page.keyboard.press("Delete")
    settle(page)
    assert len(region_buttons(page)) == n
    # Every control can be reached with Tab. Strength applies to pixelate and
    # blur (solid, the default, has none).
    assert page.is_disabled("#strength")
    page.check("input[name=method][value=pixelate]")
    page.focus("#strength")
    page.keyboard.press("ArrowRight")
    assert page.input_value("#strength") == "8"


def test_fits_a_phone_screen(browser, base_url):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=3, is_mobile=True,
                              has_touch=True)
    try:
        page = ctx.new_page()
        page.goto(base_url)
        page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
        open_photo(page, FIXTURES / "two_faces.jpg")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        canvas = page.query_selector("#canvas").bounding_box()
        assert canvas["x"] >= 0 and canvas["x"] + canvas["width"] <= 390
        for button in ("#review-open", "#add"):
            b = page.query_selector(button).bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= 390 and b["height"] >= 40
        # A tap on a face's "Keep visible" switch shows it.
        keep = page.locator("#region-list li .keep").first
        keep.tap()
        expect(keep).to_have_attribute("aria-pressed", "true")
    finally:
        ctx.close()


def test_rejects_a_file_that_is_not_a_photo(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "could not be read" in page.text_content("#error")


def test_download_filter_keeps_pixels_and_drops_every_metadata_block(page):
    """clean.js, the whitelist every download passes through, on files that
    carry every kind of metadata (including a progressive JPEG)."""
    import base64

    from PIL import Image

    import _imagefiles as f

    pixels = f.asymmetric_rgb(48, 64)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, progressive=True)
    inputs = {"dirty.jpg": f.dirty_jpeg(pixels), "progressive.jpg": buf.getvalue(), "dirty.png": f.dirty_png(pixels)}
    for name, data in inputs.items():
        cleaned = base64.b64decode(page.evaluate(
            """async ([b64, png]) => {
              const { cleanJpeg, cleanPng } = await import('./clean.js');
              const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              const out = png ? cleanPng(bytes) : cleanJpeg(bytes);
              let s = ''; for (const b of out) s += String.fromCharCode(b);
              return btoa(s);
            }""",
            [base64.b64encode(data).decode(), name.endswith(".png")],
        ))
        before, after = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(cleaned))
        assert np.array_equal(np.asarray(before.convert("RGB")), np.asarray(after.convert("RGB"))), name
        assert len(after.getexif()) == 0, name
        for secret in (f.SECRET_SERIAL, f.SECRET_OWNER, f.SECRET_MAKE, f.SECRET_XMP, f.SECRET_IPTC, f.SECRET_COMMENT,
                       f.SECRET_TRAILER, f.SECRET_PNG_TEXT, f.SECRET_PNG_ITXT, f.SECRET_PNG_ZTXT, f.SECRET_ICC_DESC):
            assert secret not in cleaned, (name, secret)
        if name.endswith(".jpg"):
            assert set(jpeg_markers(cleaned)) <= {0xD8, 0xE0, 0xDB, 0xC4, 0xC0, 0xC2, 0xDD, 0xDA}, name
            assert cleaned.endswith(b"\xff\xd9") and cleaned.count(b"\xff\xd8") == 1


@pytest.mark.parametrize("how, fmt", [("drop", "PNG"), ("paste", "WEBP")])
def test_drop_and_paste_open_a_photo(page, how, fmt):
    """A photo dropped on the page or pasted into it is opened like a chosen
    file (PNG and WebP here; the file-input tests use JPEG)."""
    import base64

    from PIL import Image

    upright = Image.open(FIXTURES / "two_faces.jpg").convert("RGB")
    buf = io.BytesIO()
    upright.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    mime = "image/png" if fmt == "PNG" else "image/webp"
    page.evaluate(
        """([b64, mime, how]) => {
          const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], 'photo', { type: mime }));
          const event = how === 'drop'
            ? new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })
            : new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
          document.body.dispatchEvent(event);
        }""",
        [base64.b64encode(buf.getvalue()).decode(), mime, how],
    )
    page.wait_for_selector("body[data-detections='1']", state="attached", timeout=120_000)
    got = page.evaluate("({ w: window.veilPage.state.photo.width, n: window.veilPage.state.detection.faces.length })")
    _, expected = python_faces(FIXTURES / "two_faces.jpg")
    assert got == {"w": upright.width, "n": len(expected)}
