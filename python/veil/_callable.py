"""Modules that can be called as their main function.

``veil.anonymize`` and ``veil.cloak`` are meant to be functions (the package
serves them lazily), but importing the submodule of the same name by any
route (``from veil.anonymize import Method``, ``import veil.cloak``) makes
Python bind the *module* to that attribute of the package. Making the module
callable keeps ``veil.anonymize(image)`` and ``veil.cloak(image)`` working
whichever object the name holds.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def make_callable(module_name: str, function_name: str) -> None:
    """Lets ``module(...)`` call ``module.function_name(...)``."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(self, function_name)(*args, **kwargs)

    sys.modules[module_name].__class__ = CallableModule
