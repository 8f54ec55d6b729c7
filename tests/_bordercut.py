"""Photos cut through a face, for the tests and benches/bench_border_cut.py."""

from __future__ import annotations

import numpy as np


def cut(image: np.ndarray, box, edge: str, share: float):
    """The crop of ``image`` keeping ``share`` of ``box`` (l, t, r, b) inside,
    cut at ``edge`` ("left", "right", "top" or "bottom"); returns the crop and
    the visible part of the box in it."""
    l, t, r, b = box
    if edge == "left":
        x0 = int(round(r - share * (r - l)))
        return image[:, x0:], (0, t, r - x0, b)
    if edge == "right":
        x1 = int(round(l + share * (r - l)))
        return image[:, :x1], (l, t, x1, b)
    if edge == "top":
        y0 = int(round(b - share * (b - t)))
        return image[y0:], (l, 0, r, b - y0)
    y1 = int(round(t + share * (b - t)))
    return image[:y1], (l, t, r, y1)
