"""The model files that ship inside the package, read with their sha256 checked.

A damaged or swapped model must never run silently: a detector that finds
fewer faces fails open.
"""

from __future__ import annotations

import hashlib
from importlib import resources


def read_verified(relative: str, sha256: str, what: str) -> bytes:
    """Bytes of ``veil/models/<relative>``; RuntimeError unless their sha256 is ``sha256``."""
    data = resources.files(__package__).joinpath("models", *relative.split("/")).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise RuntimeError(
            f"veil's {what} models/{relative} is damaged or was replaced: "
            f"its sha256 is {digest}, expected {sha256}. Reinstall veil."
        )
    return data
