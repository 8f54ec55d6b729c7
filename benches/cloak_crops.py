"""Side-by-side crops at 100% of cloaked photos, for the README: original,
``low``, ``mid``, ``high``, each a crop of the same photo region (cheek,
forehead and some background), no scaling.

Reads the cloaked photos that ``benches/bench_cloak.py --save DIR`` wrote
(``<stem>.<mode>.png``), so the crops show exactly the photos measured.

Run:  ``.venv/bin/python benches/cloak_crops.py DIR img1.jpg img10.jpg img14.jpg``
      (writes ``docs/cloak-<stem>.png``)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "faces" / "deepface"
MODES = ("low", "mid", "high")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("saved", type=Path, help="the --save folder of bench_cloak.py")
    ap.add_argument("photos", nargs="+", help="file names in shared/data/faces/deepface")
    ap.add_argument("--size", type=int, default=300, help="crop side in pixels (default 300)")
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--columns", default=",".join(MODES),
                    help="the saved versions to show after the original, by file suffix (default low,mid,high)")
    args = ap.parse_args(argv)
    from veil.cloak import find_faces
    from veil.io import load_image

    for name in args.photos:
        rgb = np.ascontiguousarray(load_image(str(DATA / name)).pixels[:, :, :3])
        stem = Path(name).stem
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        versions = [rgb] + [np.asarray(Image.open(args.saved / f"{stem}.{m}.png").convert("RGB")) for m in columns]
        face = find_faces(rgb)[0]
        l, t, r, b = face.box
        # Centred on the face, reaching past its side into the background.
        side = min(args.size, rgb.shape[0], rgb.shape[1])
        cx, cy = (l + r) / 2 + 0.25 * (r - l), (t + b) / 2
        x0 = int(np.clip(cx - side / 2, 0, rgb.shape[1] - side))
        y0 = int(np.clip(cy - side / 2, 0, rgb.shape[0] - side))
        gap, label_h = 6, 18
        n = len(versions)
        sheet = Image.new("RGB", (n * side + (n - 1) * gap, side + label_h), "white")
        draw = ImageDraw.Draw(sheet)
        for i, (label, v) in enumerate(zip(["original"] + columns, versions)):
            sheet.paste(Image.fromarray(v[y0:y0 + side, x0:x0 + side]), (i * (side + gap), label_h))
            draw.text((i * (side + gap) + 4, 3), label, fill="black")
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"cloak-{stem}.png"
        sheet.save(path, optimize=True)
        print(f"{path}: {name} crop x {x0}..{x0 + side}, y {y0}..{y0 + side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
