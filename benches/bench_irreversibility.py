"""Irreversibility of veil's anonymization, measured with a recognizer veil never uses.

For every method and strength (with and without noise) this measures:

* **re-identification**: how often an anonymized face is still matched to a
  clean photo of the same person by native dlib's ResNet face descriptor
  (``dlib_face_recognition_resnet_model_v1.dat``, LFW 99.38 % per dlib), an
  independent implementation that veil's code never touches;
* **re-detection**: how often veil's own detector (CenterFace,
  :func:`veil.detect.detect_faces`) still finds the anonymized face (any
  detection with IoU >= 0.4 with the box that was anonymized).

The bars, from the issue: an anonymized face matches the clean other photo in
at most 2 % of pairs, and is re-detected in at most 5 %. Blur and mosaic are
partly reversible (McPherson, Shokri & Shmatikov 2016, "Defeating Image
Obfuscation with Deep Learning": 57-96 % top-1 on pixelated or blurred faces;
diffusion deblurring re-identified 95.9 % of Gaussian-blurred faces in
Revelio, 2025), so the default must be chosen by measurement, not by eye.

Pairs (same person): the ``Decision == "Yes"`` pairs of
``shared/data/faces/deepface/master.csv`` and every same-identity pair in
``shared/data/faces/portraits`` (identity = file name before the last
``_N``; ``obama_partial_1.jpg`` is Obama, as the data's README says), both
directions: the face in one photo is anonymized and compared with the
clean other photo. Different-person pairs (``Decision == "No"``)
calibrate a second threshold at 1 % false accepts.

The attacker is made strong on purpose:

* the anonymized face's descriptor is taken at the *clean* face's location
  and landmarks (dlib's HOG detector and 5-point shape predictor run on the
  clean photo), since an anonymized face may no longer be detectable;
* three thresholds: dlib's standard 0.6 (dlib's ``dnn_face_recognition_ex``
  and face_recognition's ``tolerance=0.6``); the distance at which clean
  different-person pairs of master.csv are falsely accepted 1 % of the time
  (``@far1``, shown with ``far``, how often it matches anonymized faces to
  different people); and the attacker's own threshold for anonymized faces,
  1 % false accepts on anonymized-vs-clean different-person pairs
  (``tar@1%``). The bar is judged on 0.6 and ``tar@1%`` (see :func:`passes`);
* knowing the method and strength (both are visible), the attacker also
  smooths the aligned face before matching (a Gaussian of half the block /
  blur width), which removes mosaic edges and added noise; a pair counts as
  matched if either the plain or the smoothed face matches;
* ``parrot``: the attacker anonymizes the clean gallery photo the same way
  and compares anonymized with anonymized ("parrot recognition", Newton,
  Sweeney & Malin 2005, "Preserving Privacy by De-identifying Face Images"),
  with its own threshold at 1 % false accepts on equally anonymized
  different-person pairs. This is stricter than the issue's bar and is shown
  beside it.

Photos are cropped around the face (3 x dlib's face box) and shrunk to at
most ``CROP_MAX_PX`` on the longer side, so faces are about 150-200 px: the
size of faces in photos shared through messengers, and the size dlib aligns
to (150 px chips) anyway. Re-detection is also counted on the 9 annotated
group photos (``groups/``, small faces), whole.

Needs native dlib and its models, kept out of veil's dependencies: run
``scripts/setup_eval_env.sh`` once, then
``.venv-eval/bin/python benches/bench_irreversibility.py``. Skips (exit 0)
when the shared photos or dlib are absent.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from veil.detect import box_iou

# The shared photos sit beside the repository, at ../shared/data/faces.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"

# dlib's standard same-person threshold on descriptor distance: its example
# dnn_face_recognition_ex.cpp says descriptors less than 0.6 apart (Euclidean)
# are of the same person, and face_recognition's compare_faces defaults to
# tolerance=0.6.
DLIB_MATCH_THRESHOLD = 0.6
FAR_TARGET = 0.01  # the calibrated threshold's false-accept rate
REID_BAR = 0.02  # the bars
REDETECT_BAR = 0.05
HIT_IOU = 0.4  # a face counts as re-detected above this IoU (as in bench_recall.py)
# A more eager detector than veil's default (0.2, deface's value, at the time
# of writing), shown beside it as a stronger re-detection attempt.
EAGER_THRESHOLD = 0.1

CROP_SIDE_FACES = 3.0  # crop side, in dlib face-box sides
CROP_MAX_PX = 512
DETECT_MAX_SIDE_PX = 1280  # dlib's detector runs on the photo shrunk to this
CHIP_PX, CHIP_PADDING = 150, 0.25  # dlib's own alignment for its descriptor

STRENGTHS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
NOISES = (0, 32)
METHODS = ("gaussian_blur", "box_blur", "pixelate")
QUICK_STRENGTHS = (0.1, 0.2, 0.5)


# --------------------------------------------------------------------------
# Setup and skipping
# --------------------------------------------------------------------------


def skip(message: str) -> None:
    print(f"bench_irreversibility: skipped: {message}")
    sys.exit(0)


def _import_dlib():
    """(dlib, face_recognition_models) or a skip message."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError as exc:
        skip(
            f"{exc.name or exc} is not installed. This bench needs native dlib, an evaluation-only "
            "dependency: run scripts/setup_eval_env.sh, then .venv-eval/bin/python benches/bench_irreversibility.py"
        )
    import dlib
    import face_recognition_models

    return dlib, face_recognition_models


