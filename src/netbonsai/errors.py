"""Exception types: user-facing input errors are distinguished from internal bugs.

The CLI maps :class:`InputError` (and its subclasses) to exit code 2 with one line on stderr;
anything else is an internal error (exit code 1).
"""

from __future__ import annotations


class NetbonsaiError(Exception):
    """Base class of every error netbonsai raises on purpose."""


class InputError(NetbonsaiError, ValueError):
    """Bad user input: a missing or corrupt file, an invalid shape, an out-of-range config value."""


class ModelFileError(InputError):
    """A model file that cannot be read, or whose contents are inconsistent."""
