"""Face detection recall, false positives and cost: veil side by side with deface.

Tools, each run in its own subprocess over the same pixels (prepared once
here and handed over as ``.npy`` files, so decoding is not timed):

* ``veil``: ``veil.detect.detect_faces(image)`` at its defaults;
* ``no-tiles``: ``detect_faces(image, tiles=False)`` (``--no-tiles``);
* ``deface``: deface 1.5.0's own ``CenterFace`` class called as its CLI
  calls it by default (``CenterFace(in_shape=None)``: full resolution;
  ``threshold=0.2``), run by the Python of the bench environment
  (``--deface-python``, default ``.venv-bench/bin/python``).

Only the public ``detect_faces`` API is used, so the bench measures whatever
pipeline veil ships. ``cpu s``: CPU seconds per photo of the detection call
(``time.process_time``: all of onnxruntime's threads); ``peak MB``: the
tool's process's high-water resident set (``VmHWM``), loading included.

Sets (``--only``, comma-separated):

* ``native``: ``wider/gt.json`` photos as they are. Recall at IoU >= 0.5 and
  >= 0.3 by face size (longer side of the labelled box, px: < 16, 16-32,
  32-64, 64-128, > 128), and for faces >= 16 px by WIDER attribute (blur,
  occlusion, pose, illumination); false positives per image (detections
  matching no labelled face at IoU >= 0.3; ``invalid`` faces are ignored,
  as WIDER's evaluation does); crowd: of the photos of the crowd event
  classes (parade, demonstration, cheering, election campaign, marching,
  concerts, festival, sports fans, street battle) that have a face >= 16 px,
  how many have every such face covered: at least half of its box under the
  union of the masks veil draws (each detected box grown 1.3x about its
  centre, the inscribed ellipse);
* ``12mp``: the same photos enlarged (Lanczos) to about 12 MP, boxes scaled
  (sizes then refer to the 12 MP photo);
* ``other``: ``groups/boxes.json`` (9 photos, 43 faces; hits at IoU >= 0.4),
  ``dogs.jpg`` (0 faces expected), the 9 group photos turned 90/180/270
  degrees with no EXIF tag (129 faces: how many are left uncovered), and
  border-cut portraits (the photo cut through the face so that 40-100 % of
  the face box is inside, at each edge; covered = at least half of the
  visible part of the box under the masks; the face box is what veil finds
  on the uncut photo shrunk to 512 px).

Run: ``.venv/bin/python benches/bench_recall.py [--quick] [--limit N]
[--limit12 N] [--only native,12mp,other] [--tools veil,no-tiles,deface]``.
``--quick``: 60 WIDER photos at native size and 12 at 12 MP (about 4
CPU-minutes in all; wall time grows with the machine's load). Exits 0 with a message when the shared
photos are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recall_data as rd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFACE_THRESHOLD = 0.2  # deface's default
BORDER_FRACTIONS = (0.4, 0.6, 0.8)  # share of the face box left inside the cut photo

# Runs in the tool's own process: reads a job (tool, list of .npy files) on
# stdin, prints per photo the boxes (left, top, right, bottom, score) and
# the CPU seconds of the detection call, then the process's peak memory.
_WORKER = r"""
import json, sys, time
import numpy as np
job = json.loads(sys.stdin.read())
tool = job["tool"]
if tool == "deface":
    import contextlib, io
    from deface.centerface import CenterFace
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its provider
        net = CenterFace(in_shape=None, backend="onnxrt")
    def detect(rgb):
        dets, _ = net(rgb, threshold=job["threshold"])
        return [[float(v) for v in d[:5]] for d in dets]
else:
    from veil.detect import detect_faces
    kwargs = dict(job["kwargs"])
    search = kwargs.pop("search", None)
    if search:  # settings of the core's search that the public API does not take
        import functools
        import veil.detect
        veil.detect._veil = type("Core", (), {"FaceSearch": functools.partial(veil.detect._veil.FaceSearch, **search)})
    def detect(rgb):
        return [list(f.box) + [f.score] for f in detect_faces(rgb, **kwargs)]