@dataclass
class Recognizer:
    """dlib's HOG face detector, 5-point shape predictor and ResNet descriptor."""

    dlib: object
    detector: object
    shapes: object
    net: object

    @classmethod
    def load(cls) -> "Recognizer":
        dlib, models = _import_dlib()
        return cls(
            dlib=dlib,
            detector=dlib.get_frontal_face_detector(),
            shapes=dlib.shape_predictor(models.pose_predictor_five_point_model_location()),
            net=dlib.face_recognition_model_v1(models.face_recognition_model_location()),
        )

    def shape(self, image: np.ndarray, rect: Sequence[int], parts: Optional[np.ndarray] = None):
        """A dlib full_object_detection: predicted, or rebuilt from ``parts``."""
        dlib = self.dlib
        r = dlib.rectangle(*(int(v) for v in rect))
        if parts is None:
            return self.shapes(image, r)
        return dlib.full_object_detection(r, [dlib.point(int(x), int(y)) for x, y in parts])

    def chip(self, image: np.ndarray, shape) -> np.ndarray:
        """The aligned 150x150 face chip dlib's network expects."""
        return np.asarray(self.dlib.get_face_chip(image, shape, size=CHIP_PX, padding=CHIP_PADDING))

    def chip_scale(self, shape) -> float:
        """Chip pixels per image pixel for this face's alignment."""
        details = self.dlib.get_face_chip_details(shape, size=CHIP_PX, padding=CHIP_PADDING)
        return CHIP_PX / max(1.0, details.rect.width())

    def descriptors(self, chips: List[np.ndarray]) -> np.ndarray:
        out = self.net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.array([np.asarray(v) for v in out], dtype=np.float64)


# --------------------------------------------------------------------------
# The photos
# --------------------------------------------------------------------------


@dataclass
class Subject:
    """One photo of a known person, cropped around their face, prepared once."""

    name: str  # "deepface/img1.jpg"
    crop: np.ndarray  # RGB uint8
    rect: Tuple[int, int, int, int]  # dlib face box in the crop (l, t, r, b)
    parts: np.ndarray  # dlib's 5 landmarks in the crop, (5, 2)
    faces: list  # veil Faces on the clean crop (what anonymize covers)
    subject: int  # index in faces of this person's face
    descriptor: np.ndarray  # clean dlib descriptor
    seed: int


@dataclass
class GroupPhoto:
    """A photo used for re-detection only: every face veil finds, anonymized."""

    name: str
    image: np.ndarray
    faces: list
    seed: int


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-9:
        return image
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def _seed(name: str) -> int:
    # Per photo, independent of the order photos are visited in.
    return zlib.crc32(name.encode())


