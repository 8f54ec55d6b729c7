"""Writes an int8 copy of veil's CenterFace model with onnxruntime.quantization.

Static quantization (QDQ format, per-channel int8 weights, uint8
activations), calibrated on photos that are not in the evaluation set
(``../shared/data/faces/deepface`` and ``portraits``: WIDER is what the
detector is measured on, so it is never used here). Each calibration photo
is prepared as veil's whole-photo pass prepares it: shrunk to at most
``--side`` px on its longer side (Pillow bilinear), raw 0-255 RGB,
zero-padded at the bottom and right to multiples of 32.

Writes ``python/veil/models/centerface_int8.onnx`` and a sidecar
``centerface_int8.json`` (sha256, source model, licence, calibration set,
settings). Needs ``onnx`` (``pip install onnx``), used only here.

Run: ``.venv/bin/python tools/quantize_centerface.py [--side 640] [--method minmax]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "python" / "veil" / "models"
FACES = REPO.parent / "shared" / "data" / "faces"
CALIBRATION_DIRS = ("deepface", "portraits")


def calibration_files():
    files = []
    for d in CALIBRATION_DIRS:
        files += sorted(p for p in (FACES / d).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return files


def blob(path: Path, side: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        f = min(1.0, side / max(im.size))
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BILINEAR)
        rgb = np.asarray(im)
    h, w = rgb.shape[:2]
    out = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[0, :, :h, :w] = rgb.transpose(2, 0, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=640, help="calibration photos' longer side, px")
    ap.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    ap.add_argument("--out", default=str(MODELS / "centerface_int8.onnx"))
    args = ap.parse_args(argv)
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    files = calibration_files()
    if not files:
        print(f"no calibration photos under {FACES}")
        return 1

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(files)

        def get_next(self):
            p = next(self.it, None)
            return None if p is None else {"input.1": blob(p, args.side)}

    src = MODELS / "centerface.onnx"
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        import onnx
        from onnx import version_converter

        # The model is opset 9; per-channel DequantizeLinear (its ``axis``) needs opset 13.
        up = Path(tmp) / "opset13.onnx"
        converted = version_converter.convert_version(onnx.load(str(src)), 13)
        converted.ir_version = 7  # opset 13 needs IR version 7; the converter keeps the old 4
        onnx.save(converted, str(up))
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(up), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[args.method],
        )
    data = out.read_bytes()
    src_meta = json.loads((MODELS / "centerface.json").read_text())
    sidecar = {
        "name": "CenterFace, int8",
        "file": out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "source": {"file": "centerface.onnx", "sha256": src_meta["sha256"], "upstream": src_meta["source"]},
        "licence": src_meta["licence"],
        "changes": "opset 9 -> 13 (onnx.version_converter), then static quantization by onnxruntime.quantization.quantize_static: QDQ, per-channel int8 "
                   f"weights, uint8 activations, calibration {args.method} (tools/quantize_centerface.py)",
        "calibration": {"photos": [f"{p.parent.name}/{p.name}" for p in files], "longer_side_px": args.side,
                        "note": "deepface/ and portraits/ of the shared face photos; none of wider/"},
        "preprocessing": src_meta["preprocessing"],
        "outputs": src_meta["outputs"],
        "stride_px": src_meta["stride_px"],
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"wrote {out} ({len(data)} bytes, sha256 {sidecar['sha256']}) from {len(files)} calibration photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
