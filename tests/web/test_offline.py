"""The page works offline and installs as an app: a service worker caches
everything on the first visit, so a reload with the server stopped still
opens a photo and finds its faces; the manifest and icons make it
installable; static files are sent precompressed (gzip).

See conftest.py for when these skip.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
import urllib.request
from pathlib import Path

from test_editing import PHOTO, open_photo


def fetch(url: str, encoding: str = "") -> tuple:
    req = urllib.request.Request(url, headers={"Accept-Encoding": encoding} if encoding else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read(), r.headers


def count_sent_bytes(server) -> list:
    """Counts every byte ``server`` writes to its clients, in the list's one item."""
    sent = [0]
    make = server.RequestHandlerClass  # a functools.partial of the handler class

    class Counting(make.func):
        def setup(self):
            super().setup()
            raw = self.wfile

            class Writer:
                def write(self, data):
                    sent[0] += len(data)
                    return raw.write(data)

                def __getattr__(self, name):
                    return getattr(raw, name)

            self.wfile = Writer()

    server.RequestHandlerClass = functools.partial(Counting, *make.args, **make.keywords)
    return sent


def test_static_files_are_sent_precompressed(base_url, web_dist):
    for name in ("app.js", "ort/ort-wasm-simd-threaded.wasm", "veil_wasm.wasm", "index.html"):
        raw = (web_dist / name).read_bytes()
        packed, headers = fetch(base_url + name, "br;q=1.0, gzip;q=0.8")
        assert headers["Content-Encoding"] == "gzip" and int(headers["Content-Length"]) == len(packed), name
        assert len(packed) < 0.9 * len(raw) and gzip.decompress(packed) == raw, name
        assert headers["Vary"] == "Accept-Encoding"
        plain, headers = fetch(base_url + name)
        assert headers["Content-Encoding"] is None and plain == raw, name
        plain, headers = fetch(base_url + name, "gzip;q=0")
        assert headers["Content-Encoding"] is None and plain == raw, name
    # Content types are those of the file, not of the .gz.
    assert fetch(base_url + "veil_wasm.wasm", "gzip")[1]["Content-Type"] == "application/wasm"
    assert fetch(base_url + "app.js", "gzip")[1]["Content-Type"].startswith("text/javascript")


def test_manifest_makes_it_installable(base_url, web_dist):
    manifest = json.loads(fetch(base_url + "manifest.webmanifest")[0])
    assert fetch(base_url + "manifest.webmanifest")[1]["Content-Type"] == "application/manifest+json"
    assert manifest["display"] == "standalone" and manifest["start_url"] == "./"
    sizes = {icon["sizes"] for icon in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    from PIL import Image

    for icon in manifest["icons"]:
        data = fetch(base_url + icon["src"])[0]
        assert Image.open(__import__("io").BytesIO(data)).size == tuple(int(v) for v in icon["sizes"].split("x"))


def test_reload_works_with_the_server_stopped(browser, web_dist):
    from veil.web import make_server

    server = make_server(web_dist, port=0, quiet=True)
    sent = count_sent_bytes(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    ctx = browser.new_context(service_workers="allow")
    try:
        page = ctx.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-state=idle]", state="attached", timeout=120_000)
        # Bounded: a service worker whose install fails never becomes ready.
        page.evaluate("""() => Promise.race([window.veilPage.offline,
            new Promise((_, no) => setTimeout(() => no(new Error('service worker not ready in 60 s')), 60000))])""")
        assert page.evaluate("window.veilPage.offlineError || null") is None
        # The service worker cached every file it lists.
        cached = page.evaluate("""async () => { const c = await caches.open('veil-page-v1');
            return (await c.keys()).map(r => new URL(r.url).pathname); }""")
        for part in ("/", "/app.js", "/veil_wasm.wasm", "/models/centerface.onnx", "/ort/ort-wasm-simd-threaded.wasm"):
            assert part in cached, (part, cached)
        # First visit: the bytes the server sent (headers included) for the
        # page and everything it and its workers loaded, up to offline-ready.
        first = sent[0]
        assert first > 0
        print(f"first visit transferred {first / 1e6:.2f} MB")
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    try:
        # The server is gone: the page reloads from the cache, starts, and
        # finds the faces of a photo.
        page.reload()
        page.wait_for_selector("body[data-state=idle], body[data-state=error]", state="attached", timeout=120_000)
        assert page.evaluate("document.body.dataset.state") == "idle", page.evaluate("window.veilPage.lastError")
        assert page.evaluate("window.veilPage.state.detector !== null")
        assert page.evaluate("crossOriginIsolated") is True
        open_photo(page, PHOTO)
        assert page.evaluate("window.veilPage.state.detection.faces.length") >= 2
    finally:
        ctx.close()
