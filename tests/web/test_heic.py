"""HEIC/HEIF photos (the iPhone's format) open in the page through
libheif-js, served from the page's own origin, rotated as their header says,
and the same faces are found as by the Python package (which reads HEIC
through pillow-heif). A huge HEIC is refused from its header.

See conftest.py for when these skip.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from test_editing import COUNT_DECODES, open_photo

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests" / "fixtures" / "two_faces.jpg"


@pytest.fixture()
def heic_photo(tmp_path) -> Path:
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    pillow_heif.register_heif_opener()
    path = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(Image.open(PHOTO).convert("RGB")).save(path, quality=92)
    return path


def test_heic_opens_and_faces_are_found(page, heic_photo, base_url, requests_log):
    from veil.detect import detect_faces
    from veil.io import load_image

    pixels = load_image(heic_photo).pixels
    expected = detect_faces(pixels)
    open_photo(page, heic_photo)
    got = page.evaluate("""() => { const s = window.veilPage.state;
        return { w: s.photo.width, h: s.photo.height, n: s.detection.faces.length, error: window.veilPage.lastError }; }""")
    assert got["error"] is None
    assert (got["h"], got["w"]) == pixels.shape[:2]
    assert got["n"] == len(expected) >= 2
    # The page's pixels agree with pillow-heif's decode of the same file (two
    # HEVC decoders, up to rounding).
    shown = np.array(page.evaluate("() => Array.from(window.veilPage.state.photo.original.data)"), dtype=np.int16)
    shown = shown.reshape(got["h"], got["w"], 4)[..., :3]
    assert np.abs(shown - pixels.astype(np.int16)).mean() < 2.0
    # libheif came from the page's own origin, and nothing else was asked for.
    assert any(u.startswith(base_url) and u.endswith("heif/libheif-bundle.mjs") for u in requests_log.urls)
    assert requests_log.off_origin(base_url) == []
    assert page.errors == []


def test_huge_heic_is_refused_from_its_header(page, tmp_path):
    page.add_init_script(COUNT_DECODES)
    page.reload()
    page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)

    def box(kind: bytes, body: bytes, full: bool = False) -> bytes:
        body = (b"\0\0\0\0" + body) if full else body
        return struct.pack(">I", 8 + len(body)) + kind + body

    ispe = box(b"ispe", struct.pack(">II", 20000, 20000), full=True)
    meta = box(b"meta", box(b"hdlr", b"\0" * 4 + b"pict" + b"\0" * 13, full=True) + box(b"iprp", box(b"ipco", ispe)),
               full=True)
    data = box(b"ftyp", b"heic\0\0\0\0mif1heic") + meta + box(b"mdat", b"\0" * 16)
    path = tmp_path / "huge.heic"
    path.write_bytes(data)
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "too large (20000 x 20000)" in page.text_content("#error")
    assert page.evaluate("window.__decodes") == 0
    # libheif was not even loaded.
    assert page.evaluate("performance.getEntriesByType('resource').some(e => e.name.includes('libheif'))") is False
