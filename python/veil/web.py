"""Serve veil's browser page (``veil web``).

The page runs entirely in the browser: the photo is decoded, searched for
faces (onnxruntime-web + CenterFace) and anonymized (veil's Rust core compiled
to WebAssembly) on the device; this server only hands out the page's static
files. It sends:

* ``Cross-Origin-Opener-Policy: same-origin`` and
  ``Cross-Origin-Embedder-Policy: require-corp``, which make the page
  cross-origin isolated so onnxruntime-web can use threads;
* a ``Content-Security-Policy`` that keeps every request on the page's own
  origin (the page carries the same policy in a ``<meta>`` tag, for when it
  is served by something else);
* files precompressed by ``scripts/build_web.sh`` (``X.gz`` beside ``X``)
  with ``Content-Encoding: gzip`` to clients that accept it;
* the right MIME types (``application/wasm`` for ``.wasm``, which streaming
  compilation requires; ``text/javascript`` for ``.mjs``).

Where the page comes from (``root=None``), first match wins:

1. the ``VEIL_WEB_ROOT`` environment variable;
2. the copy packaged with veil, ``veil/_web/``: ``scripts/build_web.sh``
   copies ``web/dist`` there and a wheel built afterwards carries it
   (pyproject.toml's ``[tool.maturin] include``);
3. ``web/dist`` of the source checkout this module lives in, built by
   ``scripts/build_web.sh``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = ["serve", "make_server", "default_root", "main", "CONTENT_SECURITY_POLICY", "SECURITY_HEADERS"]

#: Every fetch, script, worker and image stays on the page's origin. blob: and
#: data: URLs are made by the page itself (the download link, onnxruntime's
#: workers); 'wasm-unsafe-eval' allows compiling WebAssembly, nothing else.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self' blob:",
        "connect-src 'self' blob: data:",
        "img-src 'self' blob: data:",
        "style-src 'self'",
        "font-src 'self'",
        "media-src 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is small and rebuilt often; never serve a stale wasm module.
    "Cache-Control": "no-cache",
}

_MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".map": "application/json",
    ".ts": "text/plain",
    ".webmanifest": "application/manifest+json",
}


def default_root() -> Path:
    """The built page to serve when no root is given (see the module notes)."""
    env = os.environ.get("VEIL_WEB_ROOT", "").strip()
    if env:
        return Path(env)
    packaged = Path(__file__).resolve().parent / "_web"
    if (packaged / "index.html").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "web" / "dist"


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **_MIME_TYPES}
    quiet = False

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Vary", "Accept-Encoding")
        super().end_headers()

    def send_head(self):
        """Serves ``X.gz`` (written by scripts/build_web.sh) in place of ``X``
        to a client that accepts gzip: the model and the wasm modules are
        most of the page's weight, and compress by half or more."""
        path = self.translate_path(self.path)
        packed = path + ".gz"
        if self.path.endswith("/") or not (_accepts_gzip(self.headers.get("Accept-Encoding", ""))
                                           and os.path.isfile(path) and os.path.isfile(packed)):
            return super().send_head()
        f = open(packed, "rb")
        try:
            stat = os.fstat(f.fileno())
            self.send_response(200)
            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(stat.st_size))
            self.send_header("Last-Modified", self.date_time_string(int(os.stat(path).st_mtime)))
            self.end_headers()
            return f
        except BaseException:
            f.close()
            raise

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        problem = _bad_request_path(self.path)
        if problem:
            self.send_error(400, f"Bad request path: {problem}")
            return False
        return True

    def list_directory(self, path):  # no directory listings
        self.send_error(404, "Not found")
        return None

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def _accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (and not with q=0)."""
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False

def _bad_request_path(target: str) -> str:
    """Why a request path cannot name a file of the page ('' if it can): a
    percent-encoded NUL or control byte, or bytes that are not valid UTF-8
    (overlong forms such as ``%C0%AE`` included: Python's decoder refuses
    them). Checked before the path reaches the filesystem, where a NUL would
    raise instead of answering."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    try:
        # http.server decodes the request line as ISO-8859-1: back to its bytes.
        raw = urllib.parse.unquote_to_bytes(path.encode("latin-1"))
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if any(b < 0x20 or b == 0x7F for b in raw):
        return "control character or NUL"
    try:
        raw.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    return ""


def _check_root(root: Union[str, os.PathLike, None]) -> Path:
    path = Path(root) if root is not None else default_root()
    if not (path / "index.html").is_file():
        raise FileNotFoundError(
            f"no built page at {path} (index.html missing): run scripts/build_web.sh "
            "(after scripts/install_web_deps.sh), or pass root= / set VEIL_WEB_ROOT"
        )
    return path.resolve()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A browser that drops a connection mid-transfer (a reload, a closed
        # tab) is not an error of the server: no traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def make_server(
    root: Union[str, os.PathLike, None] = None, host: str = "127.0.0.1", port: int = 8000, *, quiet: bool = False
) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server for the page; ``port=0`` picks a
    free port (read it from ``server.server_address``). Call
    ``serve_forever()`` on it, and ``server_close()`` when done."""
    path = _check_root(root)
    handler = type("VeilPageHandler", (_Handler,), {"quiet": quiet})
    server = _Server((host, port), functools.partial(handler, directory=str(path)))
    server.root = path  # type: ignore[attr-defined]
    return server


def serve(
    root: Union[str, os.PathLike, None] = None, host: str = "127.0.0.1", port: int = 8000, *, quiet: bool = False
) -> None:
    """Serves the page until interrupted (Ctrl+C). Binds to ``127.0.0.1`` by
    default: the page needs no network, and a photo is never sent to it."""
    server = make_server(root, host, port, quiet=quiet)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    print(f"veil web: serving {server.root} at http://{shown}:{bound_port}/ (Ctrl+C to stop)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``veil web [--host H] [--port P] [--root DIR]``; returns an exit code."""
    parser = argparse.ArgumentParser(prog="veil web", description="Serve veil's in-browser page (nothing is uploaded).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--root", default=None, help="the built page (default: see veil.web's notes)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    try:
        serve(args.root, args.host, args.port, quiet=args.quiet)
    except FileNotFoundError as exc:
        print(f"veil web: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"veil web: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
