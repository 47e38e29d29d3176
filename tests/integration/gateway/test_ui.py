"""The status page over plain HTTP: its routes and assets, and ``GET /status/history``."""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from actors.testing import FakeUpstream, error
from tests.helpers import REPO, SDK_HI, Service, service

pytestmark = pytest.mark.anyio
STATIC = REPO / "actors" / "gateway" / "static"


async def _fallback(s: Service) -> str:
    """One request whose primary answers 503: it falls back; returns its request id (from /events)."""
    client = s.client()
    await client.chat.completions.create(model="chat", messages=SDK_HI)
    await client.close()
    _, _, body = await s.get("/events?type=fallback_triggered")
    (event,) = json.loads(body)["events"]
    request_id: str = event["data"]["request_id"]
    return request_id


async def _history(s: Service, query: str = "") -> dict[str, Any]:
    status, headers, body = await s.get("/status/history" + query)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    doc: dict[str, Any] = json.loads(body)
    return doc


@pytest.mark.parametrize("path", ["/", "/ui/"])
async def test_the_page_is_served_with_its_assets(tmp_path: Path, path: str) -> None:
    """/ and /ui/ serve the page; every asset it names answers with its own content type."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        status, headers, body = await s.get(path)
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        html = body.decode()
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs, html
        for ref in refs:
            if ref.startswith("data:"):
                continue
            assert not ref.startswith("/"), ref  # relative: the page works under a proxy's prefix too
            status, headers, _ = await s.get(f"{path}{ref}".replace("//", "/"))
            assert status == 200, ref
            kind = {"js": "text/javascript", "css": "text/css"}[ref.rsplit(".", 1)[1]]
            assert headers["Content-Type"] == f"{kind}; charset=utf-8", ref


async def test_the_page_names_no_other_host(tmp_path: Path) -> None:
    """The HTML holds no http(s):// or protocol-relative URL: nothing is fetched from elsewhere."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        _, _, body = await s.get("/")
    html = body.decode()
    assert not re.search(r"https?://", html, re.IGNORECASE)
    assert not re.search(r'(?:src|href|action)="//', html)


async def test_assets_are_gzipped_for_clients_that_take_it(tmp_path: Path) -> None:
    """uPlot goes gzipped to a client that accepts gzip, and as it is to one that does not."""
    path = "/ui/assets/uPlot.iife.min.js"
    async with service(tmp_path, FakeUpstream("a")) as s:
        _, zipped, body = await s.get(path, headers={"Accept-Encoding": "gzip"})
        _, plain, raw = await s.get(path, headers={"Accept-Encoding": "identity"})
    assert (zipped["Content-Encoding"], "Content-Encoding" in plain) == ("gzip", False)
    assert body == raw == (STATIC / "vendor" / "uPlot.iife.min.js").read_bytes()  # the client inflated it
    assert int(zipped["Content-Length"]) < len(raw) // 2


async def test_ui_without_a_slash_goes_to_the_page(tmp_path: Path) -> None:
    """/ui redirects to /ui/ (relative, so a proxy's prefix is kept)."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        status, headers, _ = await s.get("/ui", allow_redirects=False)
    assert (status, headers["Location"]) == (302, "ui/")


async def test_an_unknown_asset_is_a_json_404(tmp_path: Path) -> None:
    """Only the page's own files are served; anything else under /ui/assets/ is an OpenAI-shaped 404."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        status, _, body = await s.get("/ui/assets/..%2Fui.py")
        status2, _, _ = await s.get("/ui/assets/nothing.js")
    assert (status, status2) == (404, 404)
    assert json.loads(body)["error"]["code"] == "not_found"


