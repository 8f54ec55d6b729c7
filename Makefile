# One entry point for people, developers and CI.
#   make demo    set up, then hide the faces in the bundled example photo
#   make test    set up, build the page, run every test (Rust, Python, browser)
#   make bench   side-by-side benchmarks (needs benches/requirements-bench.txt)
#   make fuzz    hostile files through veil: Pillow's and pillow-heif's test images, crafted bombs (README)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-rust test-python web web-deps video-deps wasm bench lint clean fuzz fuzz-quick fuzz-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The Python package with its Rust core, built in release mode and installed
# into .venv in editable mode.
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/maturin develop --release --quiet

demo: install
	mkdir -p out
	$(BIN)/veil blur tests/fixtures/two_faces.jpg -o out/two_faces.veiled.jpg --overwrite --json
	@echo "Wrote out/two_faces.veiled.jpg"

web-deps: $(BIN)/python
	bash scripts/install_web_deps.sh

# The browser page: npm packages, the WebAssembly core, the model, into web/dist.
web: web-deps
	bash scripts/build_web.sh

wasm: web

# ffmpeg/ffprobe from apt, for the video tests (veil itself uses PyAV's own FFmpeg).
video-deps:
	bash scripts/install_video_deps.sh

test-rust:
	cargo test -p veil-core --release

test-python: install
	$(BIN)/python -m pytest

# VEIL_REQUIRE_WEB=1: a missing browser or page build fails the browser tests
# instead of skipping them; VEIL_REQUIRE_FFPROBE=1 does the same for ffprobe.
test: install web video-deps test-rust
	$(BIN)/python -m pip install --quiet -r requirements-ray.txt
	VEIL_REQUIRE_WEB=1 VEIL_REQUIRE_FFPROBE=1 $(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pip install --quiet -r benches/requirements-bench.txt
	$(BIN)/python benches/bench_kernels.py

# atheris has wheels for common CPython versions only; without it the
# coverage-guided part is skipped and says so.
fuzz-deps: install
	$(BIN)/python -m pip install --quiet -r scripts/requirements-fuzz.txt || echo "fuzz: atheris could not be installed"

# Every file, no time budget, then 5 minutes of atheris.
fuzz: fuzz-deps
	$(BIN)/python scripts/fuzz.py --atheris 300

# The bounded part CI runs: crafted carriers, a fixed sample of the corpus,
# about 2.5 minutes of files and 30 s of atheris.
fuzz-quick: fuzz-deps
	$(BIN)/python scripts/fuzz.py --quick --atheris 30

lint:
	cargo clippy -p veil-core -p veil-py -p veil-wasm -- -D warnings

clean:
	rm -rf target web/dist out
