"""Type stubs for veil's compiled core (rust/veil-py). Use the public API in
veil.kernels, veil.detect, veil.anonymize and veil.cloak; these functions
only convert arguments, release the GIL and call veil-core."""

from typing import Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# Image kernels. `image` is a C-contiguous uint8 array of shape (H, W),
# (H, W, 1), (H, W, 3) or (H, W, 4); a new array of the same shape is returned.
def gaussian_blur(image: U8, sigma_px: float, threads: Optional[int] = None) -> U8: ...
def box_blur(image: U8, radius_px: int, threads: Optional[int] = None) -> U8: ...
def pixelate(image: U8, block_px: int, origin_x: int = 0, origin_y: int = 0, threads: Optional[int] = None) -> U8: ...
def apply_to_regions(
    image: U8,
    method: str,
    regions: Sequence[Tuple[float, float, float, float]],
    *,
    shape: str = "ellipse",
    feather_px: float = 0.0,
    sigma_px: Optional[float] = None,
    radius_px: Optional[int] = None,
    block_px: Optional[int] = None,
    color: Optional[Tuple[int, int, int]] = None,
    amount: Optional[int] = None,
    seed: int = 0,
    threads: Optional[int] = None,
) -> U8: ...

# CenterFace decoding. Inputs are the network's four (1, C, H/4, W/4) float32
# outputs; faces come back as an (N, 15) float32 array: left, top, right,
# bottom, score, then 5 landmarks as x, y pairs.
def decode_centerface(
    heatmap: F32, scale: F32, offset: F32, landmarks: F32, threshold: float, scale_x: float, scale_y: float
) -> F32: ...
def non_max_suppression(faces: F32, iou_threshold: float) -> F32: ...
def resize_bilinear(image: U8, width: int, height: int) -> U8: ...

# The face search (veil.detect drives it with onnxruntime): next_input() is a
# (1, 3, H, W) float32 network input or None when the search is over;
# push_output takes CenterFace's four outputs for it; progress() is
# (done, total, label); finish() returns the (N, 15) faces, best first.
DETECT_DEFAULT_THRESHOLD: float
DETECT_DEFAULT_MAX_SIDE_PX: int
DETECT_INPUT_MULTIPLE_PX: int
DETECT_NMS_IOU_THRESHOLD: float

class FaceSearch:
    def __init__(
        self,
        image: U8,
        threshold: float,
        max_side_px: int,
        tiles: bool,
        rotations: bool = True,
        border: Optional[float] = None,
        border_fill: Optional[str] = None,  # 'mirror' (default), 'edge' or 'zero'
    ) -> None: ...
    def next_input(self) -> Optional[F32]: ...
    def push_output(self, heatmap: F32, scale: F32, offset: F32, landmarks: F32) -> None: ...
    def progress(self) -> Tuple[int, int, str]: ...
    def finish(self) -> F32: ...

# Cloaking numerics. Images are float32 (H, W) or (H, W, C), C-contiguous.
def similarity_transform(src: F64, dst: F64) -> F64: ...
def warp_affine(image: F32, matrix: F64, out_width: int, out_height: int) -> F32: ...
def warp_affine_adjoint(grad: F32, matrix: F64, src_width: int, src_height: int) -> F32: ...
def gaussian_f32(image: F32, sigma_px: float, adjoint: bool = False) -> F32: ...
def ssim(original: F32, image: F32) -> float: ...
def ssim_gradient(original: F32, image: F32) -> Tuple[float, F32]: ...
def adam_step(
    param: F32, grad: F32, m: F32, v: F32, step: int, learning_rate: float,
    beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
) -> None: ...
def signed_step(param: F32, grad: F32, step_size: float) -> None: ...
def project_perturbation(delta: F32, original: F32, linf: float) -> None: ...
def masking_map(image: F32, sigma_px: float, reference: float, floor: float) -> F32: ...
def project_perturbation_map(delta: F32, original: F32, bound: F32) -> None: ...
