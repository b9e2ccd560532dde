"""The method registry: one name per method, used by ``compare --methods`` and ``netbonsai methods``.

Strings stop at the command-line edge: :func:`get_method` accepts a registered name or a
:class:`~netbonsai.methods.base.Method` object (as ``torch.nn.utils.prune`` takes importance
objects), and a new method is one file plus one :func:`register` call.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import Method

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add a Method class under its ``name`` (usable as a class decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name to register under")
    METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """The registered names, in registration order."""
    _load_builtin()
    return list(METHODS)


def get_method(method: str | Method, settings: Any = None) -> Method:
    """A method object from a registered name (with optional settings) or the object itself."""
    if isinstance(method, Method):
        return method
    _load_builtin()
    name = str(method).strip()
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name](settings)


def parse_methods(text: str) -> list[str]:
    """``"grow,magnitude"`` -> the names, validated, in order, without repeats."""
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    if not names:
        raise InputError("--methods needs at least one method name, e.g. --methods grow,magnitude")
    seen: list[str] = []
    for name in names:
        get_method(name)
        if name in seen:
            raise InputError(f"method {name!r} is named twice in --methods")
        seen.append(name)
    return seen


def _load_builtin() -> None:
    """Import the built-in methods (each registers itself)."""
    from . import dense, gates, genetic, grow, pruning, residual, surgeon  # noqa: F401
