"""veil: find every face in a photo and make it unrecognizable.

Image kernels (``gaussian_blur``, ``box_blur``, ``pixelate``, ``fill``,
``add_noise``) are imported at once; detection (``detect_faces``),
anonymization (``anonymize``, ``anonymize_video``) and cloaking (``cloak``) load their models on
first use.
"""

from __future__ import annotations

from ._veil import __version__
from .kernels import add_noise, box_blur, fill, gaussian_blur, pixelate

__all__ = [
    "__version__",
    "gaussian_blur",
    "box_blur",
    "pixelate",
    "fill",
    "add_noise",
    "detect_faces",
    "Face",
    "anonymize",
    "anonymize_with_report",
    "AnonymizeReport",
    "KeepError",
    "Method",
    "cloak",
    "cloak_with_report",
    "anonymize_video",
    "VideoReport",
]

# Names served from submodules on first use, so `import veil` stays quick
# and does not start onnxruntime.
_LAZY = {
    "detect_faces": "detect",
    "Face": "detect",
    "anonymize": "anonymize",
    "anonymize_with_report": "anonymize",
    "AnonymizeReport": "anonymize",
    "KeepError": "anonymize",
    "Method": "anonymize",
    "cloak": "cloak",
    "cloak_with_report": "cloak",
    "anonymize_video": "video",
    "VideoReport": "video",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'veil' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
