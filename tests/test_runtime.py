"""The allocator setting the CLI and executor workers apply."""

from __future__ import annotations

import sys

import pytest

from netbonsai.runtime import ENV_SWITCH, keep_freed_memory


def test_the_environment_switch_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH, "1")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_applies_on_linux_with_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.delenv(ENV_SWITCH, raising=False)
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert keep_freed_memory() is True
