"""A real two-node Ray cluster on 127.0.0.1 for tests, started and stopped by the test itself.

Both nodes are ``ray start --block`` processes that this module starts (so it holds their
process ids) and stops by process id: SIGTERM to each ``ray start`` (which stops the processes
it started), then SIGKILL to any process still carrying this cluster's marker in its
environment. It never runs ``ray stop``, which would stop every Ray process of the user.

Everything listens on 127.0.0.1 only. Ray binds its servers to 127.0.0.1 exactly when the node's
IP is 127.0.0.1, and it normally turns 127.0.0.1 into the machine's outward address (and so
listens on all interfaces):

* the head node and every driver run with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which makes
  Ray take 127.0.0.1 as this machine's address;
* the same setting makes ``ray start`` refuse to add a second node ("multi-node clusters are not
  supported on Windows and OSX"), so the second node is ``ray start`` run through
  :data:`NODE_LAUNCHER`, which only keeps Ray from rewriting ``--address=127.0.0.1:PORT``; its
  node IP is then what the head sees it as, 127.0.0.1.

Linux only (process trees and environments are read from /proc).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# ``ray start`` for a node that joins a cluster on 127.0.0.1 (see the module docstring).
NODE_LAUNCHER = """
import sys
import ray._private.services as services
services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1 (the head listens there only)
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
sys.exit(main())
"""
MARKER = "NETBONSAI_TEST_RAY_CLUSTER"  # environment variable naming the cluster a process belongs to
STARTED = "Ray runtime started"  # what ``ray start`` prints once its node is up
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # small: the tests move a few small dicts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ray_executable() -> str:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else shutil.which("ray") or "ray"


class LocalRayCluster:
    """A head node and ``extra_nodes`` more nodes, each with ``cpus`` CPUs, on 127.0.0.1."""

    def __init__(self, extra_nodes: int = 1, cpus: int = 1, startup_timeout: float = 90.0) -> None:
        self.token = uuid.uuid4().hex
        self.auth_token = uuid.uuid4().hex
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Ray's unix sockets live under the temp dir, and their paths must stay short (108 bytes)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="nbray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.extra_nodes = extra_nodes
        self.cpus = cpus
        self.startup_timeout = startup_timeout
        self.nodes: list[subprocess.Popen] = []  # the ``ray start --block`` processes, head first
        self.logs: list[Path] = []

    # ------------------------------------------------------------------ environment
    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the cluster's processes and of a driver that joins it."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}
        env.update({
            MARKER: self.token,
            # a token of its own: the cluster ignores ~/.ray/auth_token (which a local ray.init()
            # writes), and no other local user can submit work to it
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.auth_token,
            "RAY_USAGE_STATS_ENABLED": "0",  # no usage report goes out
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # this machine's address is 127.0.0.1
            "MPLBACKEND": "Agg",
        })
        env.update(extra)
        return env

    def driver_env(self) -> dict[str, str]:
        return self.env(RAY_ADDRESS=self.address)

    # ------------------------------------------------------------------ start and stop
    def start(self) -> LocalRayCluster:
        # no log monitor: drivers of the executor do not show the workers' output
        common = ["--block", f"--num-cpus={self.cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                  "--include-log-monitor=false", "--disable-usage-stats", "--log-style=record",
                  "--log-color=false"]
        self._launch([_ray_executable(), "start", "--head", "--node-ip-address=127.0.0.1",
                      f"--port={self.port}", f"--ray-client-server-port={free_port()}",
                      "--include-dashboard=false", "--dashboard-host=127.0.0.1",
                      f"--temp-dir={self.temp_dir}", *common], self.env())
        self._wait(0, lambda: _accepts(self.port))  # the other nodes start as soon as the head's GCS is up
        for _ in range(self.extra_nodes):
            self._launch([sys.executable, "-c", NODE_LAUNCHER, "start", f"--address={self.address}", *common],
                         self.env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1"))
        for index, log in enumerate(self.logs):
            self._wait(index, lambda: STARTED in log.read_text(errors="replace"))
        return self

    def _launch(self, argv: list[str], env: dict[str, str]) -> None:
        log = self.temp_dir / f"node{len(self.nodes)}.log"
        with open(log, "wb") as handle:
            node = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.nodes.append(node)
        self.logs.append(log)

    def _wait(self, index: int, ready) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            node = self.nodes[index]
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {index} did not start (exit code {node.poll()}):\n"
                                   f"{self.log_tail(index)}")
            time.sleep(0.1)

    def log_tail(self, index: int, lines: int = 30) -> str:
        return "\n".join(self.logs[index].read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> list[int]:
        """Stop every process of the cluster by process id; return those that needed SIGKILL."""
        for node in reversed(self.nodes):  # ray start stops the processes it started on SIGTERM
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:  # workers exit once their raylet is gone
            time.sleep(0.2)
        killed = self.processes()
        kill(killed)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return killed

    def __enter__(self) -> LocalRayCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ processes
    def processes(self) -> list[int]:
        """This user's live processes that carry this cluster's marker (nodes, workers, drivers)."""
        marker = f"{MARKER}={self.token}".encode()
        return [pid for pid in _pids() if marker in _read(pid, "environ").split(b"\0") and alive(pid)]

    def listening(self) -> set[tuple[int, str, int]]:
        """(pid, address, port) of every TCP socket that the cluster's processes listen on."""
        sockets = _listening_sockets()
        found = set()
        for pid in self.processes():
            try:
                links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            except OSError:  # gone meanwhile
                continue
            for link in links:
                if link.startswith("socket:[") and int(link[8:-1]) in sockets:
                    found.add((pid, *sockets[int(link[8:-1])]))
        return found

    def raylet(self, node: int) -> int:
        """The process id of node ``node``'s raylet (0: the head)."""
        for pid in children(self.nodes[node].pid):
            if _read(pid, "comm").strip() == b"raylet":
                return pid
        raise RuntimeError(f"node {node} has no raylet:\n{self.log_tail(node)}")

    def workers(self, node: int) -> list[int]:
        """The worker processes of node ``node``: the raylet's children except its agents."""
        return [pid for pid in children(self.raylet(node)) if "Agent" not in title(pid) and alive(pid)]


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of the machine's listening TCP sockets (/proc/net/tcp, tcp6)."""
    found = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found[int(fields[9])] = (socket.inet_ntop(family, raw), int(port, 16))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone, or another user's
        return b""


def _stat(pid: int) -> list[str]:
    return _read(pid, "stat").decode(errors="replace").rpartition(")")[2].split()  # state, ppid, ...


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return bool(stat) and stat[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    return [child for child in _pids() if (_stat(child) or ["", ""])[1] == str(pid)]


def title(pid: int) -> str:
    """A process's command line (a Ray worker's: ``ray::IDLE``, or ``ray::FUNCTION`` running a task)."""
    return _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def kill(pids: list[int], timeout: float = 10.0) -> None:
    """SIGKILL ``pids`` and wait until they are gone (or zombies for their parent to reap)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
