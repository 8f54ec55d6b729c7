"""Shared scoring for the detection benchmarks (bench_recall.py, detect_levers.py).

Ground truth: ``../shared/data/faces/wider/gt.json`` (WIDER FACE val subset,
boxes ``[left, top, right, bottom]``, WIDER's attribute labels; ``invalid``
faces are ignored: a detection on one is neither a hit nor a false positive,
as WIDER's own evaluation does), the 9 annotated group photos of
``groups/boxes.json`` and the portraits of ``portraits/``.

Face size is the longer side of the ground-truth box, in pixels of the photo
being searched (so at 12 MP the same face falls in a larger bucket).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
WIDER = FACES / "wider"
GROUPS = FACES / "groups"
PORTRAITS = FACES / "portraits"

BUCKETS = ((0, 16, "<16"), (16, 32, "16-32"), (32, 64, "32-64"), (64, 128, "64-128"), (128, math.inf, ">128"))
# WIDER attributes reported separately (value -> label).
ATTRIBUTES = {
    "blur": {1: "normal blur", 2: "heavy blur"},
    "occlusion": {1: "partial occl.", 2: "heavy occl."},
    "pose": {1: "atypical pose"},
    "illumination": {1: "extreme illum."},
}
# Event classes of crowds: marches, protests, parades, fans, concerts, riots.
CROWD_EVENTS = (
    "0--Parade", "2--Demonstration", "7--Cheering", "8--Election_Campain", "10--People_Marching",
    "18--Concerts", "21--Festival", "28--Sports_Fan", "61--Street_Battle",
)
MASK_SCALE = 1.3  # veil.anonymize.DEFAULT_MASK_SCALE, the mask's growth about the box centre
COVER_MIN = 0.5  # a face is covered when at least half of its box lies under the masks
COVER_MIN_PX = 16  # the crowd metric counts faces of at least this longer side


def size_bucket(side: float) -> str:
    for lo, hi, name in BUCKETS:
        if lo <= side < hi:
            return name
    raise ValueError(side)


def wider_entries(limit: int | None = None) -> list:
    """The WIDER photos, sorted by file; ``limit`` takes that many spread evenly
    over the list (so every subset mixes crowds and the other classes)."""
    images = sorted(json.loads((WIDER / "gt.json").read_text())["images"], key=lambda e: e["file"])
    if limit and limit < len(images):
        idx = np.linspace(0, len(images) - 1, limit).round().astype(int)
        images = [images[i] for i in sorted(set(idx))]
    return images


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def resize(rgb: np.ndarray, factor: float, resample: str = "lanczos") -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    filt = Image.Resampling.LANCZOS if resample == "lanczos" else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize(size, filt))


def twelve_mp_factor(width: int, height: int, pixels: int = 12_000_000) -> float:
    return math.sqrt(pixels / (width * height))


def iou_matrix(dets: np.ndarray, truth: np.ndarray) -> np.ndarray:
    if len(dets) == 0 or len(truth) == 0:
        return np.zeros((len(dets), len(truth)))
    d, t = dets[:, None, :4], truth[None, :, :4]
    w = np.clip(np.minimum(d[..., 2], t[..., 2]) - np.maximum(d[..., 0], t[..., 0]), 0, None)
    h = np.clip(np.minimum(d[..., 3], t[..., 3]) - np.maximum(d[..., 1], t[..., 1]), 0, None)
    inter = w * h
    area_d = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
    area_t = (truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])
    return inter / np.maximum(area_d[:, None] + area_t[None, :] - inter, 1e-9)


def match(dets: np.ndarray, truth: np.ndarray, invalid: np.ndarray, iou: float):
    """Greedy one-to-one matching, best score first. Returns (hit per truth
    face, false positives): a detection whose best free match is an invalid
    face is ignored."""
    hit = np.zeros(len(truth), dtype=bool)
    taken = np.zeros(len(truth), dtype=bool)
    fp = 0
    if len(dets) == 0:
        return hit, 0
    m = iou_matrix(dets, truth)
    for i in np.argsort(-dets[:, 4], kind="stable"):
        row = np.where(taken, -1.0, m[i]) if len(truth) else np.zeros(0)
        j = int(np.argmax(row)) if len(row) else -1
        if j < 0 or row[j] < iou:
            fp += 1
            continue
        taken[j] = True
        if not invalid[j]:
            hit[j] = True
    return hit, fp


def covered_fraction(truth: np.ndarray, dets: np.ndarray, mask_scale: float = MASK_SCALE, grid: int = 8) -> np.ndarray:
    """For each truth box, the share of it lying under the union of the
    detections' masks (the ellipse inscribed in the box grown by
    ``mask_scale`` about its centre, veil's default mask), sampled on a
    ``grid`` x ``grid`` lattice of points inside the box."""
    if len(truth) == 0:
        return np.zeros(0)
    if len(dets) == 0:
        return np.zeros(len(truth))
    u = (np.arange(grid) + 0.5) / grid
    px = truth[:, 0:1] + u[None, :] * (truth[:, 2:3] - truth[:, 0:1])  # (T, g)
    py = truth[:, 1:2] + u[None, :] * (truth[:, 3:4] - truth[:, 1:2])
    X = np.repeat(px[:, None, :], grid, axis=1).reshape(len(truth), -1)  # (T, g*g)
    Y = np.repeat(py[:, :, None], grid, axis=2).reshape(len(truth), -1)
    cx = (dets[:, 0] + dets[:, 2]) / 2
    cy = (dets[:, 1] + dets[:, 3]) / 2
    rx = np.maximum((dets[:, 2] - dets[:, 0]) * mask_scale / 2, 1e-6)
    ry = np.maximum((dets[:, 3] - dets[:, 1]) * mask_scale / 2, 1e-6)
    inside = np.zeros(X.shape, dtype=bool)
    for k in range(len(dets)):
        inside |= ((X - cx[k]) / rx[k]) ** 2 + ((Y - cy[k]) / ry[k]) ** 2 <= 1.0
    return inside.mean(axis=1)


def wider_truth(entry: dict, factor: float = 1.0):
    """(boxes (N,4) float, invalid (N,) bool, faces list) for one WIDER entry,
    boxes scaled by ``factor``."""
    faces = entry["faces"]
    boxes = np.array([f["box"] for f in faces], dtype=np.float64).reshape(-1, 4) * factor
    invalid = np.array([bool(f["invalid"]) for f in faces], dtype=bool)
    return boxes, invalid, faces


class Score:
    """Accumulates recall by size bucket and attribute, false positives and
    the crowd metric over photos."""

    def __init__(self):
        self.n = {}  # key -> [hits@0.5, hits@0.3, total]
        self.fp = [0, 0]  # false positives at IoU 0.5, 0.3
        self.photos = 0
        self.crowd = [0, 0]  # crowd photos with every >=16 px face covered, crowd photos counted
        self.covered = [0, 0]  # faces >= 16 px covered, counted

    def _add(self, key, h5, h3):
        row = self.n.setdefault(key, [0, 0, 0])
        row[0] += int(h5)
        row[1] += int(h3)
        row[2] += 1

    def add(self, dets: np.ndarray, truth: np.ndarray, invalid: np.ndarray, faces: list, crowd: bool = False):
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, max(5, np.asarray(dets).shape[-1] if len(dets) else 5))
        h5, fp5 = match(dets, truth, invalid, 0.5)
        h3, fp3 = match(dets, truth, invalid, 0.3)
        self.fp[0] += fp5
        self.fp[1] += fp3
        self.photos += 1
        sides = np.maximum(truth[:, 2] - truth[:, 0], truth[:, 3] - truth[:, 1]) if len(truth) else np.zeros(0)
        for j, f in enumerate(faces):
            if invalid[j]:
                continue
            self._add(size_bucket(sides[j]), h5[j], h3[j])
            self._add("all", h5[j], h3[j])
            if sides[j] >= COVER_MIN_PX:
                self._add(">=16", h5[j], h3[j])
            for attr, labels in ATTRIBUTES.items():
                if f.get(attr) in labels and sides[j] >= COVER_MIN_PX:
                    self._add(labels[f[attr]], h5[j], h3[j])
        big = (~invalid) & (sides >= COVER_MIN_PX)
        cov = covered_fraction(truth[big], dets[:, :4]) >= COVER_MIN
        self.covered[0] += int(cov.sum())
        self.covered[1] += int(big.sum())
        if crowd and big.any():
            self.crowd[1] += 1
            self.crowd[0] += int(cov.all())

    def recall(self, key, iou=0.3):
        row = self.n.get(key, [0, 0, 0])
        return (row[1 if iou == 0.3 else 0] / row[2]) if row[2] else float("nan"), row[2]

    def summary(self) -> dict:
        out = {k: {"iou0.5": v[0] / v[2], "iou0.3": v[1] / v[2], "faces": v[2]} for k, v in self.n.items() if v[2]}
        out["fp_per_image@0.5"] = self.fp[0] / max(self.photos, 1)
        out["fp_per_image@0.3"] = self.fp[1] / max(self.photos, 1)
        out["crowd_all_covered"] = self.crowd
        out["covered>=16"] = self.covered
        out["photos"] = self.photos
        return out


ROW_KEYS = ("<16", "16-32", "32-64", "64-128", ">128", ">=16")
ATTR_KEYS = ("normal blur", "heavy blur", "partial occl.", "heavy occl.", "atypical pose", "extreme illum.")


def format_row(name: str, s: Score, cpu: float | None = None, extra: str = "") -> str:
    cells = []
    for k in ROW_KEYS:
        r3, n = s.recall(k, 0.3)
        r5, _ = s.recall(k, 0.5)
        cells.append(f"{r3:5.1%}/{r5:5.1%}" if n else "     -     ")
    crowd = f"{s.crowd[0]}/{s.crowd[1]}" if s.crowd[1] else "-"
    fp = s.fp[1] / max(s.photos, 1)
    c = f"{cpu:6.2f}" if cpu is not None else "     -"
    return f"{name:34} | " + " ".join(cells) + f" | fp/img {fp:5.2f} | crowd {crowd:>6} | cpu {c}{extra}"


def header() -> str:
    return (f"{'setting':34} | " + " ".join(f"{k:^11}" for k in ROW_KEYS)
            + " | (recall IoU>=0.3 / >=0.5 by longer side px; fp/img at IoU 0.3; crowd: photos all >=16 px covered)")


def attr_row(name: str, s: Score) -> str:
    cells = []
    for k in ATTR_KEYS:
        r3, n = s.recall(k, 0.3)
        cells.append(f"{k} {r3:5.1%} (n={n})" if n else f"{k} -")
    return f"{name:34} | " + "; ".join(cells)


# --- the other sets --------------------------------------------------------


def group_photos() -> list:
    """[(name, rgb, truth (N,4))] for the 9 annotated group photos."""
    boxes = json.loads((GROUPS / "boxes.json").read_text())
    out = []
    for name in sorted(boxes):
        rgb = load_rgb(GROUPS / name)
        truth = np.array([(l, t, l + w, t + h) for l, t, w, h in boxes[name]], dtype=np.float64)
        out.append((name, rgb, truth))
    return out


def rotate(rgb: np.ndarray, truth: np.ndarray, quarter_turns: int):
    """The photo turned ``quarter_turns`` x 90 degrees counter-clockwise (as
    np.rot90) and its boxes turned with it."""
    k = quarter_turns % 4
    h, w = rgb.shape[:2]
    out = np.ascontiguousarray(np.rot90(rgb, k))
    b = truth.copy()
    if k == 1:  # old (x, y) -> new (y, w - x)
        b = np.stack([truth[:, 1], w - truth[:, 2], truth[:, 3], w - truth[:, 0]], axis=1)
    elif k == 2:
        b = np.stack([w - truth[:, 2], h - truth[:, 3], w - truth[:, 0], h - truth[:, 1]], axis=1)
    elif k == 3:  # old (x, y) -> new (h - y, x)
        b = np.stack([h - truth[:, 3], truth[:, 0], h - truth[:, 1], truth[:, 2]], axis=1)
    return out, b


def border_crops(reference: dict, fractions=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), max_side: int = 800) -> list:
    """Border-cut crops of the portraits: for each portrait whose face box
    (``reference[name]``: the box a full search finds on the uncut photo)
    is known, the photo cut through the face so that ``fraction`` of the box
    width (left/right edge) or height (top/bottom edge) stays inside.
    The portraits are first shrunk to at most ``max_side`` px (the reference
    boxes are in those pixels). Returns [(name, edge, fraction, rgb, truth
    (1,4) clipped to the crop)]."""
    out = []
    for path in sorted(PORTRAITS.iterdir()):
        if path.name not in reference:
            continue
        rgb = load_rgb(path)
        rgb = resize(rgb, min(1.0, max_side / max(rgb.shape[:2])))
        h, w = rgb.shape[:2]
        l, t, r, b = reference[path.name]
        for edge in ("left", "right", "top", "bottom"):
            for f in fractions:
                if edge == "left":
                    x0 = int(round(r - f * (r - l)))
                    if x0 < 0:
                        continue
                    crop, box = rgb[:, x0:], (l - x0, t, r - x0, b)
                elif edge == "right":
                    x1 = int(round(l + f * (r - l)))
                    if x1 > w:
                        continue
                    crop, box = rgb[:, :x1], (l, t, r, b)
                elif edge == "top":
                    y0 = int(round(b - f * (b - t)))
                    if y0 < 0:
                        continue
                    crop, box = rgb[y0:], (l, t - y0, r, b - y0)
                else:
                    y1 = int(round(t + f * (b - t)))
                    if y1 > h:
                        continue
                    crop, box = rgb[:y1], (l, t, r, b)
                ch, cw = crop.shape[:2]
                clipped = np.array([[max(0, box[0]), max(0, box[1]), min(cw, box[2]), min(ch, box[3])]], float)
                out.append((path.name, edge, f, np.ascontiguousarray(crop), clipped))
    return out
