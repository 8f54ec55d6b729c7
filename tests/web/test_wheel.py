"""The page ships with the package: a wheel built by the project's build
(`maturin build --release`, after `make web`) carries the built page, and
after `pip install` of that wheel into a fresh virtualenv, `veil web` serves
it from the installed package, with no source checkout involved.

Slow-ish (a release build that reuses target/, and a pip install that
reuses pip's cache): about a minute on a warm machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, unavailable

PACKAGED = ROOT / "python" / "veil" / "_web"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, web_dist) -> Path:
    if not (PACKAGED / "index.html").is_file():
        unavailable(f"{PACKAGED} missing: run scripts/build_web.sh (make web), which copies the page there")
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which("maturin")
    if not maturin:
        unavailable("maturin is not installed: run make install")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([maturin, "build", "--release", "--quiet", "-o", str(out)], cwd=ROOT, check=True, timeout=900)
    (built,) = out.glob("veil-*.whl")
    return built


def test_wheel_contains_the_built_page(wheel, web_dist):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in web_dist.rglob("*"):
        if f.is_file():
            assert f"veil/_web/{f.relative_to(web_dist).as_posix()}" in names, f


def test_installed_wheel_serves_the_page(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
                   check=True, timeout=900)
    # Away from the source tree, with nothing pointing at it.
    env = {k: v for k, v in os.environ.items() if k not in ("VEIL_WEB_ROOT", "PYTHONPATH", "VIRTUAL_ENV")}
    server = subprocess.Popen([str(venv / "bin" / "veil"), "web", "--port", "0"], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        m = re.search(r"serving (\S+) at (http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        served, url = Path(m.group(1)), m.group(2)
        assert venv in served.parents and served.name == "_web", served
        with urllib.request.urlopen(url, timeout=10) as r:  # the server listens before it prints
            page = r.read().decode()
        assert '<script type="module" src="app.js">' in page and "Review and download" in page
        with urllib.request.urlopen(url + "veil_wasm.wasm", timeout=10) as r:
            assert r.headers["Content-Type"] == "application/wasm"
            assert r.read()[:4] == b"\0asm"
        with urllib.request.urlopen(url + "models/centerface.onnx", timeout=10) as r:
            assert len(r.read()) == (ROOT / "python" / "veil" / "models" / "centerface.onnx").stat().st_size
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stderr.close()
