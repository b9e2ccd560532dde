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
import platform
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
    ("grow", "trainer", "clip_norm"): None,
    ("grow", "trainer", "l2"): 0.0,
    ("grow", "hard_max_params"): False,
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
    for key in (VERSION_KEY, DEVICE_KEY, "kind", "schema"):  # recorded, not compared
        filled.pop(key, None)
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


# ====================================================================== the run lifecycle
SCHEMA_VERSION = 2  # config.json layout: 2 adds "kind" and "schema" (runs without them still resume)
KIND_KEY = "kind"
SCHEMA_KEY = "schema"
RESULT = "result.json"


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's guess, else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment() -> dict[str, Any]:
    """Where the figures were measured (recorded next to them in every result, not in config.json).

    The CPU model and the vector instruction set torch dispatches to are part of it: they set
    the float rounding, and a search that accepts or rejects steps on loss differences near eps
    can take another path on another CPU from the same seed. So is the torch thread count
    (results depend on it, and so does speed on a shared machine).
    """
    from . import __version__

    return {
        "netbonsai": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


class Reporter:
    """Progress hooks of a run, all no-ops: subclass and override the ones you need (as
    NEAT-Python's ``BaseReporter``). The command line plugs a live display in (a progress bar on
    a terminal, a line every few seconds when piped); library use stays silent unless a reporter
    is given.
    """

    def run_started(self, path: Path, config: dict[str, Any]) -> None:
        """A run directory was opened (fresh or resumed) with this configuration."""

    def stage_started(self, name: str, total: int | None = None) -> None:
        """A stage began (``total`` steps when known): a dense sweep, a method, a polish."""

    def stage_advanced(self, name: str, done: int = 1, text: str | None = None) -> None:
        """``done`` more steps of a stage finished (``text``: what finished)."""

    def event(self, event: dict[str, Any]) -> None:
        """A history event was recorded (a removal, an addition, a pruning round, ...)."""

    def message(self, text: str) -> None:
        """A line worth telling the user (a resume, a phase change)."""

    def run_ended(self, summary: dict[str, Any]) -> None:
        """The run finished; ``summary`` holds its headline figures."""

    # older hook names of the image runs, kept so that reporters written for them still work
    def dense_started(self, total: int) -> None:
        self.stage_started("dense MLP sweep", total)

    def dense_done(self, summary: dict[str, Any]) -> None:
        self.stage_advanced("dense MLP sweep", 1, f"dense {summary.get('hidden')}")


class RunContext:
    """One run's lifecycle: the run directory (config.json with ``kind`` and ``schema``,
    history.jsonl, atomic checkpoints, ``--resume``), the executor and device its work uses, the
    reporter, the environment record, result.json and report.md. Every command opens one;
    methods receive one and never touch files themselves.

    ``config`` is validated by the caller *before* the context is opened: opening creates the
    folder. A resume refuses a changed configuration and names the differing dotted keys
    (``unused``: recorded keys this command does not read, not compared).
    """

    def __init__(
        self, path: str | os.PathLike, config: dict[str, Any], *, kind: str, resume: bool = False,
        executor: str = "inline", workers: int | None = None, device: str = "cpu",
        reporter: Reporter | None = None, unused: Collection[str] = (), listeners: tuple = (),
        scope: str | None = None,
    ) -> None:
        self.run = RunDir(path, resume=resume, listeners=listeners)
        self.kind = kind
        self.device = device
        self.reporter = reporter or Reporter()
        self.scope = scope
        self._executor_kind = executor
        self._workers = workers
        self._executor = None
        self._owns_executor = True
        self.config = {KIND_KEY: kind, SCHEMA_KEY: SCHEMA_VERSION, **config}
        self.run.write_config(self.config, unused=unused)
        started = getattr(self.reporter, "run_started", None)  # a reporter written before the hook existed
        if started is not None:
            started(self.run.path, self.config)

    # -------------------------------------------------------------- where
    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def resume(self) -> bool:
        return self.run.resume

    def file(self, name: str) -> Path:
        return self.run.file(name)

    # -------------------------------------------------------------- work
    @property
    def executor(self):
        """The executor independent trainings go to (created on first use, shut down by :meth:`close`)."""
        if self._executor is None:
            from .executor import make_executor

            workers = self._workers or max(1, os.cpu_count() or 1)
            self._executor = make_executor(self._executor_kind, workers=workers).__enter__()
        return self._executor

    def child(self, name: str, config: dict[str, Any] | None = None, kind: str | None = None) -> "RunContext":
        """A run in the sub-folder ``name`` (one seed, one method) sharing this run's executor,
        device and reporter; it resumes when this run resumes and the sub-folder holds a run."""
        sub = self.path / name
        resume = self.resume and (sub / CONFIG).exists()
        child = RunContext(sub, config if config is not None else {}, kind=kind or self.kind, resume=resume,
                           executor=self._executor_kind, workers=self._workers, device=self.device,
                           reporter=self.reporter, scope=name)
        child._executor, child._owns_executor = self.executor, False
        return child

    def close(self) -> None:
        """Shut the executor down (if this context created it)."""
        if self._executor is not None and self._owns_executor:
            self._executor.__exit__(None, None, None)
        self._executor = None

    def __enter__(self) -> "RunContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------- history and checkpoints
    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Record an event ``{"event": kind, **fields}`` in history.jsonl and tell the reporter."""
        return self.emit_event({"event": kind, **fields})

    def emit_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Record a ready event dict in history.jsonl and tell the reporter."""
        self.run.append_event(event)
        self.reporter.event(event)
        return event

    def rewind_history(self, events: list[dict[str, Any]]) -> None:
        """Make history.jsonl exactly ``events`` (on resume: the events the checkpoint knows)."""
        self.run.write_history(events)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically save the resumable state (plain tensors and JSON-like values)."""
        self.run.save_checkpoint(state)

    def restore(self) -> dict[str, Any] | None:
        """The last checkpoint of a resumed run (None for a fresh run or one without a checkpoint)."""
        return self.run.load_checkpoint() if self.resume else None

    # -------------------------------------------------------------- outputs
    def environment(self) -> dict[str, Any]:
        return environment()

    def write_json(self, name: str, value: Any) -> Path:
        return self.run.write_json(name, value)

    def write_result(self, result: dict[str, Any], name: str = RESULT) -> Path:
        """result.json (or ``name``): the figures, with the environment they were measured in."""
        return self.run.write_json(name, {**result, "environment": environment()})

    def write_report(self, text: str) -> Path:
        """report.md (atomic)."""
        return write_text(self.file(REPORT), text)
