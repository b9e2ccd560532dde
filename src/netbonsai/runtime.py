"""Process-wide runtime settings: the device a run uses (:func:`resolve_device`), and an
allocator setting that makes training many small networks on a CPU fast.

Training here allocates and frees the same large activation tensors thousands of times (a
population of 12 networks on 60,000 samples: 37 MB per level). glibc serves allocations above
its mmap threshold (at most 32 MB) with fresh pages from the kernel and gives them back on
free, so every such tensor pays its page faults again: measured on one core, ``sigmoid`` of a
(12, 13, 60000) tensor took 23 ms this way and 4.7 ms from a heap that keeps its memory.
:func:`keep_freed_memory` raises the thresholds (the process keeps its peak memory instead of
returning it); the CLI and every executor worker call it.

Torch threads: one policy everywhere. The networks here are small (tens to thousands of
parameters; an MNIST MLP at most): their tensors are too small for intra-op threads to pay for
their synchronisation, and on a shared machine a second thread that has to wait for a busy core
makes every operation wait (measured on 2 cores with one competing process: ``prune mnist`` took
374 s with 2 threads against 34 s with 1; ``benchmarks/bench_threads.py`` measures it). The thread
count also changes results (float sums are split differently), and it is recorded with every
result (``runs.environment()["torch_threads"]``). So:

* every command defaults to ``--threads 1`` (and passes its ``--threads`` to :func:`set_threads`);
* executor workers run with 1 thread each (parallelism comes from the workers);
* the Python API: :func:`netbonsai.grow.grow` runs with :func:`thread_policy` threads -- 1, unless
  the program called :func:`set_threads` (or is inside ``with threads(n):``) -- and restores the
  caller's torch thread count when it returns. Other library functions use whatever torch is set
  to; ``with netbonsai.runtime.threads(1): ...`` applies the policy to any block.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from contextlib import contextmanager
from typing import Iterator

import torch

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # cuda:N picks one GPU of several
M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
ENV_SWITCH = "NETBONSAI_SYSTEM_MALLOC"  # set to 1 to leave the allocator alone (benchmarks)
DEFAULT_THREADS = 1  # torch threads unless asked otherwise (see the module docstring)
_chosen_threads: int | None = None  # set_threads' choice (None: the default)


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Serve allocations below ``limit_bytes`` from the heap and keep freed memory for reuse.

    Returns True when the setting was applied (Linux with glibc), False elsewhere or when the
    environment variable ``NETBONSAI_SYSTEM_MALLOC=1`` asks to leave the allocator alone.
    """
    if not sys.platform.startswith("linux") or os.environ.get(ENV_SWITCH) == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # some glibc versions refuse an mmap threshold above 32 MB: then that is the most they allow
    applied = any(mallopt(M_MMAP_THRESHOLD, limit) for limit in (min(int(limit_bytes), 2**31 - 1), 32 << 20))
    return applied and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def resolve_device(name: str) -> str:
    """The torch device a run uses: ``auto`` is ``cuda`` when a GPU is available, else ``cpu``;
    ``cuda`` (or ``cuda:N``) must be available. Raises :class:`InputError` otherwise."""
    name = str(name).strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or re.fullmatch(r"cuda:\d+", name):
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but no CUDA GPU is available (torch {torch.__version__}); "
                             "use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are present")
        return name
    raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")


# ---------------------------------------------------------------------- torch threads
def _check_threads(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"the number of torch threads must be a positive integer, got {n!r}")
    return n


def set_threads(n: int | None) -> None:
    """Choose the torch thread count netbonsai uses from now on, and apply it at once.

    ``None`` returns to the default policy (:data:`DEFAULT_THREADS`; torch's own count is then left
    as it is until a netbonsai function applies the policy).
    """
    global _chosen_threads
    if n is None:
        _chosen_threads = None
        return
    _chosen_threads = _check_threads(n)
    torch.set_num_threads(n)


def thread_policy() -> int:
    """The torch thread count netbonsai's searches run with: the :func:`set_threads` choice, else 1."""
    return _chosen_threads if _chosen_threads is not None else DEFAULT_THREADS


@contextmanager
def threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` torch threads (also the :func:`thread_policy` inside it); the previous
    torch count and policy are restored afterwards, also when the block raises."""
    global _chosen_threads
    n = _check_threads(n)
    previous, chosen = torch.get_num_threads(), _chosen_threads
    _chosen_threads = n
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        _chosen_threads = chosen
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
