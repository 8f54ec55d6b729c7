"""veil.web: the static server for the page (no browser needed)."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from veil import web


@pytest.fixture()
def site(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "x.mjs").write_text("export {};")
    return tmp_path


def serve_in_thread(root):
    server = web.make_server(root, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_address[1]}/"


def test_headers_and_mime_types(site):
    server, thread, url = serve_in_thread(site)
    try:
        for path, mime in [("", "text/html"), ("m.wasm", "application/wasm"), ("x.mjs", "text/javascript")]:
            with urllib.request.urlopen(url + path) as r:
                assert r.headers["Content-Type"].split(";")[0] == mime
                for name, value in web.SECURITY_HEADERS.items():
                    assert r.headers[name] == value
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_a_dropped_connection_prints_no_traceback(site, capsys):
    (site / "big.bin").write_bytes(b"\0" * (8 << 20))
    server, thread, url = serve_in_thread(site)
    try:
        import socket

        host, port = server.server_address[:2]
        for _ in range(3):
            with socket.create_connection((host, port)) as conn:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # reset on close
                conn.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                conn.recv(1024)
        with urllib.request.urlopen(url) as r:  # still serving
            assert r.status == 200
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert "Traceback" not in capsys.readouterr().err


def test_policy_keeps_requests_on_the_origin():
    directives = dict(d.split(" ", 1) for d in web.CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    for name in ("script-src", "connect-src", "img-src", "worker-src", "style-src"):
        sources = directives[name].split()
        assert "'self'" in sources
        assert all(s in ("'self'", "'wasm-unsafe-eval'", "blob:", "data:") for s in sources), name
    assert "'unsafe-eval'" not in web.CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in web.CONTENT_SECURITY_POLICY


def test_missing_build_is_a_clear_error(tmp_path, capsys):
    assert web.main(["--root", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    assert "scripts/build_web.sh" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        web.make_server(tmp_path)


def test_default_root(monkeypatch, site):
    monkeypatch.setenv("VEIL_WEB_ROOT", str(site))
    assert web.default_root() == site
    monkeypatch.delenv("VEIL_WEB_ROOT")
    assert web.default_root().parts[-2:] in (("web", "dist"), ("veil", "_web"))
