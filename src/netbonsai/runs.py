"""Run directories: config.json, history.jsonl, atomic checkpoints, and resuming.

Layout of a run directory ``DIR``::

    config.json      the full configuration and seed (written once; checked on --resume)
    history.jsonl    one JSON object per accepted event (rewritten from the checkpoint on resume)
    checkpoint.pt    the latest resumable state (atomic: temp file + rename; temp files a kill
                     left behind are deleted when the run is reopened)
    model            the final network (netbonsai.load)
    front/           the Pareto-front networks, one file per point
    report.md        tables; *.png plots

Event listeners: every event appended to history.jsonl is also handed to the run's listeners
(``listener(event, step)``, step = the event's position in the history), e.g. a TensorBoard
sink (:mod:`netbonsai.logging_tb`). Listeners are given to :class:`RunDir` or, for every run a
block of code opens, with ``with event_listeners(sink): ...`` -- how the command line plugs
``--tensorboard`` into any run type without each one knowing about it.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import torch

from .atomic import remove_stale_temps, write_bytes, write_text
from .errors import InputError

CONFIG = "config.json"
HISTORY = "history.jsonl"
CHECKPOINT = "checkpoint.pt"
MODEL = "model"
REPORT = "report.md"

# Settings added after run directories were first written, each with the value every run written
# before it used: on --resume, a stored config.json without the key counts as holding this value,
# so a run started by an older netbonsai resumes unless the setting is now asked to differ. (The
# version that wrote a run is recorded in its config but not compared: upgrading is allowed.)
ADDED_SETTINGS: dict[tuple[str, ...], Any] = {
    ("grow", "placement"): "half-layer",
    ("grow", "neuron_init"): "random",
    ("grow", "neuron_removal"): False,
    ("grow", "skip"): False,
    # compare runs written before the magnitude-pruning baseline existed never ran it
    ("dense", "magnitude"): {"enabled": False, "method": "magnitude-blinded", "schedule": "relative:0.2", "sparsity": 0.9},
}


VERSION_KEY = "netbonsai_version"  # recorded in config.json, not compared on resume
DEVICE_KEY = "device"  # recorded too, not compared: a run may resume on another device
_MISSING = object()


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` as a resume compares it: JSON values, every :data:`ADDED_SETTINGS` key it
    lacks (under a section it has) filled in, and without the version that wrote it or the device."""
    filled = json.loads(dumps(config))
    filled.pop(VERSION_KEY, None)
    filled.pop(DEVICE_KEY, None)
    for path, value in ADDED_SETTINGS.items():
        section = filled
        for key in path[:-1]:
            section = section.get(key) if isinstance(section, dict) else None
        if isinstance(section, dict) and path[-1] not in section:
            section[path[-1]] = value
    return filled


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the settings that differ between two configs (sections compared key by key;
    a key on one side only is a difference)."""
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return [path for key in sorted(set(stored) | set(wanted), key=str)
                for path in _differences(stored.get(key, _MISSING), wanted.get(key, _MISSING), f"{prefix}{key}.")]
    return [] if stored == wanted else [prefix.rstrip(".")]


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


EventListener = Callable[[dict[str, Any], int], None]
_LISTENERS: ContextVar[tuple[EventListener, ...]] = ContextVar("netbonsai_event_listeners", default=())


@contextmanager
def event_listeners(*listeners: EventListener) -> Iterator[None]:
    """Every :class:`RunDir` opened inside the block also sends its events to ``listeners``."""
    token = _LISTENERS.set(_LISTENERS.get() + tuple(listeners))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


class RunDir:
    """A run directory, created fresh or reopened for ``--resume``.

    Creating a fresh run in a folder that already holds a run (a ``config.json``) is refused, so
    results are never silently overwritten; reopening one needs ``resume=True``.
    """

    def __init__(
        self, path: str | os.PathLike, resume: bool = False, listeners: list[EventListener] | tuple = ()
    ) -> None:
        self.path = Path(path)
        self.resume = resume
        self.listeners: list[EventListener] = [*_LISTENERS.get(), *listeners]
        self._events: int | None = 0 if not resume else None  # events in history.jsonl (None: not counted yet)
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
        # A run killed while writing a file (a checkpoint, a front network) left its temp file
        # behind. A fresh run can only follow one killed before config.json existed (the folder
        # may be any existing one, so only config.json's temp files are touched there).
        if resume:
            remove_stale_temps(self.path, recursive=True)
        else:
            remove_stale_temps(self.path, target=CONFIG)

    def file(self, name: str) -> Path:
        """Path of a file inside the run directory."""
        return self.path / name

    # -------------------------------------------------------------- config
    def write_config(self, config: dict[str, Any], unused: Collection[str] = ()) -> None:
        """Write config.json, or on resume check that it matches the stored one (a setting added
        to netbonsai since the run was written counts as its :data:`ADDED_SETTINGS` value).

        ``unused``: dotted paths (``"grow.n_attempts"``) of recorded settings the command does not
        read; a resume does not compare them.
        """
        text = dumps(config, indent=2) + "\n"
        if self.resume:
            stored, wanted = _comparable(self.read_config()), _comparable(config)
            ignored = set(unused)
            changed = ", ".join(path for path in _differences(stored, wanted) if path not in ignored)
            if changed:
                raise InputError(f"cannot resume {self.path}: the configuration differs from the stored run ({changed})")
            return
        write_text(self.file(CONFIG), text)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.file(CONFIG))

    # -------------------------------------------------------------- history
    def append_event(self, event: dict[str, Any]) -> None:
        """Append one event line to history.jsonl (flushed; a torn last line is repaired on resume),
        then hand it to the listeners."""
        with open(self.file(HISTORY), "a", encoding="utf-8") as handle:
            handle.write(dumps(event) + "\n")
            handle.flush()
        if self._events is None:
            self._events = sum(1 for _ in read_history(self.file(HISTORY))) - 1
        self._notify(event, self._events)
        self._events += 1

    def write_history(self, events: list[dict[str, Any]]) -> None:
        """Atomically replace history.jsonl with exactly ``events``.

        On a fresh run the listeners get these events too; on resume they are the events from
        before the interruption, which the listeners were sent then.
        """
        write_text(self.file(HISTORY), "".join(dumps(e) + "\n" for e in events))
        if not self.resume:
            for step, event in enumerate(events):
                self._notify(event, step)
        self._events = len(events)

    def _notify(self, event: dict[str, Any], step: int) -> None:
        """Send an event to every listener; a failing listener is dropped with a warning, never
        the run (logging must not cost hours of training)."""
        for listener in list(self.listeners):
            try:
                listener(event, step)
            except Exception as exc:  # noqa: BLE001
                self.listeners.remove(listener)
                warnings.warn(f"event listener {listener!r} failed and is switched off: {type(exc).__name__}: {exc}",
                              RuntimeWarning, stacklevel=2)

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


def read_json(path: str | os.PathLike, kind: type | None = dict) -> Any:
    """The JSON in ``path``; InputError for an unreadable or damaged file, or one of the wrong kind."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if kind is not None and not isinstance(value, kind):
        raise InputError(f"cannot read {path}: expected a JSON {'object' if kind is dict else 'list'}, "
                         f"got {type(value).__name__}")
    return value


def read_history(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Events of a history.jsonl; a torn last line (a run being written or killed), or any line
    that is not a JSON object, is skipped."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                yield event
