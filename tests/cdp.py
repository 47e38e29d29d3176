"""A small Chrome DevTools Protocol client for the browser tests (nothing here is a test).

:func:`chromium` starts ``/usr/bin/chromium`` headless on a throw-away
profile, with its DevTools port chosen by the browser (read back from
``DevToolsActivePort``), and yields a :class:`Page`: one tab driven over its
websocket with aiohttp (no selenium or playwright). On the way out the browser
is asked to close, then its whole process group is killed, so no process is
left behind. Every wait is bounded.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc

from tests.helpers import missing

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check", "--no-proxy-server",
    "--hide-scrollbars", "--mute-audio", "--window-size=1280,900", "--remote-debugging-port=0",
)

Event = dict[str, Any]


class CDPError(Exception):
    """Raised when the browser answers a command with an error."""


class Page:
    """One tab: send commands, read the events it sent (every one is kept, in order)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, Event] = {}
        self._arrived = anyio.Event()
        self.events: list[Event] = []

    async def read(self) -> None:
        """Take every message from the websocket until it closes (run as a task)."""
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if "id" in data:
                self._replies[data["id"]] = data
            else:
                self.events.append(data)
            self._arrived.set()
            self._arrived = anyio.Event()
        self._arrived.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one command and return its result (within 20 s)."""
        call = next(self._ids)
        await self._ws.send_str(json.dumps({"id": call, "method": method, "params": params}))
        with anyio.fail_after(20):
            while call not in self._replies:
                if self._ws.closed:
                    raise CDPError(f"{method}: the browser closed the connection")
                await self._arrived.wait()
        reply = self._replies.pop(call)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def wait_event(self, method: str, when: Callable[[Event], bool] = lambda e: True,
                         within_s: float = 20) -> Event:
        """The first event ``method`` (for which ``when``) the page sent, waiting for it if need be."""
        seen = 0
        with anyio.fail_after(within_s):
            while True:
                for event in self.events[seen:]:
                    if event["method"] == method and when(event):
                        return event
                seen = len(self.events)
                await self._arrived.wait()

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, expression: str, within_s: float = 15) -> None:
        """Evaluate ``expression`` until it is truthy (the page renders from its own polling)."""
        with anyio.fail_after(within_s):
            # Another process's DOM: there is no event to wait on, so it is polled.
            while not await self.evaluate(expression):  # noqa: ASYNC110
                await anyio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        """Save the whole page (not only the viewport) as a PNG."""
        import base64

        size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        await anyio.Path(path).write_bytes(base64.b64decode(shot["data"]))


async def _devtools_port(profile: Path, process: anyio.abc.Process) -> tuple[int, str]:
    """The port and browser path chromium wrote to DevToolsActivePort once it listened."""
    marker = anyio.Path(profile / "DevToolsActivePort")
    with anyio.fail_after(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"chromium exited with {process.returncode}; see {profile / 'chromium.log'}")
            lines = (await marker.read_text()).split("\n") if await marker.exists() else []
            if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                return int(lines[0]), lines[1].strip()
            await anyio.sleep(0.05)


def _kill_group(process: anyio.abc.Process) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the browser and its helpers: its own session, its group


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """Headless chromium on ``profile`` (a fresh directory), and one page of it; skips where it is absent."""
    if not await anyio.Path(CHROMIUM).exists():
        missing("chromium is not installed")
    await anyio.Path(profile).mkdir(parents=True, exist_ok=True)
    with open(profile / "chromium.log", "wb") as log:
        process = await anyio.open_process([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           start_new_session=True)
    try:
        port, browser_path = await _devtools_port(profile, process)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            with anyio.fail_after(20):
                while True:
                    async with http.get(f"{base}/json/list") as resp:
                        pages = [t for t in await resp.json() if t.get("type") == "page"]
                    if pages:
                        break
                    await anyio.sleep(0.05)
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws, \
                    anyio.create_task_group() as tg:
                page = Page(ws)
                tg.start_soon(page.read)
                try:
                    yield page
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        async with http.ws_connect(f"ws://127.0.0.1:{port}{browser_path}") as browser:
                            await browser.send_str(json.dumps({"id": 1, "method": "Browser.close"}))
                            await browser.receive()
                    await ws.close()
    finally:
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(5):
                await process.wait()
            _kill_group(process)  # whatever is left of it (helpers, a hung browser)
            with anyio.move_on_after(5):
                await process.wait()
            await process.aclose()
