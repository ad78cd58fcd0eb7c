"""A real ``redis-server`` for tests: started on 127.0.0.1 and a free port, no persistence
unless a test asks for it.

Own code rather than pytest-redis: that plugin adds two dependencies (mirakuru, port-for) for what
is one ``subprocess.Popen``, and its process fixture is session-scoped where the cross-process
tests need to stop the server mid-test and start it again on the same port (F37).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

INSTALL_HINT = (
    "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server; "
    "macOS: brew install redis) to run the Redis coordinator tests"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process that a test can stop and start again on the same port."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        # "none", or "aof" (appendonly, fsync always); either way a dump.rdb left in workdir
        # (by SAVE) is loaded at start: a restart from a snapshot.
        self.persistence = "none"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again, on the same port) and wait until it accepts connections."""
        if self.running:
            return
        # No persistence: a restarted server has forgotten everything, as a crashed one may.
        argv = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port)]
        aof = ["yes", "--appendfsync", "always"] if self.persistence == "aof" else ["no"]
        argv += ["--save", "", "--appendonly", *aof, "--dir", str(self.workdir)]
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def stop(self) -> None:
        """Kill the server at once (what a crashed coordinator looks like to clients)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


def redis_executable() -> str:
    """The ``redis-server`` path; fails in CI (``CI=true``) and skips locally when missing."""
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(INSTALL_HINT + " (CI must run these tests, never skip them)")
        pytest.skip(INSTALL_HINT)
    return found
