"""How far is a ghost network (Li et al. AAAI 2020) from the recognizer it
erodes? The cloak's ghost networks (``veil.cloak.GHOST_KEEP`` /
``GHOST_SKIP``) are only useful while they still recognize the face and
their gradient still points roughly where the plain one does.

For each photo (the first 8 that ``benches/bench_cloak.py --limit 8``
cloaks) and each ensemble recognizer, on the face's aligned crop:

* **embedding cosine**: between the ghost network's embedding and the plain
  one (1 = the same; the recognizers match faces above about 0.35-0.77,
  ``bench_cloak``'s 1%-FAR thresholds);
* **gradient cosine**: between the ghost network's gradient of the cloak's
  loss (cosine to a target embedding) and the plain network's, at the
  pixels. The target is the next photo's face, so that the gradient is not
  the near-zero one at the loss' maximum.

Each is the mean over ``--draws`` ghost networks per photo. The graphs with
ghost inputs are built in memory by ``tools/recognizers/make_gradient_graph.py``
(the dev environment's ``onnx``).

Run: ``.venv/bin/python benches/bench_ghost.py``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEEPFACE = REPO.parent / "shared" / "data" / "faces" / "deepface"
PHOTOS = ("img1.jpg", "img10.jpg", "img13.jpg", "img14.jpg", "img16.jpg", "img18.jpg", "img2.jpg", "img20.jpg")
SETTINGS = ((0.95, 0.0), (0.99, 0.0), (0.995, 0.0), (0.998, 0.0), (1.0, 0.2), (0.995, 0.2))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=4, help="ghost networks per photo and setting (default 4)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not all((DEEPFACE / p).is_file() for p in PHOTOS):
        print(f"bench_ghost: skipped: the photos are not in {DEEPFACE}")
        return 0
    try:
        import onnx
        import onnxruntime as ort
        from PIL import Image

        import veil.cloak as vc
    except ImportError as e:
        print(f"bench_ghost: skipped: {e}")
        return 0
    sys.path.insert(0, str(REPO / "tools" / "recognizers"))
    from make_gradient_graph import ghost_inputs, make_gradient_graph

    photos = [np.asarray(Image.open(DEEPFACE / p).convert("RGB")) for p in PHOTOS]
    landmarks = [np.asarray(vc.find_faces(rgb)[0].landmarks, dtype=np.float64) for rgb in photos]
    print(f"# bench_ghost: {len(photos)} deepface photos, {args.draws} ghost networks each; "
          "mean cosine to the plain network (embedding / gradient)")
    print("| recognizer | " + " | ".join(f"keep {k}, skip {s}" for k, s in SETTINGS) + " |")
    print("|---" * (len(SETTINGS) + 1) + "|")
    for name in vc.ENSEMBLE:
        rec = vc._recognizer(name)
        grad = make_gradient_graph(onnx.load_from_string(rec._load(rec.sidecar["file"], rec.sidecar["sha256"])),
                                   ghost_dropout=True, ghost_skip=True)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(grad.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rec.ghost_inputs = ghost_inputs(grad)
        crops = [vc._crop(rec, rgb.astype(np.float32), vc._align(lm, rec), False) for rgb, lm in zip(photos, landmarks)]
        cells = []
        for keep, skip in SETTINGS:
            rng = np.random.default_rng(0)
            emb_cos, grad_cos = [], []
            for i, crop in enumerate(crops):
                x = rec.to_input(crop)
                target = rec.embed(crops[(i + 1) % len(crops)], args.threads)[None]
                _, g0, e0 = sess.run(["loss", "grad", "embedding"], {"image": x, "target": target})
                e0 = e0[0] / np.linalg.norm(e0[0])
                for _ in range(args.draws):
                    feeds = rec.ghost(rng, keep, skip)
                    _, g, e = sess.run(["loss", "grad", "embedding"], {"image": x, "target": target, **feeds})
                    emb_cos.append(float(e[0] @ e0 / np.linalg.norm(e[0])))
                    grad_cos.append(float((g * g0).sum() / (np.linalg.norm(g) * np.linalg.norm(g0))))
            cells.append(f"{np.mean(emb_cos):.2f} / {np.mean(grad_cos):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("(skip erosion acts only on MobileFace, the one model with residual shortcuts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
