"""A real ``redis-server`` on loopback for the tests of shared state (nothing here is a test).

:class:`RedisServer` runs the Debian binary as a child process on a free
127.0.0.1 port, with no persistence, in a temporary directory; it can be
stopped and started again on the same port mid-test (a Redis outage). Every
wait is bounded. Where the binary or redis-py (the ``redis`` extra) is missing
the test skips, and fails in CI (``tests.helpers.missing``).
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, missing, require_tool

__all__ = ("RedisServer",)


class RedisServer:
    """``redis-server`` on ``127.0.0.1:port``; ``password`` turns on ``requirepass``."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.binary = require_tool("redis-server", "redis-server")
        if importlib.util.find_spec("redis") is None:
            missing("redis-py is not installed (pip install -e '.[redis]')")
        self.directory = directory
        self.password = password
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 10.0) -> None:
        """Start it and return once it answers PING (bounded by ``timeout``)."""
        assert self._process is None, "already running"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(args, cwd=self.directory, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s:\n{self.log}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s) and wait until the port is closed."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        process.send_signal(signal.SIGCONT)  # a paused server handles its SIGTERM only once it runs
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open and nothing answers, a hung Redis."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def _answers(self) -> bool:
        """True when something on the port answers a PING (``+PONG``, or ``-NOAUTH`` with a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a free loopback port, stopped after the test (tests/conftest.py
    loads this module as a plugin, so every test may ask for it)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
