"""Faces cut by the photo's edge: how many each border setting covers.

Portraits (tests/fixtures/portrait.jpg and ../shared/data/faces/portraits)
are cropped so that only a share of the face box stays inside the photo, at
each of the four edges; a face counts as covered when at least half of its
visible part lies under veil's mask (the ellipse inscribed in each detected
box grown 1.3x). The same run checks the 9 annotated group photos (recall
at IoU >= 0.3, and detections that match no label) so a border that finds
cut faces but loses others shows, with CPU seconds per photo.

Usage: .venv/bin/python benches/bench_border_cut.py [--shares 0.6 0.5 0.4 0.3] [--configs 'no border' ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from veil import _veil  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from _bordercut import cut  # noqa: E402
from veil import detect as vd  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"
CONFIGS = {
    "no border": dict(border=0.0),
    "mirror 1/8": dict(border=0.125, border_fill="mirror"),
    "mirror 1/4": dict(border=0.25, border_fill="mirror"),
    "edge 1/4": dict(border=0.25, border_fill="edge"),
    "zero 1/4": dict(border=0.25, border_fill="zero"),
}


def detect(image: np.ndarray, **settings) -> list:
    session = vd._session()
    search = _veil.FaceSearch(image, vd.DEFAULT_THRESHOLD, vd.DEFAULT_MAX_SIDE_PX, True, True, **settings)
    while (blob := search.next_input()) is not None:
        search.push_output(*session.run(vd._OUTPUT_NAMES, {vd._INPUT_NAME: blob}))
    return [r[:5] for r in search.finish()]


def covered(box, faces, mask_scale=1.3) -> float:
    l, t, r, b = int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3]))
    if r <= l or b <= t:
        return 0.0
    ys, xs = np.mgrid[t:b, l:r] + 0.5
    under = np.zeros(ys.shape, bool)
    for fl, ft, fr, fb, _ in faces:
        rx, ry = (fr - fl) * mask_scale / 2, (fb - ft) * mask_scale / 2
        if rx > 0 and ry > 0:
            under |= ((xs - (fl + fr) / 2) / rx) ** 2 + ((ys - (ft + fb) / 2) / ry) ** 2 <= 1
    return float(under.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.6, 0.5, 0.4, 0.3])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    portraits = [ROOT / "tests" / "fixtures" / "portrait.jpg"] + sorted((FACES / "portraits").glob("*.*"))
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in portraits if p.suffix.lower() in (".jpg", ".png")]
    faces = []
    for image in photos:
        found = vd.detect_faces(image)
        if found:
            faces.append((image, max(found, key=lambda f: f.width * f.height).box))
    print(f"{len(faces)} portraits, each cut at 4 edges; covered = >= half the visible face under the mask")
    header = f"{'border':<12}" + "".join(f"{'kept ' + str(int(s * 100)) + '%':>10}" for s in args.shares)
    header += f"{'groups recall':>15}{'unlabelled':>11}{'CPU s/photo':>12}"
    print(header)
    print("-" * len(header))
    groups = FACES / "groups"
    truth = json.loads((groups / "boxes.json").read_text()) if (groups / "boxes.json").is_file() else {}
    group_images = {n: np.asarray(Image.open(groups / n).convert("RGB")) for n, v in truth.items() if isinstance(v, list)}
    for name in args.configs:
        settings = CONFIGS[name]
        row, cpu, runs = f"{name:<12}", 0.0, 0
        for share in args.shares:
            ok = total = 0
            for image, box in faces:
                for edge in ("left", "right", "top", "bottom"):
                    crop, visible = cut(image, box, edge, share)
                    t0 = time.process_time()
                    found = detect(np.ascontiguousarray(crop), **settings)
                    cpu, runs = cpu + time.process_time() - t0, runs + 1
                    total += 1
                    ok += covered(visible, found) >= 0.5
            row += f"{ok:>5}/{total:<4}"
        hit = labels = unmatched = 0
        for n, image in group_images.items():
            boxes = [(l, t, l + bw, t + bh) for l, t, bw, bh in truth[n]]
            t0 = time.process_time()
            found = detect(image, **settings)
            cpu, runs = cpu + time.process_time() - t0, runs + 1
            labels += len(boxes)
            hit += sum(any(vd.box_iou(f[:4], b) >= 0.3 for f in found) for b in boxes)
            unmatched += sum(not any(vd.box_iou(f[:4], b) >= 0.3 for b in boxes) for f in found)
        row += f"{hit:>9}/{labels:<5}{unmatched:>11}{cpu / max(runs, 1):>12.3f}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