detect(np.zeros((64, 64, 3), np.uint8))  # warm-up: session creation is not per photo
out = []
for path in job["files"]:
    rgb = np.load(path)
    t = time.process_time()
    dets = detect(rgb)
    out.append({"dets": dets, "cpu": time.process_time() - t})
    del rgb
hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1]) / 1024
print(json.dumps({"photos": out, "peak_mb": hwm}))
"""

TOOLS = {
    "veil": ("veil default", {}),
    "no-tiles": ("veil --no-tiles", {"tiles": False}),
    "deface": ("deface 1.5.0 (full res, 0.2)", None),
}
for _t in ("0.15", "0.1"):
    TOOLS["t" + _t] = (f"veil threshold {_t}", {"threshold": float(_t)})
# The tiles' gate, as a share of the threshold (the core's Settings::tile_gate).
for _t in ("0", "0.5", "0.75", "1"):
    TOOLS["g" + _t] = (f"veil tile gate {_t}", {"search": {"tile_gate": float(_t)}})


def run_tool(tool: str, files: list, deface_python: str) -> dict:
    label, kwargs = TOOLS[tool]
    job = {"tool": tool, "files": [str(f) for f in files], "kwargs": kwargs, "threshold": DEFACE_THRESHOLD}
    python = deface_python if tool == "deface" else sys.executable
    start = time.perf_counter()
    done = subprocess.run([python, "-c", _WORKER], input=json.dumps(job), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{label} failed: {done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    r["wall"] = time.perf_counter() - start
    return r


class Prepared:
    """Photos written once as .npy, with their truth, for every tool."""

    def __init__(self, tmp: Path, name: str):
        self.dir = tmp / name
        self.dir.mkdir()
        self.files, self.meta = [], []

    def add(self, rgb: np.ndarray, **meta):
        f = self.dir / f"{len(self.files):04d}.npy"
        np.save(f, np.ascontiguousarray(rgb))
        self.files.append(f)
        self.meta.append(meta)

    def clear(self):
        for f in self.files:
            f.unlink(missing_ok=True)


def prepare_wider(tmp, entries, twelve: bool) -> Prepared:
    p = Prepared(tmp, "12mp" if twelve else "native")
    for e in entries:
        rgb = rd.load_rgb(rd.WIDER / e["file"])
        factor = rd.twelve_mp_factor(rgb.shape[1], rgb.shape[0]) if twelve else 1.0
        if twelve:
            rgb = rd.resize(rgb, factor)
        truth, invalid, faces = rd.wider_truth(e, factor)
        p.add(rgb, truth=truth, invalid=invalid, faces=faces, crowd=e["event"] in rd.CROWD_EVENTS)
    return p


def prepare_mosaic(tmp, entries, per_side: int = 4) -> Prepared:
    """12 MP photos with real detail: native WIDER photos laid out
    ``per_side`` x ``per_side`` on one canvas (rows as tall as their tallest
    photo, black around the others), so that faces keep their native pixel
    sizes in a photo of about 4096 x 3000, as a crowd shot with a phone is."""
    p = Prepared(tmp, "mosaic")
    n = per_side * per_side
    for start in range(0, len(entries) - n + 1, n):
        group = entries[start:start + n]
        rows, truth, invalid, faces, crowd = [], [], [], [], False
        y = 0
        for r in range(per_side):
            photos = [rd.load_rgb(rd.WIDER / e["file"]) for e in group[r * per_side:(r + 1) * per_side]]
            height = max(im.shape[0] for im in photos)
            row = np.zeros((height, 1024 * per_side, 3), np.uint8)
            for c, (im, e) in enumerate(zip(photos, group[r * per_side:(r + 1) * per_side])):
                im = im[:, :1024]
                row[:im.shape[0], 1024 * c:1024 * c + im.shape[1]] = im
                b, inv, fs = rd.wider_truth(e)
                truth.append(b + [1024 * c, y, 1024 * c, y])
                invalid.append(inv)
                faces.extend(fs)
                crowd |= e["event"] in rd.CROWD_EVENTS
            rows.append(row)
            y += height
        p.add(np.concatenate(rows), truth=np.concatenate(truth), invalid=np.concatenate(invalid), faces=faces,
              crowd=crowd)
    return p


def score_wider(p: Prepared, result: dict) -> rd.Score:
    s = rd.Score()
    for m, r in zip(p.meta, result["photos"]):
        s.add(np.array(r["dets"], dtype=np.float64).reshape(-1, 5), m["truth"], m["invalid"], m["faces"], m["crowd"])
    return s


def wider_section(title, p, tools, deface_python, summary):
    print(f"\n## {title}: {len(p.files)} photos, "
          f"{sum(int((~m['invalid']).sum()) for m in p.meta)} valid faces")
    print(rd.header() + "; cpu s/photo, peak MB")
    scores = {}
    for tool in tools:
        r = run_tool(tool, p.files, deface_python)
        s = score_wider(p, r)
        cpu = float(np.mean([x["cpu"] for x in r["photos"]]))
        scores[tool] = (s, cpu, r["peak_mb"])
        print(rd.format_row(TOOLS[tool][0], s, cpu, f" | {r['peak_mb']:6.0f} MB"))
        summary.setdefault(title, {})[tool] = dict(s.summary(), cpu=cpu, peak_mb=r["peak_mb"])
    print("attributes (faces >= 16 px, recall at IoU >= 0.3):")
    for tool in tools:
        print(rd.attr_row(TOOLS[tool][0], scores[tool][0]))
    if "deface" in scores:
        d = scores["deface"][1]
        print("CPU per photo, deface / tool: " + ", ".join(
            f"{TOOLS[t][0]} {d / c:.1f}x" for t, (s, c, _) in scores.items() if t != "deface" and c > 0))
    sys.stdout.flush()


def other_section(tmp, tools, deface_python, summary):
    from veil.detect import detect_faces

    groups = rd.group_photos()
    g = Prepared(tmp, "groups")
    for name, rgb, truth in groups:
        g.add(rgb, truth=truth, turn=0)
    g.add(rd.load_rgb(rd.GROUPS / "dogs.jpg"), truth=np.zeros((0, 4)), turn=-1)
    for k in (1, 2, 3):
        for name, rgb, truth in groups:
            img, tr = rd.rotate(rgb, truth, k)
            g.add(img, truth=tr, turn=k)
    reference = {}
    for path in sorted(rd.PORTRAITS.iterdir()):
        rgb = rd.load_rgb(path)
        rgb = rd.resize(rgb, min(1.0, 800 / max(rgb.shape[:2])))  # border_crops' size
        faces = detect_faces(rgb, max_side_px=512, tiles=False)
        if faces and path.name != "obama_partial_1.jpg":  # the half face has no whole box to cut
            reference[path.name] = max(faces, key=lambda f: f.score).box
    crops = rd.border_crops(reference, fractions=BORDER_FRACTIONS, max_side=800)
    for name, edge, frac, rgb, box in crops:
        g.add(rgb, truth=box, turn=None, edge=edge, frac=frac)
    fracs = sorted({c[2] for c in crops})
    print(f"\n## other sets: groups/boxes.json (9 photos, 43 faces, hit at IoU >= 0.4); dogs.jpg; "
          f"the group photos turned 90/180/270 (no EXIF; 129 faces); {len(crops)} border-cut crops of "
          f"{len(reference)} portraits")
    print(f"{'tool':30} | groups hits | false | dogs | turned: uncovered | border-cut covered by share inside: "
          + " ".join(f"{int(f * 100)}%" for f in fracs) + " | cpu s/photo")
    for tool in tools:
        r = run_tool(tool, g.files, deface_python)
        hits = fp = dogs = unc = n_turned = 0
        border = {}
        for m, x in zip(g.meta, r["photos"]):
            d = np.array(x["dets"], dtype=np.float64).reshape(-1, 5)
            if m.get("turn") == 0:
                h, f = rd.match(d, m["truth"], np.zeros(len(m["truth"]), bool), 0.4)
                hits += int(h.sum())
                fp += f
            elif m.get("turn") == -1:
                dogs = len(d)
            elif m.get("turn") in (1, 2, 3):
                cov = rd.covered_fraction(m["truth"], d[:, :4]) >= rd.COVER_MIN
                unc += int((~cov).sum())
                n_turned += len(cov)
            else:
                ok = rd.covered_fraction(m["truth"], d[:, :4])[0] >= rd.COVER_MIN
                border.setdefault(m["frac"], []).append(bool(ok))
        cpu = float(np.mean([x["cpu"] for x in r["photos"]]))
        cells = " ".join(f"{sum(border[f])}/{len(border[f])}" for f in fracs)
        print(f"{TOOLS[tool][0]:30} | {hits:>5}/43    | {fp:>5} | {dogs:>4} | {unc:>5} of {n_turned:<5}     | {cells} "
              f"| {cpu:.3f}")
        summary.setdefault("other", {})[tool] = {
            "groups_hits": hits, "groups_fp": fp, "dogs": dogs, "turned_uncovered": unc, "turned_faces": n_turned,
            "border": {str(f): [sum(v), len(v)] for f, v in border.items()}, "cpu": cpu}
    g.clear()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="WIDER photos at native size (default: all 267)")
    ap.add_argument("--limit12", type=int, default=40, help="WIDER photos at 12 MP (default 40; 0: all)")
    ap.add_argument("--limitmosaic", type=int, default=8, help="12 MP mosaics of 16 native photos (default 8; 0: all)")
    ap.add_argument("--quick", action="store_true", help="60 photos native, 12 at 12 MP, 4 mosaics")
    ap.add_argument("--only", default="native,12mp,mosaic,other", help="sets to run: native, 12mp, mosaic, other")
    ap.add_argument("--tools", default="veil,no-tiles,deface", help="tools: veil, no-tiles, deface")
    ap.add_argument("--deface-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if not (rd.WIDER / "gt.json").is_file():
        print(f"skipped: {rd.WIDER} is absent (the shared face photos are not part of a clone)")
        return 0
    if args.quick:
        args.limit, args.limit12, args.limitmosaic = 60, 12, 4
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}; choose from {', '.join(TOOLS)}")
    if "deface" in tools and not Path(args.deface_python).is_file():
        print(f"deface's environment is missing ({args.deface_python}): its rows are left out; set it up with\n"
              "  python -m venv .venv-bench && .venv-bench/bin/pip install -r benches/requirements-bench.txt")
        tools.remove("deface")
    sets = args.only.split(",")
    import onnxruntime

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; onnxruntime "
          f"{onnxruntime.__version__}; face size = longer side of the labelled box")
    summary = {}
    with tempfile.TemporaryDirectory(prefix="veil-recall-") as tmp:
        tmp = Path(tmp)
        if "native" in sets:
            p = prepare_wider(tmp, rd.wider_entries(args.limit or None), twelve=False)
            wider_section("WIDER native size", p, tools, args.deface_python, summary)
            p.clear()
        if "12mp" in sets:
            p = prepare_wider(tmp, rd.wider_entries(args.limit12 or None), twelve=True)
            wider_section("WIDER upscaled to 12 MP", p, tools, args.deface_python, summary)
            p.clear()
        if "mosaic" in sets:
            p = prepare_mosaic(tmp, rd.wider_entries(args.limitmosaic * 16 or None))
            wider_section("WIDER native photos in 4 x 4 mosaics of about 12 MP", p, tools, args.deface_python, summary)
            p.clear()
        if "other" in sets:
            other_section(tmp, tools, args.deface_python, summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
