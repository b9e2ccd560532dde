"""The executor interface: inline and process pools give the same results; workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from netbonsai.errors import InputError
from netbonsai.executor import make_executor

SRC = Path(__file__).resolve().parents[1] / "src"


def _square(x: int) -> int:
    return x * x


def test_inline_and_process_agree() -> None:
    with make_executor("inline") as inline, make_executor("process", workers=2) as pool:
        inline_results = [inline.submit(_square, i).result() for i in range(4)]
        pool_results = [pool.submit(_square, i).result() for i in range(4)]
    assert inline_results == pool_results == [0, 1, 4, 9]  # the values, not only agreement


def test_bad_executor_settings() -> None:
    with pytest.raises(InputError, match="unknown executor"):
        make_executor("threads")
    with pytest.raises(InputError, match="workers"):
        make_executor("process", workers=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and SIGKILL semantics of Linux")
def test_workers_exit_when_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time, multiprocessing
        sys.path.insert(0, {str(SRC)!r})
        from netbonsai.executor import make_executor

        def work(x):
            time.sleep(120)

        if __name__ == "__main__":
            pool = make_executor("process", workers=2)
            futures = [pool.submit(work, i) for i in range(2)]
            while len(multiprocessing.active_children()) < 2:
                time.sleep(0.05)
            time.sleep(1.0)  # let the workers run their initializer
            print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
            time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) >= 2
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "pool workers outlived their killed parent"
    finally:
        parent.kill()


def test_ray_executor_runs_tasks_or_says_how_to_install() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match=r"netbonsai\[ray\]"):
            make_executor("ray", workers=1)
        return
    # A local Ray of its own, in a child process: on 127.0.0.1 only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
    # makes Ray take 127.0.0.1 as the machine's address, see tests/ray_cluster.py), with its files
    # under a temporary HOME, and gone when the child exits.
    program = ("from netbonsai.executor import make_executor\n"
               "with make_executor('ray', workers=2) as pool:\n"
               "    print([f.result() for f in [pool.submit(pow, i, 2) for i in range(4)]])\n")
    with tempfile.TemporaryDirectory(prefix="nbray-", dir="/tmp") as home:
        env = {**os.environ, "HOME": home, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[0, 1, 4, 9]"
