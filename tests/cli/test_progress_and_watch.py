"""Progress bars of ``events export`` and ``replay`` (a terminal only, never with --quiet), and ``status --watch``."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import anyio
import pytest

from actors.core.messages import AttemptSucceeded
from actors.edges.store import Store
from tests.helpers import INCIDENTS, REPO, RUN, clean_env, cli

INCIDENT = str(INCIDENTS / "primary-outage-failback.jsonl")
_ANSI = re.compile(r"\x1b\[|\r")


def on_terminal(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``run.py args`` with stderr (and stdout, unless ``-o`` is among args) on a pseudo-terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    stdout = subprocess.DEVNULL if "-o" in args or "replay" in args else follower
    process = subprocess.Popen([sys.executable, RUN, *args], cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL,
                               stdout=stdout, stderr=follower)
    os.close(follower)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=timeout), seen.decode(errors="replace")


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    """A state file holding 3,000 attempts (a log long enough to be worth a bar)."""
    path = tmp_path / "state.db"

    async def fill() -> None:
        store = await Store.open(str(path))
        for i in range(3000):
            store.append(AttemptSucceeded(at=1_700_000_000 + i, provider="a", model="chat", request_id=f"r{i}",
                                          latency_ms=1.0))
        await store.flush()
        await store.close()

    anyio.run(fill)
    return path


def test_export_to_a_pipe_draws_no_bar(tmp_path: Path, state_file: Path) -> None:
    """Not a terminal: stderr has the closing line and not one escape code or carriage return."""
    result = cli(tmp_path, "events", "export", "--state", str(state_file), "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "exported 3000 events" in result.stderr
    assert not _ANSI.search(result.stderr)


def test_export_on_a_terminal_draws_a_bar(tmp_path: Path, state_file: Path) -> None:
    """A terminal: the bar shows (tqdm's percentage), then the closing line."""
    code, seen = on_terminal(tmp_path, "events", "export", "--state", str(state_file), "-o",
                             str(tmp_path / "out.jsonl"))
    assert code == 0, seen
    assert re.search(r"exporting:\s+\d+%", seen), seen
    assert "exported 3000 events" in seen


def test_quiet_export_on_a_terminal_draws_no_bar(tmp_path: Path, state_file: Path) -> None:
    """--quiet: no bar even on a terminal."""
    code, seen = on_terminal(tmp_path, "events", "export", "--quiet", "--state", str(state_file), "-o",
                             str(tmp_path / "out.jsonl"))
    assert code == 0, seen
    assert "exporting" not in seen
    assert "%" not in seen
    assert "exported 3000 events" in seen


def test_export_to_the_terminal_itself_draws_no_bar(tmp_path: Path, state_file: Path) -> None:
    """Events printed on the terminal: no bar over them."""
    code, seen = on_terminal(tmp_path, "events", "export", "--state", str(state_file))
    assert code == 0, seen[-500:]
    assert "exporting:" not in seen


@pytest.mark.parametrize("quiet", [pytest.param(False, id="terminal"), pytest.param(True, id="quiet")])
def test_replay_bars(tmp_path: Path, quiet: bool) -> None:
    """replay on a terminal shows its reading and replaying bars; with --quiet neither."""
    code, seen = on_terminal(tmp_path, "replay", INCIDENT, *(["--quiet"] if quiet else []))
    assert code == 0, seen
    assert bool(re.search(r"replaying:\s+\d+%", seen)) is not quiet
    assert ("reading:" in seen) is not quiet


def test_replay_to_a_pipe_has_no_escape_codes(tmp_path: Path) -> None:
    """Not a terminal: replay's output is plain text."""
    result = cli(tmp_path, "replay", INCIDENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches" in result.stdout
    assert not _ANSI.search(result.stdout + result.stderr)


def _watch(cwd: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, RUN, "status", "--watch", "--interval", "0.2", "--config",
                             str(REPO / "config.toml"), *extra], cwd=cwd, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_status_watch_redraws_until_ctrl_c_and_exits_0(tmp_path: Path) -> None:
    """--watch prints a fresh table every interval; SIGINT ends it cleanly with 0, no traceback."""
    process = _watch(tmp_path)
    assert process.stdout is not None
    frames, lines = 0, []
    deadline = time.monotonic() + 30
    while frames < 3 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        frames += line.startswith("provider ")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert frames >= 3, "".join(lines) + err
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert not _ANSI.search("".join(lines) + out)  # a pipe: frames follow one another, plain
    assert "(service not running; from" in "".join(lines)


def test_status_watch_on_a_terminal_clears_between_frames(tmp_path: Path) -> None:
    """On a terminal each frame starts by clearing the screen."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, RUN, "status", "--watch", "--interval", "0.2", "--config",
                                str(REPO / "config.toml")], cwd=tmp_path, env=clean_env(), stdout=follower,
                               stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    while seen.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
        if select.select([leader], [], [], 0.5)[0]:
            seen += os.read(leader, 65536)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    os.close(leader)
    assert seen.count(b"\x1b[H\x1b[2J") >= 2
