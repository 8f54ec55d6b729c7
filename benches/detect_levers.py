"""Experiments on how CenterFace is run: which passes find which faces, at what cost.

This drives veil's CenterFace model (``python/veil/models/centerface.onnx``)
through onnxruntime directly, with veil's own decoding and suppression
(``veil._veil.decode_centerface``, ``veil._veil.non_max_suppression``), so that
pass plans can be compared without changing veil. Every pass is decoded once
at a low threshold (``LOW``) and cached in memory; the plans are then scored
from those detections (raising a pass's threshold only drops rows), and each
plan's CPU cost is the sum of its passes' measured CPU seconds
(``time.process_time`` around ``session.run``: all of onnxruntime's threads).

Sets (``--sets``):

* ``native``: WIDER photos as they are (``--limit`` of them, spread evenly);
  passes: the photo shrunk to the 1024 px cap (``s1``), its mirror image
  (``flip``), the same photo enlarged 1.5x and 2x (``s1.5``, ``s2``), and
  turned 90/180/270 degrees (``r90``...) for false positives on upright photos;
* ``12mp``: the same photos enlarged (Lanczos) to about 12 MP (``--limit12``
  of them); passes: ``s1`` (1024 cap), ``s2`` (2048 cap), ``flip``, and veil's
  full-resolution tiles, each tile kept separately so that tile gating by
  the shrunk pass's heatmap can be scored;
* ``rotated``: the 9 annotated group photos turned 0/90/180/270 degrees
  (no EXIF tag), with ``s1`` and the rotated copies of it;
* ``border``: portraits cut through the face (40-100 % of the box inside),
  with ``s1`` and ``s1`` padded by 0-50 % of the face-independent photo side;
* ``int8``: a quantized model (``--int8 PATH``) against the float one on
  ``native`` and ``12mp``.

Run: ``.venv/bin/python benches/detect_levers.py --limit 60 --limit12 20``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recall_data as rd  # noqa: E402

from veil import _veil  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "python" / "veil" / "models" / "centerface.onnx"
LOW = 0.05  # every pass is decoded at this threshold; plans filter higher
NMS_IOU = 0.3
CAP = 1024
TILE_MAX = 2048
TILE_OVERLAP = 128
MIN_FACE_SHRUNK = 24


class Net:
    def __init__(self, model: Path, threads: int = 0, arena: bool = True, opt: str = "all", seq: bool = False,
                 spin: bool = True):
        import onnxruntime as ort

        o = ort.SessionOptions()
        if not spin:  # idle pool threads sleep instead of spinning (CPU burnt while waiting)
            o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        o.log_severity_level = 3
        if threads:
            o.intra_op_num_threads = threads
        o.enable_cpu_mem_arena = arena
        o.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[opt]
        if seq:
            o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.s = ort.InferenceSession(str(model), o, providers=["CPUExecutionProvider"])
        self.cpu = 0.0

    def raw(self, rgb: np.ndarray):
        """Network outputs for ``rgb`` (HxWx3 uint8), zero-padded bottom/right to
        multiples of 32 as veil does."""
        h, w = rgb.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        t = time.process_time()
        out = self.s.run(["537", "538", "539", "540"], {"input.1": blob})
        dt = time.process_time() - t
        self.cpu += dt
        return out, dt

    def faces(self, rgb, sx=1.0, sy=1.0, threshold=LOW):
        (hm, sc, off, lm), dt = self.raw(rgb)
        return _veil.decode_centerface(hm, sc, off, lm, threshold, sx, sy), dt, hm[0, 0]


def bilinear(rgb, w, h):
    from PIL import Image

    if (w, h) == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def scaled_pass(net, rgb, factor):
    """One pass on ``rgb`` resized by ``factor``; boxes in ``rgb``'s pixels."""
    h, w = rgb.shape[:2]
    rw, rh = max(1, round(w * factor)), max(1, round(h * factor))
    f, dt, hm = net.faces(bilinear(rgb, rw, rh), w / rw, h / rh)
    return f, dt, hm


def unrotate(faces, k, w, h):
    """Boxes found on np.rot90(img, k) (img is w x h) mapped back to img."""
    f = faces.copy()
    xs, ys = faces[:, [0, 2, 5, 7, 9, 11, 13]], faces[:, [1, 3, 6, 8, 10, 12, 14]]
    if k == 1:  # new (x', y') -> old (w - y', x')
        nx, ny = w - ys, xs
    elif k == 2:
        nx, ny = w - xs, h - ys
    elif k == 3:  # new (x', y') -> old (y', h - x')
        nx, ny = ys, h - xs
    else:
        nx, ny = xs, ys
    f[:, [0, 2, 5, 7, 9, 11, 13]] = nx
    f[:, [1, 3, 6, 8, 10, 12, 14]] = ny
    f[:, 0], f[:, 2] = np.minimum(nx[:, 0], nx[:, 1]), np.maximum(nx[:, 0], nx[:, 1])
    f[:, 1], f[:, 3] = np.minimum(ny[:, 0], ny[:, 1]), np.maximum(ny[:, 0], ny[:, 1])
    return f


def add_small_rotations(net, rgb, p, cap=512):
    """r90s..r270s: rotated copies of the photo shrunk to ``cap`` px."""
    h, w = rgb.shape[:2]
    shrink = min(1.0, cap / max(h, w))
    rw, rh = max(1, round(w * shrink)), max(1, round(h * shrink))
    tiny = bilinear(rgb, rw, rh)
    for k in (1, 2, 3):
        p[f"r{90 * k}s"] = rotated_pass(net, tiny, k, w / rw, h / rh)


