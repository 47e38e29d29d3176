"""The status page in a real browser: headless chromium, driven over the DevTools protocol.

Each test starts a service whose primary answers 503 (so a request falls
back), opens the page, waits for what an operator looks for, and saves a
screenshot under ``tests/.artifacts/`` (gitignored) with the measured load
time and transfer size beside it. Without chromium the tests skip (in CI
they fail: ``tests.helpers.missing``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from actors.testing import FakeUpstream, RateLimit, error
from tests.cdp import Page, chromium
from tests.helpers import REPO, SDK_HI, Service, service

pytestmark = pytest.mark.anyio
ARTIFACTS = REPO / "tests" / ".artifacts"


@pytest.fixture
def anyio_backend() -> Any:
    return "asyncio"  # the browser is what is under test here, not the event loop: one backend


@asynccontextmanager
async def _incident(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[Service, str]]:
    """A service that was healthy for 20 minutes, then its primary began answering 503: one fallback."""
    primary = FakeUpstream("primary", default=error(503, "primary is overloaded"))
    backup = FakeUpstream("backup")
    async with service(tmp_path, primary, backup, **kw) as s:
        backup.limit = RateLimit(requests=100, clock=s.clock)  # it reports its headroom in headers
        client = s.client()
        await s.clock.advance(1200)
        await client.chat.completions.create(model="chat", messages=SDK_HI)  # falls back to backup
        for _ in range(3):
            await s.clock.advance(40)
            await client.chat.completions.create(model="chat", messages=SDK_HI)
        async with await client.chat.completions.create(model="chat", messages=SDK_HI, stream=True) as stream:
            async for _ in stream:
                pass
        await client.close()
        _, _, body = await s.get("/events?type=fallback_triggered")
        (event,) = json.loads(body)["events"]
        yield s, event["data"]["request_id"]


def _ready(request_id: str) -> str:
    """True once the page shows both providers, the fallback's row and the timeline's bands."""
    return f"""(() => !!(document.body.dataset.ready === "1"
        && document.querySelector('.card[data-provider="primary"]')
        && document.querySelector('.card[data-provider="backup"]')
        && document.querySelector('#fallbacks tr[data-request-id="{request_id}"]')
        && document.querySelectorAll('.tl-bar[data-series="primary"] .band').length >= 2
        && document.querySelector('.tl-bar[data-series="primary"] .mark')))()"""


def _traffic(page: Page, origin: str) -> tuple[int, list[str]]:
    """The bytes the page transferred (every finished request), and any request not to ``origin``'s host."""
    size = sum(e["params"]["encodedDataLength"] for e in page.events if e["method"] == "Network.loadingFinished")
    urls = [e["params"]["request"]["url"] for e in page.events if e["method"] == "Network.requestWillBeSent"]
    host = urlsplit(origin).hostname
    elsewhere = [u for u in urls if not u.startswith("data:") and urlsplit(u).hostname != host]
    return size, elsewhere


def _problems(page: Page) -> list[str]:
    """Script errors, console errors and browser log errors (a CSP refusal is one)."""
    out = []
    for e in page.events:
        if e["method"] == "Runtime.exceptionThrown":
            out.append(str(e["params"]["exceptionDetails"])[:300])
        elif e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
            out.append(str(e["params"]["args"])[:300])
        elif e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
            out.append(e["params"]["entry"]["text"][:300])
    return out


async def _open(page: Page, url: str) -> None:
    for domain in ("Page", "Network", "Runtime", "Log"):
        await page.send(f"{domain}.enable")
    await page.send("Page.navigate", url=url)
    await page.wait_event("Page.loadEventFired")


