"""The command line's progress display: a live rich display on a terminal, a plain line every few
seconds when piped, nothing with --quiet (a :class:`netbonsai.runs.Reporter`)."""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any


from .runs import Reporter


# ---------------------------------------------------------------------- progress display
class _CliReporter(Reporter):
    """The command line's progress on stderr (a :class:`netbonsai.runs.Reporter`).

    On a terminal: a live rich display (a bar per stage, the search's latest event). Piped or
    redirected: a plain line ``[  42 s] search: prune  params 57  val loss 12.3`` at most every
    ``interval`` seconds, and at every stage start and end (a background ticker prints the latest
    unprinted state within ``interval``, and a keep-alive line after ``keepalive`` seconds of
    nothing new). Nothing is printed in the first ``grace`` seconds (bad input fails in them with
    its one error line); a run that ends without an error prints its last state.
    ``--quiet``: neither display; messages are hidden too, warnings (:meth:`warn`) are not.
    Use as a context manager (closed at the end of the block).
    """

    def __init__(self, quiet: bool, stream=None, live: bool | None = None, interval: float = 5.0,
                 keepalive: float = 60.0, grace: float = 1.0, clock=time.monotonic, ticker: bool = True) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.live = not quiet and (bool(isatty and isatty()) if live is None else live)
        self.plain = not quiet and not self.live
        self.interval, self.keepalive, self.grace, self.clock = interval, keepalive, grace, clock
        self.started = clock()
        self._lock = threading.RLock()
        self._stages: dict[str, list] = {}  # name -> [done, total, rich task id]
        self._status: str | None = None  # the latest state, as a plain line's text
        self._printed_at = -math.inf  # when a status line was last printed
        self._pending = False  # the latest state is not printed yet
        self._pending_now = False  # ... and it is a stage start or end, held back by the grace period
        self._search_task = None
        self._stop = threading.Event()
        self.progress = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=Console(file=self.stream), transient=False,
            )
            self.progress.start()
        self._thread = None
        if self.plain and ticker:
            self._thread = threading.Thread(target=self._tick_loop, name="netbonsai-progress", daemon=True)
            self._thread.start()

    # -------------------------------------------------------------- output
    def _line(self, text: str) -> None:
        with self._lock:
            elapsed = self.clock() - self.started
            self.stream.write(f"[{elapsed:4.0f} s] {text}\n")
            self.stream.flush()
            self._printed_at, self._pending, self._pending_now = self.clock(), False, False

    def _update(self, text: str, now: bool = False) -> None:
        """A new state: printed when ``now`` (a stage start or end) or ``interval`` has passed."""
        with self._lock:
            self._status, self._pending = text, True
            if self.clock() - self.started < self.grace:
                self._pending_now = self._pending_now or now
                return  # the ticker prints it once the grace period is over
            if now or self.clock() - self._printed_at >= self.interval:
                self._line(text)

    def tick(self) -> None:
        """Print the latest state if it is unprinted and ``interval`` has passed (or, unchanged,
        after ``keepalive``): what the background ticker calls."""
        with self._lock:
            if self._status is None or self.clock() - self.started < self.grace:
                return
            waited = self.clock() - self._printed_at
            if (self._pending and waited >= self.interval) or waited >= self.keepalive:
                self._line(self._status)

    def _tick_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            self.tick()

    def close(self, flush: bool = True) -> None:
        """Stop the display; with ``flush`` a piped run's last unprinted state is printed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if flush and self.plain and self._pending and self._status is not None:
            self._line(self._status)
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # -------------------------------------------------------------- Reporter hooks
    def stage_started(self, name: str, total: int | None = None) -> None:
        with self._lock:
            task = self.progress.add_task(name, total=total) if self.progress is not None else None
            self._stages[name] = [0, total, task]
            if self.plain:
                self._update(_stage_text(name, 0, total), now=True)

    def stage_advanced(self, name: str, done: int = 1, text: str | None = None) -> None:
        with self._lock:
            if name not in self._stages:
                self.stage_started(name)
            stage = self._stages[name]
            stage[0] += done
            if self.progress is not None:
                self.progress.advance(stage[2], done)
            if self.plain:
                finished = stage[1] is not None and stage[0] >= stage[1]
                self._update(_stage_text(name, stage[0], stage[1]), now=finished)

    def event(self, event: dict[str, Any]) -> None:
        text = _event_text(event)
        with self._lock:
            if self.progress is not None:
                if self._search_task is None:
                    self._search_task = self.progress.add_task(text, total=None)
                self.progress.update(self._search_task, description=text,
                                     **({"completed": event["index"] + 1} if isinstance(event.get("index"), int) else {}))
            elif self.plain:
                self._update(text, now=event.get("event") in ("start", "stop"))

    def _end_grace(self) -> None:
        """The run is past its input checks (it has something to say): a held-back stage line first."""
        self.grace = 0.0
        if self.plain and self._pending and self._pending_now:
            self._line(self._status)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self._end_grace()
            if self.progress is not None:
                self.progress.console.print(text, markup=False, highlight=False)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    def warn(self, text: str) -> None:
        """A warning: shown also with ``--quiet``."""
        text = f"netbonsai: warning: {text}"
        with self._lock:
            if self.progress is not None:
                self.progress.console.print(text, markup=False, highlight=False)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    def __enter__(self) -> "_CliReporter":
        return self

    def __exit__(self, exc_type, *exc: Any) -> None:
        self.close(flush=exc_type is None)  # after an error only its own line is printed

    def run_ended(self, summary: dict[str, Any]) -> None:
        if self.plain and self._pending and self._status is not None:
            self._line(self._status)

    @contextmanager
    def warnings_shown(self):
        """Within the block, a ``UserWarning`` (e.g. max_params below the start network) or a
        ``FutureWarning`` (a deprecated --set key) is shown through :meth:`warn` as one line, so it
        neither breaks the live display nor hides behind --quiet; other categories go where they
        went before."""
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message, category, *args, **kwargs):
                if issubclass(category, (UserWarning, FutureWarning)):
                    self.warn(str(message))
                else:
                    shown(message, category, *args, **kwargs)

            warnings.showwarning = show
            yield


def _stage_text(name: str, done: int, total: int | None) -> str:
    if total is None:
        return name if not done else f"{name}: {done} done"
    if total == 1:
        return f"{name}: done" if done >= 1 else name
    return f"{name} {done}/{total}"


def _event_text(event: dict[str, Any]) -> str:
    """A plain line about a history event; the search's events as ``search: prune  params 57 ...``."""
    kind = str(event.get("event", "event"))
    search = kind in ("start", "prune", "grow", "stop")
    parts = [f"search: {kind:<5}" if search else f"{kind}:"]
    if isinstance(event.get("params"), (int, float)):
        parts.append(f"params {event['params']:>4g}")
    if isinstance(event.get("val_loss"), (int, float)):
        parts.append(f"val loss {event['val_loss']:.4g}")
    if isinstance(event.get("cycle"), int):  # the search counts its cycles in added neurons
        parts.append(f"neurons added {event['cycle']}" if search else f"cycle {event['cycle']}")
    if isinstance(event.get("kept"), str):  # the Surgeon's kept edit
        parts.append(f"kept {event['kept']}")
    if isinstance(event.get("generation"), int) and not isinstance(event.get("generation"), bool):
        parts[0] = f"{kind} {event['generation']}:"  # the genetic search's generations
    if isinstance(event.get("best_params"), (int, float)):
        parts.append(f"best params {event['best_params']:>4g}")
    if isinstance(event.get("best_val_loss"), (int, float)):
        parts.append(f"best val loss {event['best_val_loss']:.4g}")
    if kind == "stop" and event.get("reason"):
        parts.append(f"({event['reason']})")
    return "  ".join(parts)


def _reporter(quiet: bool) -> _CliReporter:
    return _CliReporter(quiet)