def rotated_pass(net, small, k, sx, sy):
    """A pass on ``small`` turned k quarter turns; boxes in the photo's pixels."""
    h, w = small.shape[:2]
    f, dt, _ = net.faces(np.ascontiguousarray(np.rot90(small, k)))
    f = unrotate(f, k, w, h)
    f[:, [0, 2, 5, 7, 9, 11, 13]] *= sx
    f[:, [1, 3, 6, 8, 10, 12, 14]] *= sy
    return f, dt


def padded_pass(net, small, pad, mode, sx, sy):
    if pad == 0:
        f, dt, _ = net.faces(small, sx, sy)
        return f, dt
    if mode == "constant":
        img = np.pad(small, ((pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=0)
    else:
        img = np.pad(small, ((pad, pad), (pad, pad), (0, 0)), mode=mode)
    f, dt, _ = net.faces(np.ascontiguousarray(img))
    f[:, [0, 2, 5, 7, 9, 11, 13]] -= pad
    f[:, [1, 3, 6, 8, 10, 12, 14]] -= pad
    f[:, [0, 2, 5, 7, 9, 11, 13]] *= sx
    f[:, [1, 3, 6, 8, 10, 12, 14]] *= sy
    h, w = small.shape[:2]
    # a box wholly in the padding (a mirrored copy) shows nothing of the photo
    keep = (f[:, 2] > 0) & (f[:, 0] < w * sx) & (f[:, 3] > 0) & (f[:, 1] < h * sy)
    return f[keep], dt


def flip_pass(net, small, sx, sy):
    h, w = small.shape[:2]
    f, dt, _ = net.faces(np.ascontiguousarray(small[:, ::-1]))
    xs = f[:, [0, 2, 5, 7, 9, 11, 13]].copy()
    f[:, [0, 2, 5, 7, 9, 11, 13]] = w - xs
    f[:, 0], f[:, 2] = w - xs[:, 1], w - xs[:, 0]
    # eyes and mouth corners swap sides in a mirror
    for a, b in ((5, 7), (11, 13)):
        f[:, [a, a + 1, b, b + 1]] = f[:, [b, b + 1, a, a + 1]]
    f[:, [0, 2, 5, 7, 9, 11, 13]] *= sx
    f[:, [1, 3, 6, 8, 10, 12, 14]] *= sy
    return f, dt


def tile_layout(length, max_tile, overlap):
    if length <= max_tile:
        return [0], length
    count = -(-(length - overlap) // (max_tile - overlap))
    tile = -(-(length + (count - 1) * overlap) // count)
    tile = min(max_tile, -(-tile // 32) * 32)
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)], tile


def owned(starts, tile):
    b = [-np.inf] + [(a + tile + c) / 2 for a, c in zip(starts, starts[1:])] + [np.inf]
    return list(zip(b, b[1:]))


def tiles_pass(net, rgb, overlap):
    """veil's full-resolution tiles; returns [(x0, y0, x1, y1, faces owned, cpu s)]."""
    h, w = rgb.shape[:2]
    ys, th = tile_layout(h, TILE_MAX, overlap)
    xs, tw = tile_layout(w, TILE_MAX, overlap)
    out = []
    for y0, (ylo, yhi) in zip(ys, owned(ys, th)):
        for x0, (xlo, xhi) in zip(xs, owned(xs, tw)):
            f, dt, _ = net.faces(np.ascontiguousarray(rgb[y0:y0 + th, x0:x0 + tw]))
            f[:, [0, 2, 5, 7, 9, 11, 13]] += x0
            f[:, [1, 3, 6, 8, 10, 12, 14]] += y0
            cx, cy = (f[:, 0] + f[:, 2]) / 2, (f[:, 1] + f[:, 3]) / 2
            keep = (xlo <= cx) & (cx < xhi) & (ylo <= cy) & (cy < yhi)
            out.append((x0, y0, x0 + tw, y0 + th, f[keep], dt))
    return out


# --- merging ---------------------------------------------------------------


def side(f):
    return np.maximum(f[:, 2] - f[:, 0], f[:, 3] - f[:, 1])


def mostly_inside(faces, big):
    if len(faces) == 0 or len(big) == 0:
        return np.zeros(len(faces), dtype=bool)
    f, b = faces[:, None, :4], big[None, :, :4]
    w = np.clip(np.minimum(f[..., 2], b[..., 2]) - np.maximum(f[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(f[..., 3], b[..., 3]) - np.maximum(f[..., 1], b[..., 1]), 0, None)
    area = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
    cov = (w * h >= 0.5 * area[:, None]) & (big[None, :, 4] > faces[:, None, 4])
    return cov.any(axis=1) & (area > 0)


def at(f, t):
    return f[f[:, 4] >= t]


def nms(parts, w, h):
    parts = [p for p in parts if len(p)]
    if not parts:
        return np.zeros((0, 15), np.float32)
    f = _veil.non_max_suppression(np.ascontiguousarray(np.concatenate(parts).astype(np.float32)), NMS_IOU)
    np.clip(f[:, 0:4:2], 0, w, out=f[:, 0:4:2])
    np.clip(f[:, 1:4:2], 0, h, out=f[:, 1:4:2])
    return f


def merge_multiscale(base, fine, fine_max_side):
    """Size split between a coarse and a finer pass (as veil's tiles): the
    finer pass keeps faces up to ``fine_max_side`` px (photo pixels) that do
    not lie mostly inside a better coarse face; the coarse pass keeps all."""
    fine = fine[side(fine) <= fine_max_side]
    fine = fine[~mostly_inside(fine, base)]
    return [base, fine]


# --- the sets ----------------------------------------------------------------


def run_native(net, entries, args):
    """Per photo: dict of pass -> (faces at LOW, cpu s), truth."""
    cache = []
    t0 = time.time()
    for i, e in enumerate(entries):
        rgb = rd.load_rgb(rd.WIDER / e["file"])
        h, w = rgb.shape[:2]
        shrink = min(1.0, CAP / max(h, w))
        rw, rh = max(1, round(w * shrink)), max(1, round(h * shrink))
        small = bilinear(rgb, rw, rh)
        sx, sy = w / rw, h / rh
        p = {}
        f, dt, hm = net.faces(small, sx, sy)
        p["s1"] = (f, dt)
        p["flip"] = flip_pass(net, small, sx, sy)
        for fac in args.factors:
            f, dt, _ = scaled_pass(net, small, fac)
            f[:, [0, 2, 5, 7, 9, 11, 13]] *= sx
            f[:, [1, 3, 6, 8, 10, 12, 14]] *= sy
            p[f"s{fac:g}"] = (f, dt)
        if args.rotations:
            for k in (1, 2, 3):
                p[f"r{90 * k}"] = rotated_pass(net, small, k, sx, sy)
            add_small_rotations(net, rgb, p)
        if shrink < 1.0:  # veil's tiles for the few photos over the cap
            overlap = int(min(TILE_MAX // 2, max(TILE_OVERLAP, 2 * MIN_FACE_SHRUNK / shrink)))
            tl = tiles_pass(net, rgb, overlap)
            p["tiles"] = (np.concatenate([t[4] for t in tl]), sum(t[5] for t in tl))
            p["_overlap"] = overlap
        truth, invalid, faces = rd.wider_truth(e)
        cache.append((e, w, h, p, truth, invalid, faces))
        if (i + 1) % 10 == 0:
            print(f"  native {i + 1}/{len(entries)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return cache


def veil_today(p, w, h, t=0.2, keep_small=False):
    """veil's current plan at threshold t from cached passes."""
    base = at(p["s1"][0], t)
    if "tiles" not in p:
        return [base], p["s1"][1]
    ov = p["_overlap"]
    coarse = base if keep_small else base[side(base) >= ov / 2]
    small = at(p["tiles"][0], t)
    small = small[side(small) <= ov]
    small = small[~mostly_inside(small, coarse)]
    return [coarse, small], p["s1"][1] + p["tiles"][1]


def consensus(parts_strong, parts_weak, strong_t, weak_t, agree_iou=0.3):
    """Faces scoring >= strong_t in any pass, plus faces scoring >= weak_t that
    a second pass also finds (>= weak_t, IoU >= agree_iou): a low score is
    kept only when confirmed. ``parts_*``: lists of per-pass arrays."""
    keep = [at(p, strong_t) for p in parts_strong]
    weak = [p[(p[:, 4] >= weak_t) & (p[:, 4] < strong_t)] for p in parts_weak]
    allw = [at(p, weak_t) for p in parts_weak]
    for i, wk in enumerate(weak):
        if not len(wk):
            continue
        others = [a for j, a in enumerate(allw) if j != i and len(a)]
        if not others:
            continue
        o = np.concatenate(others)
        m = rd.iou_matrix(wk.astype(np.float64), o.astype(np.float64))
        keep.append(wk[(m >= agree_iou).any(axis=1)])
    return keep


def orientation(p, suffix=""):
    """The quarter turn whose pass finds the most face score (sum of scores
    >= 0.5): 0 = upright."""
    sums = [at(p["s1"][0], 0.5)[:, 4].sum()] + [at(p[f"r{a}{suffix}"][0], 0.5)[:, 4].sum() for a in (90, 180, 270)]
    return int(np.argmax(sums))


def oriented(p, low=0.2, high=0.5, suffix=""):
    """All four turns; the winning orientation kept at ``low``, the rest at ``high``."""
    k = orientation(p, suffix)
    keys = ["s1"] + [f"r{a}{suffix}" for a in (90, 180, 270)]
    parts = [at(p[key][0], low if i == k else high) for i, key in enumerate(keys)]
    return parts, sum(p[key][1] for key in keys), k


def score_plans(cache, plans, crowd_only=False):
    rows = []
    for name, plan in plans:
        s = rd.Score()
        cpu = 0.0
        for e, w, h, p, truth, invalid, faces in cache:
            parts, c = plan(p, w, h)
            cpu += c
            s.add(nms(parts, w, h), truth, invalid, faces, crowd=e["event"] in rd.CROWD_EVENTS)
        rows.append((name, s, cpu / max(len(cache), 1)))
    return rows


def print_rows(title, rows, attrs=False):
    print(f"\n## {title}")
    print(rd.header())
    for name, s, cpu in rows:
        print(rd.format_row(name, s, cpu))
    if attrs:
        print("attributes (faces >= 16 px, IoU >= 0.3):")
        for name, s, cpu in rows:
            print(rd.attr_row(name, s))
    sys.stdout.flush()


def native_plans(args):
    plans = []
    for t in (0.1, 0.15, 0.2, 0.3, 0.5):
        plans.append((f"today t={t}", lambda p, w, h, t=t: veil_today(p, w, h, t)))
    plans.append(("today + keep small (t=0.2)", lambda p, w, h: veil_today(p, w, h, 0.2, True)))

    def with_flip(p, w, h, t=0.2):
        parts, c = veil_today(p, w, h, t)
        return parts + [at(p["flip"][0], t)], c + p["flip"][1]

    plans.append(("today + flip", with_flip))
    for fac in args.factors:
        key = f"s{fac:g}"
        for lim in (32, 64, 128):
            for t in (0.2, 0.3):
                def up(p, w, h, key=key, lim=lim, t=t):
                    parts, c = veil_today(p, w, h, 0.2)
                    base = np.concatenate(parts)
                    return merge_multiscale(base, at(p[key][0], t), lim), c + p[key][1]

                plans.append((f"today + {key} (<= {lim} px, t={t})", up))

        def up_flip(p, w, h, key=key):
            parts, c = veil_today(p, w, h, 0.2)
            base = np.concatenate(parts + [at(p["flip"][0], 0.2)])
            return merge_multiscale(base, at(p[key][0], 0.2), 64), c + p[key][1] + p["flip"][1]

        plans.append((f"today + flip + {key} (<= 64)", up_flip))
        def up_all(p, w, h, key=key):
            parts, c = veil_today(p, w, h, 0.2)
            return parts + [at(p[key][0], 0.2)], c + p[key][1]

        plans.append((f"today + {key} (all sizes)", up_all))
    for key in [f"s{f:g}" for f in args.factors]:
        for st in (0.3, 0.4, 0.5):
            def cons(p, w, h, key=key, st=st):
                parts = [p["s1"][0], p["flip"][0], p[key][0]]
                return consensus(parts, parts, st, 0.2), p["s1"][1] + p["flip"][1] + p[key][1]

            plans.append((f"s1+flip+{key}: >={st} any, 0.2 if 2 agree", cons))

            def cons2(p, w, h, key=key, st=st):
                parts = [p["s1"][0], p[key][0]]
                return consensus(parts, parts, st, 0.2), p["s1"][1] + p[key][1]

            plans.append((f"s1+{key}: >={st} any, 0.2 if 2 agree", cons2))

        def cons_keep(p, w, h, key=key):
            parts = [p["s1"][0], p["flip"][0], p[key][0]]
            return [at(p["s1"][0], 0.2)] + consensus(parts, parts, 0.5, 0.2), p["s1"][1] + p["flip"][1] + p[key][1]

        plans.append((f"s1@0.2 + (flip,{key}: >=0.5 or 2 agree)", cons_keep))
    if args.rotations:
        for best in (0.7, 0.8, 0.9):
            def cond1024(p, w, h, best=best):
                parts, c = veil_today(p, w, h, 0.2)
                extra, c2 = best_rot(p, 0.2, best)
                return parts + extra[1:], c + c2 - p["s1"][1]

            plans.append((f"today + r* 1024 t=0.2 if best < {best}", cond1024))
        for key in [f"s{f:g}" for f in args.factors][-1:]:
            for rt in (0.3, 0.5):
                def whole(p, w, h, key=key, rt=rt):
                    passes = [p["s1"][0], p["flip"][0], p[key][0]]
                    rots = [at(p[f"r{a}"][0], rt) for a in (90, 180, 270)]
                    cost = p["s1"][1] + p["flip"][1] + p[key][1] + sum(p[f"r{a}"][1] for a in (90, 180, 270))
                    return consensus(passes, passes, 0.3, 0.2) + rots, cost

                plans.append((f"s1+flip+{key} consensus + r* (1024) at {rt}", whole))

        def orient(p, w, h):
            parts, c, _ = oriented(p)
            base, c0 = veil_today(p, w, h, 0.2)
            return parts + base, c + c0 - p["s1"][1]

        plans.append(("today + orientation vote (r* 1024; winner 0.2, rest 0.5)", orient))
        for t in (0.2, 0.3, 0.4, 0.5, 0.6):
            def rot(p, w, h, t=t):
                parts, c = veil_today(p, w, h, 0.2)
                extra = [at(p[f"r{a}"][0], t) for a in (90, 180, 270)]
                return parts + extra, c + sum(p[f"r{a}"][1] for a in (90, 180, 270))

            plans.append((f"today + r90/180/270 at t={t}", rot))
        for t in (0.3, 0.5):
            def rots(p, w, h, t=t):
                parts, c = veil_today(p, w, h, 0.2)
                extra = [at(p[f"r{a}s"][0], t) for a in (90, 180, 270)]
                return parts + extra, c + sum(p[f"r{a}s"][1] for a in (90, 180, 270))

            plans.append((f"today + r* on 512 copy at t={t}", rots))
        for best in (0.6, 0.8, 0.9):
            def cond(p, w, h, best=best):
                parts, c = veil_today(p, w, h, 0.2)
                extra, c2 = best_rot(p, 0.5, best, "s")
                return parts + extra[1:], c + c2 - p["s1"][1]

            plans.append((f"today + r* 512 t=0.5 if best < {best}", cond))
    return plans


def run_12mp(net, entries, args):
    cache = []
    t0 = time.time()
    for i, e in enumerate(entries):
        rgb0 = rd.load_rgb(rd.WIDER / e["file"])
        fac = rd.twelve_mp_factor(rgb0.shape[1], rgb0.shape[0])
        rgb = rd.resize(rgb0, fac)
        del rgb0
        h, w = rgb.shape[:2]
        p = {}
        for cap, key in ((CAP, "s1"), (2 * CAP, "s2")):
            shrink = min(1.0, cap / max(h, w))
            rw, rh = round(w * shrink), round(h * shrink)
            small = bilinear(rgb, rw, rh)
            f, dt, hm = net.faces(small, w / rw, h / rh)
            p[key] = (f, dt)
            p["_hm" if key == "s1" else "_hm2"] = (hm, w / rw / 4, h / rh / 4)  # heatmap cell -> photo px
            if key == "s1":
                p["flip"] = flip_pass(net, small, w / rw, h / rh)
        shrink = min(1.0, CAP / max(h, w))
        overlap = int(min(TILE_MAX // 2, max(TILE_OVERLAP, 2 * MIN_FACE_SHRUNK / shrink)))
        p["_tiles"] = tiles_pass(net, rgb, overlap)
        p["tiles"] = (np.concatenate([t[4] for t in p["_tiles"]]), sum(t[5] for t in p["_tiles"]))
        p["_overlap"] = overlap
        truth, invalid, faces = rd.wider_truth(e, fac)
        cache.append((e, w, h, p, truth, invalid, faces))
        print(f"  12mp {i + 1}/{len(entries)} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return cache


def gated_tiles(p, hm_t, margin_cells=2, key="_hm"):
    """The tiles in which the shrunk pass's heatmap reaches ``hm_t`` anywhere
    (each cell grown by ``margin_cells``)."""
    hm, cx, cy = p[key]
    ys, xs = np.nonzero(hm >= hm_t)
    kept = []
    for t in p["_tiles"]:
        x0, y0, x1, y1 = t[:4]
        if len(xs) == 0:
            continue
        inside = ((xs + 1 + margin_cells) * cx > x0) & ((xs - margin_cells) * cx < x1) & \
                 ((ys + 1 + margin_cells) * cy > y0) & ((ys - margin_cells) * cy < y1)
        if inside.any():
            kept.append(t)
    return kept


def plans_12mp():
    plans = []

    def today(p, w, h, t=0.2, keep_small=False, tiles=None):
        tl = p["_tiles"] if tiles is None else tiles
        base = at(p["s1"][0], t)
        ov = p["_overlap"]
        coarse = base if keep_small else base[side(base) >= ov / 2]
        small = at(np.concatenate([x[4] for x in tl]) if tl else np.zeros((0, 15), np.float32), t)
        small = small[side(small) <= ov]
        small = small[~mostly_inside(small, coarse)]
        return [coarse, small], p["s1"][1] + sum(x[5] for x in tl)

    plans.append(("today (1024 + tiles)", today))
    plans.append(("no tiles (1024 only)", lambda p, w, h: ([at(p["s1"][0], 0.2)], p["s1"][1])))
    plans.append(("today + keep small", lambda p, w, h: today(p, w, h, keep_small=True)))
    for hm_t in (0.02, 0.05, 0.1):
        plans.append((f"keep small + tiles gated hm>={hm_t}",
                      lambda p, w, h, hm_t=hm_t: today(p, w, h, keep_small=True, tiles=gated_tiles(p, hm_t))))
    plans.append(("1024 + 2048 (all)", lambda p, w, h: ([at(p["s1"][0], 0.2), at(p["s2"][0], 0.2)],
                                                       p["s1"][1] + p["s2"][1])))
    for lim in (64, 128, 256):
        def ms(p, w, h, lim=lim):
            base = at(p["s1"][0], 0.2)
            return merge_multiscale(base, at(p["s2"][0], 0.2), lim), p["s1"][1] + p["s2"][1]

        plans.append((f"1024 + 2048 (<= {lim} px)", ms))

    def ms_tiles(p, w, h):
        parts, c = today(p, w, h, keep_small=True)
        base = np.concatenate(parts)
        return merge_multiscale(base, at(p["s2"][0], 0.2), 256), c + p["s2"][1]

    plans.append(("keep small + tiles + 2048 (<= 256)", ms_tiles))

    def flip_ms(p, w, h):
        base = np.concatenate([at(p["s1"][0], 0.2), at(p["flip"][0], 0.2)])
        return merge_multiscale(base, at(p["s2"][0], 0.2), 256), p["s1"][1] + p["s2"][1] + p["flip"][1]

    plans.append(("1024 + flip + 2048 (<= 256)", flip_ms))

    def flip_all(p, w, h):
        return [at(p["s1"][0], 0.2), at(p["flip"][0], 0.2), at(p["s2"][0], 0.2)], \
            p["s1"][1] + p["s2"][1] + p["flip"][1]

    plans.append(("1024 + flip + 2048 (all)", flip_all))
    for t2 in (0.3,):
        plans.append((f"1024 + flip + 2048 (all, 2048 at {t2})", lambda p, w, h, t2=t2: (
            [at(p["s1"][0], 0.2), at(p["flip"][0], 0.2), at(p["s2"][0], t2)], p["s1"][1] + p["s2"][1] + p["flip"][1])))
    for hm_t in (0.05, 0.1, 0.2):
        def full(p, w, h, hm_t=hm_t):
            parts, c = today(p, w, h, keep_small=True, tiles=gated_tiles(p, hm_t, key="_hm2"))
            return parts + [at(p["flip"][0], 0.2), at(p["s2"][0], 0.2)], c + p["s2"][1] + p["flip"][1]

        plans.append((f"1024+flip+2048 + tiles gated by 2048 hm>={hm_t}", full))
    return plans


def run_rotated(net):
    """The 9 group photos turned 0/90/180/270; per image the passes s1, r90, r180, r270."""
    out = []
    for name, rgb, truth in rd.group_photos():
        for k in range(4):
            img, tr = rd.rotate(rgb, truth, k)
            h, w = img.shape[:2]
            shrink = min(1.0, CAP / max(h, w))
            rw, rh = round(w * shrink), round(h * shrink)
            small = bilinear(img, rw, rh)
            p = {}
            f, dt, _ = net.faces(small, w / rw, h / rh)
            p["s1"] = (f, dt)
            for q in (1, 2, 3):
                p[f"r{90 * q}"] = rotated_pass(net, small, q, w / rw, h / rh)
            out.append((name, k, w, h, p, tr))
    return out


def run_rotwider(net, entries):
    """WIDER photos turned 90/180/270 (cycling), passes: s1 on the turned photo,
    rotated copies of s1 (1024 cap) and of a 512 px copy."""
    cache = []
    for i, e in enumerate(entries):
        k = 1 + i % 3
        rgb0 = rd.load_rgb(rd.WIDER / e["file"])
        truth0, invalid, faces = rd.wider_truth(e)
        rgb, truth = rd.rotate(rgb0, truth0, k)
        h, w = rgb.shape[:2]
        shrink = min(1.0, CAP / max(h, w))
        rw, rh = round(w * shrink), round(h * shrink)
        small = bilinear(rgb, rw, rh)
        p = {}
        f, dt, _ = net.faces(small, w / rw, h / rh)
        p["s1"] = (f, dt)
        for q in (1, 2, 3):
            p[f"r{90 * q}"] = rotated_pass(net, small, q, w / rw, h / rh)
        add_small_rotations(net, rgb, p)
        cache.append((e, w, h, p, truth, invalid, faces))
    return cache


def rotwider_plans():
    plans = [("s1 only (today, no tiles)", lambda p, w, h: ([at(p["s1"][0], 0.2)], p["s1"][1]))]
    for suffix, label in (("", "1024"), ("s", "512")):
        for t in (0.2, 0.3, 0.5):
            def rot(p, w, h, t=t, suffix=suffix):
                return [at(p["s1"][0], 0.2)] + [at(p[f"r{a}{suffix}"][0], t) for a in (90, 180, 270)], \
                    p["s1"][1] + sum(p[f"r{a}{suffix}"][1] for a in (90, 180, 270))

            plans.append((f"s1 + r* on {label} copy at t={t}", rot))
    for best in (0.6, 0.8, 0.9):
        plans.append((f"s1; r* 512 t=0.5 if best < {best}", lambda p, w, h, best=best: best_rot(p, 0.5, best, "s")))
    for best in (0.7, 0.8, 0.9):
        plans.append((f"s1; r* 1024 t=0.2 if best < {best}", lambda p, w, h, best=best: best_rot(p, 0.2, best)))
    plans.append(("orientation vote (r* 1024; winner 0.2, rest 0.5)", lambda p, w, h: oriented(p)[:2]))
    plans.append(("orientation vote on 512 copies, winner at 1024",
                  lambda p, w, h: vote_small_then_full(p)))
    return plans


def vote_small_then_full(p):
    """Orientation chosen from the cheap 512 px rotated copies (and s1); the
    winner's 1024 pass kept at 0.2, all else at 0.5; cost: s1 + 3 small + the
    winner's full pass if it is not upright."""
    k = orientation(p, "s")
    parts = [at(p["s1"][0], 0.2 if k == 0 else 0.5)] + [at(p[f"r{a}s"][0], 0.5) for a in (90, 180, 270)]
    c = p["s1"][1] + sum(p[f"r{a}s"][1] for a in (90, 180, 270))
    if k:
        parts.append(at(p[f"r{90 * k}"][0], 0.2))
        c += p[f"r{90 * k}"][1]
    return parts, c


def report_rotated(cache):
    print("\n## rotated group photos (9 photos x 0/90/180/270 deg, no EXIF): faces left uncovered "
          "(< half under the 1.3 ellipse masks), of all / of the turned ones only")
    print(f"{'plan':44} | {'uncovered (all 4 turns)':>24} | {'of 90/180/270':>14} | fp@0.3 | cpu s/photo")
    plans = [("s1 only (today)", lambda p: ([at(p["s1"][0], 0.2)], p["s1"][1]))]
    for t in (0.2, 0.3, 0.5):
        plans.append((f"s1 + r90/r180/r270 at t={t}",
                      lambda p, t=t: ([at(p["s1"][0], 0.2)] + [at(p[f"r{a}"][0], t) for a in (90, 180, 270)],
                                      p["s1"][1] + sum(p[f"r{a}"][1] for a in (90, 180, 270)))))
        plans.append((f"s1; r* at t={t} only if s1 finds < 1 face",
                      lambda p, t=t: conditional_rot(p, t, 1)))
    for best in (0.6, 0.8, 0.9):
        plans.append((f"s1; r* at t=0.5 if s1's best < {best}", lambda p, best=best: best_rot(p, 0.5, best)))
    for name, plan in plans:
        unc = unc_turned = total = total_turned = fp = 0
        cpu = 0.0
        for _, k, w, h, p, tr in cache:
            parts, c = plan(p)
            f = nms(parts, w, h)
            cpu += c
            cov = rd.covered_fraction(tr, f[:, :4]) >= rd.COVER_MIN
            unc += int((~cov).sum())
            total += len(tr)
            if k:
                unc_turned += int((~cov).sum())
                total_turned += len(tr)
            _, fpk = rd.match(f.astype(np.float64), tr, np.zeros(len(tr), bool), 0.3)
            fp += fpk
        print(f"{name:44} | {unc:>4} of {total:<4} | {unc_turned:>4} of {total_turned:<4} | {fp:6d} | {cpu / len(cache):.3f}")


def best_rot(p, t, best, suffix=""):
    """Rotated copies only when the upright pass's best score (at 0.2) is under ``best``."""
    base = at(p["s1"][0], 0.2)
    if len(base) and base[:, 4].max() >= best:
        return [base], p["s1"][1]
    return [base] + [at(p[f"r{a}{suffix}"][0], t) for a in (90, 180, 270)], p["s1"][1] + sum(
        p[f"r{a}{suffix}"][1] for a in (90, 180, 270))


def conditional_rot(p, t, min_faces):
    base = at(p["s1"][0], 0.2)
    if len(base) >= min_faces:
        return [base], p["s1"][1]
    return [base] + [at(p[f"r{a}"][0], t) for a in (90, 180, 270)], p["s1"][1] + sum(
        p[f"r{a}"][1] for a in (90, 180, 270))


def run_border(net, args):
    """Border-cut portraits: reference box from a pass on the uncut photo."""
    ref = {}
    for path in sorted(rd.PORTRAITS.iterdir()):
        rgb = rd.load_rgb(path)
        rgb = rd.resize(rgb, min(1.0, 800 / max(rgb.shape[:2])))
        h, w = rgb.shape[:2]
        f, _, _ = scaled_pass(net, rgb, min(1.0, 512 / max(h, w)))
        f = at(f, 0.5)
        if len(f) == 1 or (len(f) > 1 and path.name != "obama_partial_1.jpg"):
            ref[path.name] = tuple(float(v) for v in f[np.argmax(f[:, 4]), :4])
    crops = rd.border_crops(ref, fractions=(0.4, 0.5, 0.6, 0.8), max_side=800)
    print(f"\n## border-cut portraits: {len(ref)} portraits, {len(crops)} crops "
          f"(face 40-100 % inside, each edge); covered = >= half of the visible face box under the masks")
    # today's pass (1024 cap, no padding) and padded passes on a copy shrunk to 512 px (a quarter of the cost)
    variants = [("1024 cap, no pad (today)", CAP, 0.0, "constant")]
    for cap in (512,):
        for pad in (0.0, 0.15, 0.3):
            for mode in ("constant", "reflect"):
                if pad == 0 and mode != "constant":
                    continue
                variants.append((f"{cap} cap, pad {pad:g} x side, {mode}", cap, pad, mode))
    results, cpu = {}, {}
    for name, edge, frac, rgb, box in crops:
        h, w = rgb.shape[:2]
        for label, cap, pad, mode in variants:
            shrink = min(1.0, cap / max(h, w))
            rw, rh = round(w * shrink), round(h * shrink)
            small = bilinear(rgb, rw, rh)
            px = int(round(pad * max(rw, rh)))
            f, dt = padded_pass(net, small, px, mode, w / rw, h / rh)
            f = nms([at(f, 0.2)], w, h)
            ok = rd.covered_fraction(box, f[:, :4])[0] >= rd.COVER_MIN
            results.setdefault(label, []).append((edge, frac, ok))
            cpu.setdefault(label, []).append(dt)
    fr = sorted({c[2] for c in crops})
    print(f"{'pass':36} | " + " ".join(f"{int(f * 100):>3}%" for f in fr)
          + " | covered at <= 60 % inside: left right top bottom | cpu s")
    for label, rows in results.items():
        cells = [f"{100 * np.mean([ok for e, ff, ok in rows if ff == f]):3.0f}%" for f in fr]
        edges = []
        for e in ("left", "right", "top", "bottom"):
            sel = [ok for ee, ff, ok in rows if ee == e and ff <= 0.6]
            edges.append(f"{sum(sel)}/{len(sel)}")
        print(f"{label:36} | " + " ".join(f"{c:>4}" for c in cells) + " | " + " ".join(
            f"{x:>5}" for x in edges) + f" | {np.mean(cpu[label]):.3f}")
    # union: today's pass plus a padded small pass
    for label in [v[0] for v in variants[1:]]:
        ok_u = [a[2] or b[2] for a, b in zip(results[variants[0][0]], results[label])]
        print(f"  today + {label}: covered {sum(ok_u)}/{len(ok_u)}; at 40 %: "
              f"{sum(o for o, c in zip(ok_u, crops) if c[2] == 0.4)}/{sum(1 for c in crops if c[2] == 0.4)}")


def run_session(args):
    """onnxruntime settings and batching: CPU and wall seconds of one 1024x768
    pass and of two 1568x1536 tiles (a 12 MP photo has six), best of 3."""
    import onnx
    import onnxruntime as ort

    rgb = rd.load_rgb(rd.WIDER / rd.wider_entries()[0]["file"])
    big = rd.resize(rgb, rd.twelve_mp_factor(rgb.shape[1], rgb.shape[0]))
    one = bilinear(rgb, 1024, round(1024 * rgb.shape[0] / rgb.shape[1]))
    tile = np.ascontiguousarray(big[:1536, :1568])

    def blob_of(img):
        h, w = img.shape[:2]
        b = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
        b[0, :, :h, :w] = img.transpose(2, 0, 1)
        return b

    b1, bt = blob_of(one), blob_of(tile)
    print("\n## onnxruntime settings (CPU s and wall s, best of 3; machine shared, so wall is noisy)")
    print(f"{'setting':44} | {'1024x768 pass cpu/wall':>22} | {'2 tiles 1568x1536 cpu/wall':>26} | peak MB after")
    configs = [("default (threads=cores, arena on, opt all)", dict()),
               ("intra_op_num_threads=1", dict(threads=1)),
               ("intra_op_num_threads=2", dict(threads=2)),
               ("arena off", dict(arena=False)),
               ("allow_spinning=0 (threads=cores)", dict(spin=False)),
               ("graph opt basic", dict(opt="basic")),
               ("graph opt none", dict(opt="none"))]
    if args.int8 and Path(args.int8).is_file():
        configs.append(("int8 model (default settings)", dict(model=args.int8)))
        configs.append(("int8 model, threads=1", dict(model=args.int8, threads=1)))
    import resource

    for label, cfg in configs:
        net = Net(Path(cfg.pop("model", MODEL)), **cfg)
        net.raw(one)
        res = []
        for b in ((b1,), (bt, bt)):
            best = (1e9, 1e9)
            for _ in range(3):
                t, c = time.perf_counter(), time.process_time()
                for x in b:
                    net.s.run(None, {"input.1": x})
                best = min(best, (time.process_time() - c, time.perf_counter() - t))
            res.append(best)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label:44} | {res[0][0]:8.3f} / {res[0][1]:8.3f}   | {res[1][0]:10.3f} / {res[1][1]:10.3f}    | {rss:.0f}")
        del net
    # batching: the model with a symbolic batch dimension, two tiles in one run
    m = onnx.load(str(MODEL))
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    try:
        o = ort.SessionOptions()
        o.log_severity_level = 3
        sb = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
        two = np.concatenate([bt, bt])
        sb.run(None, {"input.1": two})
        best = (1e9, 1e9)
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            sb.run(None, {"input.1": two})
            best = min(best, (time.process_time() - c, time.perf_counter() - t))
        print(f"{'batch of 2 tiles in one run':44} | {'':22} | {best[0]:10.3f} / {best[1]:10.3f}    |")
    except Exception as exc:  # the graph may fix the batch somewhere
        print(f"batching failed: {exc}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=60, help="WIDER photos at native size (0: all 267)")
    ap.add_argument("--limit12", type=int, default=20, help="WIDER photos at 12 MP")
    ap.add_argument("--sets", default="rotated,rotwider,border,native,12mp")
    ap.add_argument("--limitrot", type=int, default=30, help="WIDER photos turned for the rotation set")
    ap.add_argument("--factors", type=float, nargs="*", default=[1.5, 2.0], help="upscaled passes at native size")
    ap.add_argument("--no-rotations", dest="rotations", action="store_false",
                    help="skip rotated copies on upright WIDER photos")
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--int8", default=str(REPO / "python" / "veil" / "models" / "centerface_int8.onnx"),
                    help="quantized model for the session set")
    ap.add_argument("--json", help="write the summaries here")
    ap.add_argument("--cache", help="keep the decoded passes here (pickle) and reuse them on the next run")
    args = ap.parse_args(argv)
    if not (rd.WIDER / "gt.json").is_file():
        print(f"skipped: {rd.WIDER} is absent")
        return 0
    sys.stdout.reconfigure(line_buffering=True)
    net = Net(Path(args.model), threads=args.threads)
    net.faces(np.zeros((320, 320, 3), np.uint8))  # warm up
    sets = args.sets.split(",")
    summary = {}
    print(f"model {args.model}; each pass decoded at {LOW}; cpu = CPU s per photo (all threads)")
    if "session" in sets:
        run_session(args)
    if "rotated" in sets:
        report_rotated(run_rotated(net))
    if "border" in sets:
        run_border(net, args)
    import pickle

    def cached(name, make):
        if args.cache:
            f = Path(args.cache) / f"{name}.pkl"
            if f.is_file():
                return pickle.loads(f.read_bytes())
            c = make()
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(pickle.dumps(c))
            return c
        return make()

    if "rotwider" in sets:
        cache = cached(f"rotwider{args.limitrot}", lambda: run_rotwider(net, rd.wider_entries(args.limitrot)))
        rows = score_plans(cache, rotwider_plans())
        print_rows(f"WIDER photos turned 90/180/270 (no EXIF), {len(cache)} photos", rows)
        summary["rotwider"] = {n: dict(s.summary(), cpu=c) for n, s, c in rows}
    if "native" in sets:
        entries = rd.wider_entries(args.limit or None)
        cache = cached(f"native{args.limit}", lambda: run_native(net, entries, args))
        rows = score_plans(cache, native_plans(args))
        print_rows(f"WIDER native size, {len(cache)} photos", rows, attrs=True)
        summary["native"] = {n: dict(s.summary(), cpu=c) for n, s, c in rows}
    if "12mp" in sets:
        entries = rd.wider_entries(args.limit12 or None)
        cache = cached(f"12mp{args.limit12}", lambda: run_12mp(net, entries, args))
        rows = score_plans(cache, plans_12mp())
        print_rows(f"WIDER upscaled to 12 MP, {len(cache)} photos", rows, attrs=True)
        summary["12mp"] = {n: dict(s.summary(), cpu=c) for n, s, c in rows}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