async def test_the_page_shows_providers_the_fallback_and_the_timeline(tmp_path: Path) -> None:
    """Both providers, the fallback row (its request id linking to /events) and the 24 h timeline render."""
    with anyio.fail_after(90):
        async with _incident(tmp_path) as (s, request_id), chromium(tmp_path / "profile") as page:
            await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                            mobile=False)
            await _open(page, s.url + "/")
            await page.wait_until(_ready(request_id))
            seen = await page.evaluate(f"""(() => {{
                const row = document.querySelector('#fallbacks tr[data-request-id="{request_id}"]');
                const card = (n) => document.querySelector('.card[data-provider="' + n + '"]');
                const nav = performance.getEntriesByType("navigation")[0];
                return {{
                    primary: card("primary").querySelector(".pill").textContent,
                    backup: card("backup").querySelector(".pill").textContent,
                    countdown: !!card("primary").querySelector("[data-left]"),
                    headroom: (card("backup").querySelector("[data-headroom]") || {{}}).textContent,
                    row: row.textContent,
                    link: row.querySelector("a").getAttribute("href"),
                    bands: document.querySelectorAll(".tl-bar .band").length,
                    charts: document.querySelectorAll("#charts canvas").length,
                    admin: [...document.querySelectorAll(".actions")].every((a) => a.hidden),
                    loadMs: nav.loadEventEnd, domMs: nav.domContentLoadedEventEnd,
                }};
            }})()""")
            await page.screenshot(ARTIFACTS / "status-page.png")
            size, elsewhere = _traffic(page, s.url)  # what loading and the first polls cost
            await page.send("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme",
                                                                      "value": "dark"}])
            await page.wait_until("document.querySelectorAll('#charts canvas').length >= 1")
            await page.screenshot(ARTIFACTS / "status-page-dark.png")
            problems = _problems(page)
    assert (seen["primary"], seen["backup"]) == ("cooldown", "healthy")
    assert seen["countdown"]
    assert "97 of 100 requests left" in seen["headroom"]  # three answers in its last minute
    for text in ("primary", "backup", "service unavailable", "primary is overloaded"):
        assert text in seen["row"]
    assert seen["link"] == f"./events?request_id={request_id}&limit=1000"
    assert seen["bands"] >= 3  # primary healthy then cooldown, backup healthy
    assert seen["charts"] >= 1  # backup answered: its latency chart
    assert seen["admin"]  # no token typed: no admin buttons
    assert elsewhere == []
    assert problems == []
    report = {"load_event_end_ms": round(seen["loadMs"], 1), "dom_content_loaded_ms": round(seen["domMs"], 1),
              "transferred_bytes": size, "screenshot": str(ARTIFACTS / "status-page.png")}
    (ARTIFACTS / "status-page.json").write_text(json.dumps(report, indent=2))
    print("status page:", report)
    assert seen["loadMs"] < 5000
    assert size < 500_000


async def test_admin_buttons_appear_with_a_token_kept_out_of_storage(tmp_path: Path) -> None:
    """Typing the token shows the buttons; it is in no URL, storage or cookie; Disable takes effect.

    (On /ui/ with a 1 h window: the other route, and the timeline at a scale where the incident shows.)
    """
    with anyio.fail_after(90):
        admin = {"env": {"ADMIN": "the-admin-token"}, "server": {"admin_token_env": "ADMIN"}}
        async with _incident(tmp_path, **admin) as (s, request_id), chromium(tmp_path / "profile") as page:
            await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                            mobile=False)
            await _open(page, s.url + "/ui/?hours=1")
            await page.wait_until(_ready(request_id))
            await page.evaluate("""(() => {
                document.getElementById("token").value = "the-admin-token";
                document.getElementById("token-use").click();
                window.confirm = () => true;
            })()""")
            await page.wait_until("![...document.querySelectorAll('.actions')].some((a) => a.hidden)")
            await page.screenshot(ARTIFACTS / "status-page-admin-1h.png")
            kept = await page.evaluate("""(() => JSON.stringify([location.href, document.cookie,
                JSON.stringify(localStorage), JSON.stringify(sessionStorage),
                document.getElementById("token").value]))()""")
            await page.evaluate("""document.querySelector('.card[data-provider="backup"]'
                + ' button[data-action="disable"]').click()""")
            await page.wait_until("""document.querySelector('.card[data-provider="backup"] .pill')
                .textContent === "disabled" """)
            sent = [e["params"]["request"] for e in page.events if e["method"] == "Network.requestWillBeSent"
                    and "/admin/" in e["params"]["request"]["url"]]
    assert "the-admin-token" not in kept
    assert s.supervisor.state_of("backup") == "disabled"
    assert [r["headers"].get("Authorization") for r in sent] == ["Bearer the-admin-token"]
    assert all("the-admin-token" not in r["url"] for r in sent)


async def test_a_phone_sees_no_horizontal_overflow(tmp_path: Path) -> None:
    """At 390 x 844 (a phone) the page fits its width: nothing scrolls sideways."""
    with anyio.fail_after(90):
        async with _incident(tmp_path) as (s, request_id), chromium(tmp_path / "profile") as page:
            await page.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2,
                            mobile=True)
            await _open(page, s.url + "/")
            await page.wait_until(_ready(request_id))
            widths = await page.evaluate("""(() => ({inner: window.innerWidth,
                doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
                wider: [...document.querySelectorAll("body *")].filter((e) =>
                    e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap, .uplot"))
                    .map((e) => e.tagName + "." + e.className).slice(0, 5)}))()""")
            await page.screenshot(ARTIFACTS / "status-page-phone.png")
    assert widths["inner"] == 390
    assert max(widths["doc"], widths["body"]) <= widths["inner"], widths
    assert widths["wider"] == [], widths