def prepare_subject(rec: Recognizer, path: Path, name: str) -> Tuple[Optional[Subject], str]:
    """Finds the person's face with dlib, crops around it, and records the clean
    landmarks, descriptor and veil's detections. Returns (subject, problem)."""
    from veil.detect import detect_faces

    photo = _load_rgb(path)
    # dlib's HOG detector on a shrunk copy (speed), upsampled once for small faces.
    shrink = min(1.0, DETECT_MAX_SIDE_PX / max(photo.shape[:2]))
    small = _resize(photo, shrink)
    rects = rec.detector(small, 1)
    if not rects:
        return None, "dlib found no face"
    r = max(rects, key=lambda r: r.width() * r.height())  # the portrait's subject
    cx, cy = (r.left() + r.right()) / 2 / shrink, (r.top() + r.bottom()) / 2 / shrink
    side = max(r.width(), r.height()) / shrink
    half = CROP_SIDE_FACES * side / 2
    h, w = photo.shape[:2]
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(w, int(cx + half)), min(h, int(cy + half))
    scale = min(1.0, CROP_MAX_PX / max(x1 - x0, y1 - y0))
    crop = np.ascontiguousarray(_resize(photo[y0:y1, x0:x1], scale))
    k = scale / shrink
    rect = (
        round(r.left() * k - x0 * scale), round(r.top() * k - y0 * scale),
        round(r.right() * k - x0 * scale), round(r.bottom() * k - y0 * scale),
    )
    shape = rec.shape(crop, rect)
    parts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.int64)
    descriptor = rec.descriptors([rec.chip(crop, shape)])[0]

    faces = detect_faces(crop)
    overlaps = [box_iou(f.box, rect) for f in faces]
    if not overlaps or max(overlaps) < 0.3:
        # Anonymize would leave this face untouched: a detection miss, which
        # bench_recall.py measures; here it would only blur the comparison.
        return None, "veil's detector missed the face"
    return Subject(name, crop, rect, parts, faces, int(np.argmax(overlaps)), descriptor, _seed(name)), ""


# The folder's README says obama_partial_1.jpg is Obama with half the face out
# of frame: its file-name identity is only a description.
IDENTITY_ALIASES = {"portraits/obama_partial": "portraits/obama"}


def load_pairs() -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]], Dict[str, str]]:
    """(same-person pairs, different-person pairs, identity of each photo).

    master.csv labels all 300 pairs of its 25 photos, so its "Yes" pairs give
    complete identities there; in portraits/ the identity is the file name
    before the last ``_N``. The two sets are kept apart (no cross-set pairs).
    """
    same, different = [], []
    identity: Dict[str, str] = {}
    with open(DATA / "deepface" / "master.csv", newline="") as f:
        for row in csv.DictReader(f):
            pair = (f"deepface/{row['file_x']}", f"deepface/{row['file_y']}")
            (same if row["Decision"].strip() == "Yes" else different).append(pair)
    for name in sorted({n for pair in same + different for n in pair}):
        identity[name] = name
    for a, b in same:  # union of "Yes" pairs: one label per person
        old, new = identity[b], identity[a]
        for k, v in identity.items():
            if v == old:
                identity[k] = new
    by_identity: Dict[str, List[str]] = {}
    for p in sorted((DATA / "portraits").iterdir()):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
            person = f"portraits/{p.stem.rsplit('_', 1)[0]}"
            person = IDENTITY_ALIASES.get(person, person)
            identity[f"portraits/{p.name}"] = person
            by_identity.setdefault(person, []).append(f"portraits/{p.name}")
    for names in by_identity.values():
        same.extend(itertools.combinations(names, 2))
    return same, different, identity


def load_groups() -> List[GroupPhoto]:
    from veil.detect import detect_faces

    boxes = json.loads((DATA / "groups" / "boxes.json").read_text())
    out = []
    for name in sorted(boxes):
        image = np.ascontiguousarray(_load_rgb(DATA / "groups" / name))
        out.append(GroupPhoto(f"groups/{name}", image, detect_faces(image), _seed(name)))
    return out


# --------------------------------------------------------------------------
# One setting
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    method: str
    strength: float
    noise: int
    mask_scale: Optional[float] = None  # None: veil's default

    @property
    def label(self) -> str:
        text = f"{self.method} n={self.noise}" if self.method == "fill" else (
            f"{self.method} s={self.strength:g} n={self.noise}")
        return text if self.mask_scale is None else f"{text} mask={self.mask_scale:g}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "_").replace("=", "")


