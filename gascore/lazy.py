"""Package attributes that load their submodule on first use (PEP 562 module ``__getattr__``):
for names whose modules pull in something large (asyncua, `cryptography`) that a station which
does not use them should not pay for at start-up (docs/performance.md)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def lazy_attribute(package: str, submodule_of: Mapping[str, str], name: str) -> Any:
    """``name`` from submodule ``submodule_of[name]`` of ``package``; AttributeError for a name
    the package does not export lazily.  Call it from the package's ``__getattr__``."""
    submodule = submodule_of.get(name)
    if submodule is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{package}.{submodule}"), name)
