"""Atomic file writes: a temp file in the target's folder, fsync, then rename.

A kill at any moment leaves either the old file or the new one, never a partial file. A kill
(SIGKILL, power loss) between creating the temp file and the rename leaves the temp file
behind: :func:`remove_stale_temps` deletes such leftovers when a run directory is reopened.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import InputError


TEMP_SUFFIX = ".tmp"
# ".NAME.XXXXXXXX.tmp": the names mkstemp gives atomic_open's temp files (8 random characters)
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a binary handle whose contents replace ``path`` only if the block succeeds.

    The parent folder must exist. Failing to create the temp file (an unwritable or missing
    folder) raises :class:`InputError`; any error inside the block removes the temp file.
    """
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)  # mkstemp creates 0600; outputs are ordinary readable files
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``."""
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    return write_bytes(path, text.encode("utf-8"))


def check_output_file(path: str | os.PathLike, label: str = "output path") -> Path:
    """An output file path that is not a directory and whose folder exists: checked before any
    work is done, so a bad path fails at once instead of after the work. ``label`` names the path
    in the message (e.g. the option that gave it)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{label} {path} is a directory; give a file path")
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist ({label} {path})")
    return path


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = False, target: str | None = None) -> list[Path]:
    """Delete the temp files that killed :func:`atomic_open` writes left in ``folder`` (and, with
    ``recursive``, its subfolders): only names of atomic_open's pattern, and with ``target`` only
    the temp files of that file name. Returns the deleted paths.

    Call it only where no other process is writing into the folder at the same time.
    """
    root = Path(folder)
    pattern = f".{target}.*{TEMP_SUFFIX}" if target is not None else f"*{TEMP_SUFFIX}"
    candidates = root.rglob(pattern) if recursive else root.glob(pattern)
    removed = []
    for path in candidates:
        if _TEMP_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows fsync on a directory (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
