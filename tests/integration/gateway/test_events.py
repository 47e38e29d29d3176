"""``GET /events`` for a person asking what just happened: newest first, by type, provider, time, request."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from actors.testing import error
from tests.helpers import SDK_HI, Service, two

pytestmark = pytest.mark.anyio


async def _incident(s: Service) -> None:
    """One fallback (a's 503), then two answers from b while a cools down."""
    client = s.client()
    for _ in range(3):
        await client.chat.completions.create(model="chat", messages=SDK_HI)
    await client.close()
    await anyio.wait_all_tasks_blocked()


async def _events(s: Service, query: str) -> list[dict[str, object]]:
    status, _, body = await s.get(f"/events?{query}")
    assert status == 200, body
    events: list[dict[str, object]] = json.loads(body)["events"]
    return events


async def test_newest_first_with_a_cursor_to_go_back(tmp_path: Path) -> None:
    """order=desc gives the newest first; next_before pages further back, and the pages meet the whole log."""
    a, _, svc = two(tmp_path)
    a.script(error(503))
    async with svc as s:
        await _incident(s)
        everything = await _events(s, "limit=1000")
        _, _, body = await s.get("/events?order=desc&limit=3")
        page = json.loads(body)
        older = await _events(s, f"order=desc&limit=1000&before={page['next_before']}")
    ids = [e["id"] for e in everything]
    assert [e["id"] for e in page["events"]] == ids[::-1][:3]
    assert [e["id"] for e in page["events"]] + [e["id"] for e in older] == ids[::-1]


async def test_by_type_and_provider(tmp_path: Path) -> None:
    """type= (several, comma-separated) and provider= narrow the log to what was asked."""
    a, _, svc = two(tmp_path)
    a.script(error(503))
    async with svc as s:
        await _incident(s)
        fallbacks = await _events(s, "type=fallback_triggered")
        of_b = await _events(s, "provider=b&type=attempt_succeeded,attempt_failed")
    assert [e["type"] for e in fallbacks] == ["fallback_triggered"]
    assert {(e["type"], e["provider"]) for e in of_b} == {("attempt_succeeded", "b")}
    assert len(of_b) == 3


async def test_by_time_and_by_request(tmp_path: Path) -> None:
    """since/until (epoch or ISO 8601) bound the time; request_id gives all one request caused."""
    a, _, svc = two(tmp_path)
    a.script(error(503))
    async with svc as s:
        start = s.clock.now()
        await _incident(s)
        await s.clock.advance(3600)
        client = s.client()
        await client.chat.completions.create(model="chat", messages=SDK_HI)
        await client.close()
        await anyio.wait_all_tasks_blocked()
        later = await _events(s, f"since={start + 1800:.3f}")
        iso = "1970-01-01T00:00:00Z"
        before = await _events(s, f"since={iso}&until={start + 1800:.3f}")
        fallback = (await _events(s, "type=fallback_triggered"))[0]
        data = fallback["data"]
        assert isinstance(data, dict)
        one = await _events(s, f"request_id={data['request_id']}")
    assert later
    assert all(float(str(e["at"])) >= start + 1800 for e in later)
    assert all(float(str(e["at"])) < start + 1800 for e in before)
    assert {e["type"] for e in one} >= {"attempt_failed", "fallback_triggered", "attempt_succeeded"}
    assert all(isinstance(e["data"], dict) and e["data"].get("request_id") == data["request_id"] for e in one)


@pytest.mark.parametrize(("query", "param", "names"), [
    pytest.param("type=nope", "type", "fallback_triggered", id="unknown-type"),
    pytest.param("type=attempt_failed,bogus", "type", "attempt_failed", id="one-unknown-type-of-two"),
    pytest.param("provider=nope", "provider", "a, b", id="unknown-provider"),
    pytest.param("order=sideways", "order", "asc or desc", id="bad-order"),
    pytest.param("since=yesterday", "since", "ISO 8601", id="bad-time"),
    pytest.param("before=0", "before", "from 1", id="bad-before"),
])
async def test_a_bad_filter_is_a_400_naming_what_is_known(tmp_path: Path, query: str, param: str,
                                                          names: str) -> None:
    """An unknown type or provider, or a bad order or time, is a 400 that names the parameter and the choices."""
    _, _, svc = two(tmp_path)
    async with svc as s:
        status, _, body = await s.get(f"/events?{query}")
    assert status == 400
    err = json.loads(body)["error"]
    assert err["param"] == param
    assert names in err["message"]
