"""veil: find every face in a photo and make it unrecognizable.

Image kernels (``gaussian_blur``, ``box_blur``, ``pixelate``, ``fill``,
``add_noise``) are imported at once; detection and anonymization load
their models on first use.
"""

from __future__ import annotations

from ._veil import __version__
from .kernels import add_noise, box_blur, fill, gaussian_blur, pixelate

__all__ = ["__version__", "gaussian_blur", "box_blur", "pixelate", "fill", "add_noise"]
