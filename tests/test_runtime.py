"""The allocator setting the CLI and executor workers apply."""

from __future__ import annotations

import sys

import pytest

from netbonsai import runtime
from netbonsai.runtime import ENV_SWITCH, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, keep_freed_memory


def test_the_environment_switch_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NETBONSAI_SYSTEM_MALLOC=1 libc's mallopt is never called (a recording stand-in for
    ctypes.CDLL, on a pretend Linux); without it the same stand-in records both settings, so the
    recording does see the calls the switch suppresses."""
    calls: list[tuple[int, int]] = []
    loaded: list[str] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    class FakeLibc:
        def __init__(self, name: str) -> None:
            loaded.append(name)
            self.mallopt = mallopt  # a plain function: takes the argtypes/restype the code sets

    monkeypatch.setattr(runtime.ctypes, "CDLL", FakeLibc)
    monkeypatch.setattr(runtime.sys, "platform", "linux")
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert keep_freed_memory() is False
    assert calls == [] and loaded == []  # libc not even loaded
    for value in ("0", None):  # only "1" switches it off
        if value is None:
            monkeypatch.delenv(ENV_SWITCH)
        else:
            monkeypatch.setenv(ENV_SWITCH, value)
        calls.clear()
        assert keep_freed_memory(64 << 20) is True
        assert calls == [(M_MMAP_THRESHOLD, 64 << 20), (M_TRIM_THRESHOLD, 2**31 - 1)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_applies_on_linux_with_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.delenv(ENV_SWITCH, raising=False)
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert keep_freed_memory() is True