def anonymize(image: np.ndarray, faces: list, setting: Setting, seed: int) -> Tuple[np.ndarray, list]:
    """veil's public API on ``image`` with these (pre-detected) faces:
    (result, the pixel parameters it used for each face)."""
    import veil

    options = {} if setting.mask_scale is None else {"mask_scale": setting.mask_scale}
    out, report = veil.anonymize_with_report(
        image, method=setting.method, strength=setting.strength, noise=setting.noise,
        faces=faces, seed=seed, threads=1, **options,
    )
    return out, [r.params for r in report.regions]


def _attack_sigma_chip(setting: Setting, params: dict, chip_scale: float) -> Optional[float]:
    """The smoothing an attacker who sees the method applies to the aligned
    face, in chip pixels: half the mosaic block or blur width, which removes
    block edges and the added noise but little of what survived. None when
    smoothing cannot help (a plain blur, a fill)."""
    if setting.method == "pixelate":
        width = params["block_px"]
    elif setting.noise and setting.method == "gaussian_blur":
        width = params["sigma_px"]
    elif setting.noise and setting.method == "box_blur":
        width = params["radius_px"] / math.sqrt(3)  # the window's standard deviation
    else:
        return None
    return float(np.clip(0.5 * width * chip_scale, 0.8, 12.0))


