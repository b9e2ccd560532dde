"""One interface for independent work: in-process by default, a local process pool, or Ray.

All three return ``concurrent.futures`` objects, so callers submit work and collect results the
same way whatever runs it. Ray (``pip install 'netbonsai[ray]'``) is for work that outgrows one
machine: it joins the cluster named by ``RAY_ADDRESS`` when set, else starts a local one. Workers of the process pool use one torch thread each (small networks do
not speed up with intra-op threads, and oversubscribed cores slow them down badly).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable

from .errors import InputError

EXECUTORS = ("inline", "process", "ray")


class InlineExecutor(Executor):
    """Runs each submitted call immediately in the calling process."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, like a pool
            future.set_exception(exc)
        return future


# A Ray task whose worker process or node dies is run again, up to this many times (Ray's own
# default, stated so that it cannot change under us). Exceptions raised by the job itself are not
# retried: the jobs are deterministic, so a retry would only fail again, later.
RAY_TASK_RETRIES = 3


class RayExecutor(Executor):
    """Runs each call as a Ray task (one CPU, one torch thread); results come back as futures.

    A job whose worker is killed (or whose node is lost) is retried on the cluster, up to
    ``RAY_TASK_RETRIES`` times, so its future still gets the job's result.
    """

    def __init__(self, workers: int, threads_per_worker: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("the ray executor needs the optional extra: pip install 'netbonsai[ray]'") from None
        self._ray = ray
        self._threads = threads_per_worker
        self._started_here = False
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            options = {"address": address} if address else {"num_cpus": workers}
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **options)
            self._started_here = True
        self._remote = ray.remote(num_cpus=1, max_retries=RAY_TASK_RETRIES, retry_exceptions=False)(_ray_call)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._remote.remote(self._threads, fn, args, kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
            self._started_here = False


def _ray_call(threads: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Body of a Ray task: the same one-thread torch setting as a process-pool worker."""
    import torch

    from .runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    return fn(*args, **kwargs)


def _init_worker(threads: int, parent_pid: int) -> None:
    """Set the worker's torch threads and allocator and make it exit when the parent process dies."""
    import torch

    from .runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """A killed parent (SIGKILL, SIGTERM) must not leave workers computing for nobody.

    A daemon thread notices that the worker was re-parented and exits. (Linux's
    PR_SET_PDEATHSIG would be immediate, but it fires when the *thread* that spawned the worker
    ends, and the pool spawns workers lazily from whichever thread submits.)
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="netbonsai-parent-watch", daemon=True).start()


def make_executor(kind: str = "inline", workers: int = 1, threads_per_worker: int = 1) -> Executor:
    """An executor of the given kind: ``inline``, ``process`` (a spawn-based local pool) or ``ray``."""
    if kind not in EXECUTORS:
        raise InputError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if kind == "inline":
        return InlineExecutor()
    if kind == "ray":
        return RayExecutor(workers, threads_per_worker)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads_per_worker, os.getpid()),
    )