def test_the_assets_are_package_data() -> None:
    """Every file the page needs matches pyproject's package-data, so a non-editable install has it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["actors.gateway"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert "static/vendor/uPlot.iife.min.js" in files
    assert [f for f in files if not any(fnmatch(f, g) for g in globs)] == []


def test_the_vendored_files_have_their_licence_and_source() -> None:
    """uPlot sits beside its licence, and VENDORED.md names its version and where it came from."""
    vendored = (STATIC / "vendor" / "VENDORED.md").read_text()
    assert "`uplot` | 1.6.32" in vendored
    assert "MIT" in (STATIC / "vendor" / "uPlot.LICENSE").read_text()
    assert (STATIC / "vendor" / "uPlot.iife.min.js").read_text().startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32)")


async def test_history_shows_a_fallback_and_the_state_bands(tmp_path: Path) -> None:
    """After a 503 fallback: a's bands go healthy -> cooldown, and the fallback row names the request."""
    a, b = FakeUpstream("a", default=error(503, "upstream is overloaded")), FakeUpstream("b")
    async with service(tmp_path, a, b, health={"probe_min_interval_s": 0}) as s:
        await s.clock.advance(30)  # healthy for 30 s
        request_id = await _fallback(s)
        await s.clock.advance(60)
        doc = await _history(s)
    assert (doc["hours"], doc["bucket_s"]) == (24, 300)
    assert doc["to"] - doc["from"] == 24 * 3600
    pa = doc["providers"]["a"]
    assert [band["state"] for band in pa["bands"]] == ["healthy", "cooldown"]
    healthy, cooling = pa["bands"]
    assert (healthy["to"] - healthy["from"], cooling["to"] - cooling["from"]) == (30, 60)
    assert cooling["reason"] == "service_unavailable"
    assert (cooling["to"], healthy["from"]) == (doc["to"], doc["observed_from"])
    assert len(pa["fallbacks"]) == 1
    (row,) = doc["fallbacks"]
    assert (row["request_id"], row["from"], row["to"], row["reason"]) == (request_id, "a", "b", "service_unavailable")
    assert "overloaded" in row["error"]
    assert row["waited_ms"] >= 0
    pb = doc["providers"]["b"]
    assert [band["state"] for band in pb["bands"]] == ["healthy"]
    ((_, p50, p95, n),) = pb["latency"]
    assert (n, p50, p95) == (1, pb["latency_p50_ms"], pb["latency_p50_ms"])
    assert (pb["ttft"], pb["ttft_p50_ms"]) == ([], None)


async def test_history_splits_stream_first_tokens_from_answers(tmp_path: Path) -> None:
    """A streamed answer's time is its time to first token: it goes to ttft, not latency."""
    a = FakeUpstream("a")
    async with service(tmp_path, a) as s:
        client = s.client()
        async with await client.chat.completions.create(model="chat", messages=SDK_HI, stream=True) as stream:
            async for _ in stream:
                pass
        await client.close()
        doc = await _history(s, "?hours=1")
    pa = doc["providers"]["a"]
    assert doc["bucket_s"] == 60
    assert (len(pa["ttft"]), pa["latency"], pa["answers"]) == (1, [], 1)


@pytest.mark.parametrize("hours", ["0", "169", "-1", "abc", "1.5", ""])
async def test_bad_hours_are_a_400_naming_the_parameter(tmp_path: Path, hours: str) -> None:
    """hours outside 1..168, or not an integer: a 400 in the OpenAI error shape with param 'hours'."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        status, _, body = await s.get(f"/status/history?hours={hours}")
    assert status == 400
    err = json.loads(body)["error"]
    assert (err["param"], err["type"]) == ("hours", "invalid_request_error")
    assert "1 to 168" in err["message"]


@pytest.mark.parametrize("hours", [1, 168])
async def test_the_bounds_are_accepted_and_the_points_bounded(tmp_path: Path, hours: int) -> None:
    """1 h and 168 h both answer; the latency buckets never exceed 288 across the window."""
    async with service(tmp_path, FakeUpstream("a")) as s:
        doc = await _history(s, f"?hours={hours}")
    assert doc["hours"] == hours
    assert hours * 3600 / doc["bucket_s"] <= 288


async def test_history_carries_no_secret(tmp_path: Path) -> None:
    """The provider's key and the admin token never appear in the history (nor does any header value)."""
    a, b = FakeUpstream("a", default=error(401, "bad key"), api_key="sk-a-secret"), FakeUpstream("b")
    env = {"A_KEY": "sk-a-secret", "ADMIN": "admin-secret"}
    async with service(tmp_path, a, b, env=env, server={"admin_token_env": "ADMIN"},
                       providers={"a": {"api_key_env": "A_KEY"}}) as s:
        await _fallback(s)
        _, _, body = await s.get("/status/history")
    assert b"sk-a-secret" not in body
    assert b"admin-secret" not in body
    assert json.loads(body)["fallbacks"][0]["reason"] == "auth_failure"
