"""Find the user's handler from a 'module:function' reference."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import HandlerImportError


def load(ref: str, field: str = "spec.handler") -> Callable[..., Any]:
    """Import `module:function` and return the function; HandlerImportError says why not."""
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # any error while importing user code is the user's to see
        raise HandlerImportError(f"{field}: cannot import module {module_name!r} of {ref!r}: "
                                 f"{type(e).__name__}: {e}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HandlerImportError(f"{field}: module {module_name!r} has no attribute "
                                     f"{attr_path!r} (from {ref!r})") from None
    if not callable(obj):
        raise HandlerImportError(f"{field}: {ref!r} is not callable")
    return obj  # type: ignore[no-any-return]
