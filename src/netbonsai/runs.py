"""Run directories: config.json, history.jsonl, atomic checkpoints, and resuming.

Layout of a run directory ``DIR``::

    config.json      the full configuration and seed (written once; checked on --resume)
    history.jsonl    one JSON object per accepted event (rewritten from the checkpoint on resume)
    checkpoint.pt    the latest resumable state (atomic: temp file + rename)
    model            the final network (netbonsai.load)
    front/           the Pareto-front networks, one file per point
    report.md        tables; *.png plots
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from .atomic import write_bytes, write_text
from .errors import InputError

CONFIG = "config.json"
HISTORY = "history.jsonl"
CHECKPOINT = "checkpoint.pt"
MODEL = "model"
REPORT = "report.md"


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN/Infinity) of ``value``."""
    return json.dumps(_json_safe(value), indent=indent, allow_nan=False)


class RunDir:
    """A run directory, created fresh or reopened for ``--resume``.

    Creating a fresh run in a folder that already holds a run (a ``config.json``) is refused, so
    results are never silently overwritten; reopening one needs ``resume=True``.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"output path {self.path} exists and is not a directory")
        has_run = (self.path / CONFIG).exists()
        if resume and not has_run:
            raise InputError(f"cannot resume: {self.path} holds no run (no {CONFIG})")
        if not resume and has_run:
            raise InputError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {self.path}: {exc.strerror or exc}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise InputError(f"output directory {self.path} is not writable")

    def file(self, name: str) -> Path:
        """Path of a file inside the run directory."""
        return self.path / name

    # -------------------------------------------------------------- config
    def write_config(self, config: dict[str, Any]) -> None:
        """Write config.json, or on resume check that it matches the stored one."""
        text = dumps(config, indent=2) + "\n"
        if self.resume:
            stored = self.read_config()
            if _json_safe(stored) != json.loads(text):
                changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != json.loads(text).get(k))
                raise InputError(
                    f"cannot resume {self.path}: the configuration differs from the stored run ({', '.join(changed)})"
                )
            return
        write_text(self.file(CONFIG), text)

    def read_config(self) -> dict[str, Any]:
        try:
            return json.loads(self.file(CONFIG).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read {self.file(CONFIG)}: {exc}") from None

    # -------------------------------------------------------------- history
    def append_event(self, event: dict[str, Any]) -> None:
        """Append one event line to history.jsonl (flushed; a torn last line is repaired on resume)."""
        with open(self.file(HISTORY), "a", encoding="utf-8") as handle:
            handle.write(dumps(event) + "\n")
            handle.flush()

    def write_history(self, events: list[dict[str, Any]]) -> None:
        """Atomically replace history.jsonl with exactly ``events``."""
        write_text(self.file(HISTORY), "".join(dumps(e) + "\n" for e in events))

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically write the resumable state (plain tensors and JSON-like values)."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes(self.file(CHECKPOINT), buffer.getvalue())

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint, or None if the run has none yet."""
        path = self.file(CHECKPOINT)
        if not path.exists():
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is a user-facing input error
            raise InputError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None

    def write_json(self, name: str, value: Any) -> Path:
        """Atomically write a JSON file into the run directory."""
        return write_text(self.file(name), dumps(value, indent=2) + "\n")


def read_history(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Events of a history.jsonl; a torn last line (a run being written or killed) is skipped."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