def _smooth(chip: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(chip.astype(np.float32), sigma=(sigma, sigma, 0), mode="nearest")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def ssim_gray(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two RGB uint8 images' luma (Wang et al. 2004, Gaussian
    window sigma 1.5, K1 0.01, K2 0.03): how much of the face is left."""
    from scipy.ndimage import gaussian_filter

    def luma(x):
        return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    x, y = luma(a), luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = gaussian_filter(x, 1.5), gaussian_filter(y, 1.5)
    vx = gaussian_filter(x * x, 1.5) - mx * mx
    vy = gaussian_filter(y * y, 1.5) - my * my
    cxy = gaussian_filter(x * y, 1.5) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def _redetected(image: np.ndarray, faces: list) -> Tuple[int, int]:
    """How many of ``faces`` CenterFace finds again in ``image``: at veil's
    default threshold, and at the eager one."""
    from veil.detect import DEFAULT_THRESHOLD, detect_faces

    found = detect_faces(image, threshold=min(EAGER_THRESHOLD, DEFAULT_THRESHOLD))
    hits_default = hits_eager = 0
    for face in faces:
        best = [d.score for d in found if box_iou(d.box, face.box) >= HIT_IOU]
        hits_eager += bool(best)
        hits_default += any(s >= DEFAULT_THRESHOLD for s in best)
    return hits_default, hits_eager


# Worker state, set once per process by _init_worker.
_W: dict = {}


def _init_worker(subjects: List[Subject], groups: List[GroupPhoto]) -> None:
    _W["rec"] = Recognizer.load()
    _W["subjects"] = subjects
    _W["groups"] = groups


def run_setting(setting: Setting, examples: int = 0) -> dict:
    """Anonymizes every photo with one setting; returns the raw measurements."""
    rec: Recognizer = _W["rec"]
    t0 = time.process_time()
    plain, smoothed, ssims, crops = {}, {}, [], []
    # Re-detection counts per source: [faces, hits at veil's threshold, eager hits].
    counts = {"portraits": [0, 0, 0], "groups": [0, 0, 0]}

    def count(source: str, image: np.ndarray, faces: list) -> None:
        hits, eager = _redetected(image, faces)
        c = counts[source]
        c[0], c[1], c[2] = c[0] + len(faces), c[1] + hits, c[2] + eager

    for k, s in enumerate(_W["subjects"]):
        anon, params = anonymize(s.crop, s.faces, setting, s.seed)
        count("portraits", anon, s.faces)
        # The strong attacker: the clean face's landmarks on the anonymized photo.
        shape = rec.shape(anon, s.rect, s.parts)
        chip = rec.chip(anon, shape)
        chips = [chip]
        sigma = _attack_sigma_chip(setting, params[s.subject], rec.chip_scale(shape))
        if sigma is not None:
            chips.append(_smooth(chip, sigma))
        desc = rec.descriptors(chips)
        plain[s.name] = desc[0]
        smoothed[s.name] = desc[1] if len(desc) > 1 else None
        ssims.append(ssim_gray(rec.chip(s.crop, shape), chip))
        if k < examples:
            crops.append(anon)
    for g in _W["groups"]:
        anon, _ = anonymize(g.image, g.faces, setting, g.seed)
        count("groups", anon, g.faces)
    print(f"  {setting.label}: done", file=sys.stderr, flush=True)
    return {
        "setting": setting, "plain": plain, "smoothed": smoothed, "ssim": float(np.mean(ssims)),
        "counts": counts, "cpu_s": time.process_time() - t0, "examples": crops,
    }


# --------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------


def far_threshold(distances: Sequence[float], far: float = FAR_TARGET) -> Tuple[float, float]:
    """The largest threshold t (a match is d < t) that falsely accepts at
    most ``far`` of these different-person distances, and the rate it does."""
    d = np.sort(np.asarray(distances))
    allowed = int(math.floor(far * len(d)))  # pairs allowed below t
    t = float(d[allowed]) if allowed < len(d) else float("inf")
    return t, float(np.mean(d < t))


def wilson_upper(k: int, n: int, z: float = 1.645) -> float:
    """One-sided 95 % upper bound of a rate k/n (Wilson score interval)."""
    if n == 0:
        return float("nan")
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


@dataclass
class Protocol:
    """What every setting is scored on."""

    subjects: Dict[str, Subject]
    identity: Dict[str, str]
    same: List[Tuple[str, str]]  # directed: (anonymized probe, clean gallery)
    different: List[Tuple[str, str]]  # directed, master.csv "No" pairs
    t_far: float  # 1 % FAR on clean different-person pairs

    def gallery(self, probe: str) -> List[str]:
        """Photos a probe is identified among: every other photo of its set."""
        folder = probe.split("/")[0]
        return [n for n in self.subjects if n != probe and n.split("/")[0] == folder]


def score(raw: dict, proto: Protocol) -> dict:
    """Re-identification and re-detection rates for one setting."""

    def attack(probe: str, reference: np.ndarray) -> float:
        # The attacker keeps the better of the plain and the smoothed face.
        d = _dist(raw["plain"][probe], reference)
        if raw["smoothed"][probe] is not None:
            d = min(d, _dist(raw["smoothed"][probe], reference))
        return d

    clean = {n: s.descriptor for n, s in proto.subjects.items()}
    yes = np.array([attack(p, clean[g]) for p, g in proto.same])
    no = np.array([attack(p, clean[g]) for p, g in proto.different])
    # The threshold an attacker would set for anonymized probes: 1 % false
    # accepts on anonymized-vs-clean different-person pairs.
    t_cond, _ = far_threshold(no)
    # Parrot recognition: anonymized against equally anonymized, with a
    # threshold calibrated on equally anonymized different-person pairs.
    t_parrot, _ = far_threshold([_dist(raw["plain"][p], raw["plain"][g]) for p, g in proto.different])
    parrot = np.array([_dist(raw["plain"][p], raw["plain"][g]) for p, g in proto.same])
    # Closed-set identification (McPherson et al.'s measure): is the nearest
    # clean photo in the probe's set of the same person?
    probes = sorted({p for p, _ in proto.same})
    top1 = np.mean([
        proto.identity[min(proto.gallery(p), key=lambda g: attack(p, clean[g]))] == proto.identity[p] for p in probes
    ])
    portraits, groups = raw["counts"]["portraits"], raw["counts"]["groups"]
    faces, hits, eager = (portraits[i] + groups[i] for i in range(3))
    n = len(proto.same)
    k = int(max(np.sum(yes < DLIB_MATCH_THRESHOLD), np.sum(yes < t_cond)))
    return {
        "method": raw["setting"].method, "strength": raw["setting"].strength, "noise": raw["setting"].noise,
        "n_pairs": n,
        "reid_06": float(np.mean(yes < DLIB_MATCH_THRESHOLD)),
        "reid_far": float(np.mean(yes < proto.t_far)),
        "far_anon": float(np.mean(no < proto.t_far)),
        "reid_tar1": float(np.mean(yes < t_cond)), "t_cond": t_cond,
        "reid_ub95": wilson_upper(k, n),
        "reid_parrot": float(np.mean(parrot < t_parrot)), "t_parrot": t_parrot,
        "top1": float(top1), "n_probes": len(probes),
        "n_faces": faces, "redetect": hits / faces, "redetect_eager": eager / faces,
        "redetect_portraits": portraits[1] / max(1, portraits[0]), "redetect_groups": groups[1] / max(1, groups[0]),
        "ssim": raw["ssim"], "cpu_s": raw["cpu_s"],
    }


def passes(row: dict, factor: float = 1.0) -> bool:
    """Meets both bars (``factor`` 0.5: with a 2x margin).

    Re-identification counts at dlib's standard threshold and at the
    attacker's own 1 %-FAR threshold for anonymized probes (``tar@1%``). The
    clean-calibrated ``@far1`` column is not used: anonymized faces sit at
    a similar distance from everyone, so at that threshold they "match"
    different people as often as the right one (its ``far`` column), which
    is chance, not re-identification.
    """
    return (
        row["reid_06"] <= REID_BAR * factor
        and row["reid_tar1"] <= REID_BAR * factor
        and row["redetect"] <= REDETECT_BAR * factor
    )


def recommend(rows: List[dict]) -> Tuple[dict, str]:
    """The least destructive setting (highest SSIM of the aligned face to the
    clean one) that meets both bars with a 2x margin, whose next-weaker
    strength in the sweep also meets the bars (so it is not on the edge), and
    that also resists parrot recognition at the re-id bar. Solid fill if
    none does."""
    candidates = []
    for row in rows:
        if row["method"] == "fill" or not passes(row, 0.5) or row["reid_parrot"] > REID_BAR:
            continue
        weaker = [
            r for r in rows
            if r["method"] == row["method"] and r["noise"] == row["noise"] and r["strength"] < row["strength"]
        ]
        if weaker and not passes(max(weaker, key=lambda r: r["strength"])):
            continue
        candidates.append(row)
    if candidates:
        best = max(candidates, key=lambda r: (round(r["ssim"], 3), -r["noise"]))
        return best, (
            "the least destructive setting (highest SSIM) meeting both bars with a 2x margin, resisting parrot "
            "recognition, with the next-weaker strength also meeting the bars"
        )
    fills = sorted((r for r in rows if r["method"] == "fill"), key=lambda r: (not passes(r), r["noise"]))
    if not fills:
        return {}, "no setting meets the bars with margin, and no fill was measured"
    why = "no blur or mosaic setting meets the bars with margin: solid fill"
    if not passes(fills[0]):
        why += " (which does not meet the bars either: see its row)"
    return fills[0], why


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


COLUMNS = (
    # (title, width, row key or None)
    ("method", -13, "method"), ("str", 4, "strength"), ("noise", 5, "noise"),
    ("reid@0.6", 8, "reid_06"), ("@far1", 6, "reid_far"), ("far", 5, "far_anon"), ("tar@1%", 6, "reid_tar1"),
    ("ub95", 5, "reid_ub95"), ("parrot", 6, "reid_parrot"), ("top1", 6, "top1"),
    ("redet", 6, "redetect"), (f"@{EAGER_THRESHOLD:g}", 6, "redetect_eager"),
    ("portr", 6, "redetect_portraits"), ("groups", 6, "redetect_groups"), ("ssim", 5, "ssim"),
    ("pairs", 5, "n_pairs"), ("faces", 5, "n_faces"), ("cpu s", 5, "cpu_s"),
)
RATES = {"reid_06", "reid_far", "far_anon", "reid_tar1", "reid_ub95", "reid_parrot", "top1", "redetect",
         "redetect_eager", "redetect_portraits", "redetect_groups"}


def _cell(key: str, value) -> str:
    if value is None or value == "":
        return ""
    if key in RATES:
        return _pct(value)
    if key == "strength":
        return f"{value:g}"
    if key in ("ssim",):
        return f"{value:.3f}"
    if key == "cpu_s":
        return f"{value:.1f}"
    return str(value)


def format_table(rows: List[dict], clean: dict) -> str:
    """The results as a plain-text table, the clean baseline last."""
    lines = [" ".join(f"{t:<{-w}}" if w < 0 else f"{t:>{w}}" for t, w, _ in COLUMNS) + "  bars"]
    lines.append("-" * len(lines[0]))
    for r in rows + [clean]:
        cells = []
        for _, w, key in COLUMNS:
            value = r.get(key)
            if key == "strength" and r.get("method") == "fill":
                value = None
            text = _cell(key, value) if key in r else ""
            cells.append(f"{text:<{-w}}" if w < 0 else f"{text:>{w}}")
        verdict = ""
        if r is not clean:
            verdict = ("PASS" if passes(r) else "fail") + (" 2x" if passes(r, 0.5) else "")
        lines.append(" ".join(cells) + "  " + verdict)
    return "\n".join(lines)


LEGEND = f"""\
reid@0.6  anonymized face vs the clean other photo of the same person, matched at dlib's distance < 0.6
@far1     the same at the threshold giving 1% false accepts on clean different-person pairs; far = the rate
          the same threshold matches anonymized faces to *different* people (reid@far1 ~ far means chance)
tar@1%    the same at the attacker's own threshold for anonymized faces: 1% false accepts on
          anonymized-vs-clean different-person pairs (true-accept rate at 1% FAR)
ub95      one-sided 95% upper bound of the worse of reid@0.6 and tar@1% (few pairs: read the bound)
parrot    anonymized vs equally anonymized (Newton et al. 2005), own threshold at 1% FAR (stricter than the bar)
top1      nearest clean photo in the probe's set is the same person (closed-set identification)
          the attacker takes the better of the plain and the smoothed face in every column but parrot
redet     CenterFace re-finds the anonymized face (IoU >= {HIT_IOU}) at veil's threshold, over all faces;
          @{EAGER_THRESHOLD:g} at a more eager one; portr / groups: veil's threshold, portrait crops / group photos
ssim      aligned face vs the clean one (1 = untouched): how much of the face is left
bars      re-id (reid@0.6 and tar@1%) <= {REID_BAR:.0%} and re-detection <= {REDETECT_BAR:.0%}; "2x": with half of each"""


def save_examples(folder: Path, raw: dict, subjects: List[Subject]) -> None:
    """Writes the clean crops and this setting's anonymized ones side by side."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    for s, anon in zip(subjects, raw["examples"]):
        pair = np.concatenate([s.crop, anon], axis=1)
        tiles.append(np.asarray(Image.fromarray(pair).resize((320, round(320 * pair.shape[0] / pair.shape[1])))))
    height = max(t.shape[0] for t in tiles)
    sheet = np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles], axis=1)
    Image.fromarray(sheet).save(folder / f"{raw['setting'].slug}.png")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"strengths {QUICK_STRENGTHS} only")
    parser.add_argument("--strengths", type=float, nargs="+", help=f"default {STRENGTHS}")
    parser.add_argument("--noise", type=int, nargs="+", help=f"noise levels, default {NOISES}")
    parser.add_argument("--methods", nargs="+", choices=METHODS + ("fill",), help="default: all")
    parser.add_argument("--mask-scale", type=float, help="veil's mask_scale (default: veil's default)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    parser.add_argument("--save-examples", type=Path, metavar="DIR", help="write example sheets (clean | anonymized)")
    parser.add_argument("--examples", type=int, default=4, help="photos per example sheet (default 4)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    if not (DATA / "deepface" / "master.csv").is_file() or not (DATA / "portraits").is_dir():
        skip(f"{DATA} is absent (the shared photos are not part of a fresh clone)")
    rec = Recognizer.load()
    try:
        import veil

        veil.anonymize_with_report  # noqa: B018
    except (ImportError, AttributeError) as exc:
        skip(f"veil with veil.anonymize is not importable here ({exc})")

    started = time.time()
    same, different, identity = load_pairs()
    subjects: Dict[str, Subject] = {}
    for name in sorted(identity):
        subject, problem = prepare_subject(rec, DATA / name, name)
        if subject is None:
            print(f"  left out {name}: {problem}")
        else:
            subjects[name] = subject
    same = [p for p in same if p[0] in subjects and p[1] in subjects]
    different = [p for p in different if p[0] in subjects and p[1] in subjects]
    groups = load_groups()

    # Clean baselines: the calibrated threshold and the clean match rates.
    def clean_dist(a: str, b: str) -> float:
        return _dist(subjects[a].descriptor, subjects[b].descriptor)

    no_dist = np.array([clean_dist(a, b) for a, b in different])
    t_far, far_achieved = far_threshold(no_dist)
    yes_dist = np.array([clean_dist(a, b) for a, b in same])
    proto = Protocol(
        subjects=subjects, identity=identity, same=same + [(b, a) for a, b in same],
        different=different + [(b, a) for a, b in different], t_far=t_far,
    )
    probes = sorted({p for p, _ in proto.same})
    top1_clean = np.mean([
        identity[min(proto.gallery(p), key=lambda g: clean_dist(p, g))] == identity[p] for p in probes
    ])
    chance = np.mean([
        np.mean([identity[g] == identity[p] for g in proto.gallery(p)]) for p in probes
    ])
    n_faces = sum(len(s.faces) for s in subjects.values()) + sum(len(g.faces) for g in groups)
    clean = {
        "method": "clean (none)", "noise": "", "redetect_portraits": 1.0, "redetect_groups": 1.0, "reid_06": float(np.mean(yes_dist < DLIB_MATCH_THRESHOLD)),
        "reid_far": float(np.mean(yes_dist < t_far)), "far_anon": far_achieved,
        "reid_tar1": float(np.mean(yes_dist < t_far)), "top1": float(top1_clean), "redetect": 1.0,
        "ssim": 1.0, "n_pairs": len(proto.same), "n_faces": n_faces,
    }

    strengths = tuple(args.strengths or (QUICK_STRENGTHS if args.quick else STRENGTHS))
    noises = tuple(args.noise if args.noise is not None else NOISES)
    methods = tuple(args.methods or METHODS + ("fill",))
    mask = args.mask_scale
    settings = [Setting(m, s, n, mask) for m in methods if m != "fill" for n in noises for s in strengths]
    if "fill" in methods:  # strength means nothing to a fill; the noise still applies
        settings.extend(Setting("fill", 1.0, n, mask) for n in noises)

    import dlib
    from veil.anonymize import DEFAULT_MASK_SCALE
    from veil.detect import DEFAULT_THRESHOLD

    print(
        f"veil {veil.__version__} anonymization (mask_scale {mask or DEFAULT_MASK_SCALE:g}, detector threshold "
        f"{DEFAULT_THRESHOLD:g}) vs dlib {dlib.__version__} (ResNet descriptor, 5-point alignment)\n"
        f"{len(subjects)} photos; {len(same)} same-person pairs x 2 directions = {len(proto.same)}; "
        f"{len(different)} different-person pairs x 2 = {len(proto.different)}; {len(probes)} identification "
        f"probes (chance top1 {_pct(chance)}); re-detection over {n_faces} faces ({len(groups)} group photos included)\n"
        f"thresholds: dlib standard {DLIB_MATCH_THRESHOLD} (clean FAR {_pct(float(np.mean(no_dist < 0.6)))}); "
        f"1%-FAR {t_far:.3f} (clean FAR {_pct(far_achieved)} on {len(no_dist)} pairs); clean same-person "
        f"distance median {np.median(yes_dist):.3f}, different-person {np.median(no_dist):.3f}\n"
        f"{len(settings)} settings on {args.workers} worker(s); setup took {time.time() - started:.0f} s"
    )
    sys.stdout.flush()
    subject_list = list(subjects.values())
    examples = args.examples if args.save_examples else 0
    ctx = multiprocessing.get_context("spawn")  # onnxruntime's threads do not survive fork
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(subject_list, groups)) as pool:
        raws = list(pool.map(run_setting, settings, [examples] * len(settings)))
    rows = [score(raw, proto) for raw in raws]
    if args.save_examples:
        for raw in raws:
            save_examples(args.save_examples, raw, subject_list[:examples])

    print()
    print(format_table(rows, clean))
    print()
    print(LEGEND)
    best, why = recommend(rows)
    if best:
        strength = "(unused by fill)" if best["method"] == "fill" else f"{best['strength']:g}"
        print(
            f"\nrecommended default: DEFAULT_METHOD = {best['method']!r}, DEFAULT_STRENGTH = {strength}, "
            f"DEFAULT_NOISE = {best['noise']}\n  ({why})"
        )
    print(f"total {time.time() - started:.0f} s wall")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "clean": clean, "t_far": t_far, "far_achieved": far_achieved, "chance_top1": chance,
            "rows": rows, "recommended": best, "why": why,
        }, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
