"""Hostile clients: malformed bodies and HTTP get a 4xx naming the problem, never a 5xx or a traceback.

Bodies go as raw bytes through aiohttp's client; malformed HTTP goes as raw
bytes over a TCP socket. After each, the service must still answer a good
request. A seeded fuzz run mutates a valid body and its headers and checks
every answer and every log record.
"""

from __future__ import annotations

import gzip
import io
import logging
import random
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from actors.gateway.serverlog import Lines, ServerLog
from actors.runtime.validation import MAX_DEPTH
from actors.testing import FakeUpstream
from tests.helpers import Service, service

pytestmark = pytest.mark.anyio

GOOD = b'{"model":"chat","messages":[{"role":"user","content":"hi"}]}'
JSON = {"Content-Type": "application/json"}
MAX_BODY = 10_000_000  # server.max_body_bytes by default


def nested(levels: int, key: str = "x") -> bytes:
    """A good request whose ``key`` holds arrays nested so that the whole body is ``levels`` deep."""
    inner = levels - 1  # the body's own object is the first level
    return GOOD[:-1] + f',"{key}":'.encode() + b"[" * inner + b"]" * inner + b"}"


def deep_tool(levels: int) -> bytes:
    """A good request whose tool schema makes the body ``levels`` deep."""
    inner = levels - 5  # the body, tools, a tool, its function, its parameters
    return (GOOD[:-1] + b',"tools":[{"type":"function","function":{"name":"f","parameters":{"x":'
            + b"[" * inner + b"]" * inner + b"}}}]}")


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


async def send(s: Service, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST ``body`` as is; the status and the parsed JSON answer (None if it is not JSON)."""
    with anyio.fail_after(30):
        data = io.BytesIO(body) if len(body) > 1_000_000 else body  # aiohttp warns of large bytes
        async with s.session.post(s.url + "/v1/chat/completions", data=data,
                                  headers=JSON if headers is None else headers) as resp:
            raw = await resp.read()
    try:
        return resp.status, msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return resp.status, None


async def still_serves(s: Service) -> None:
    status, answer = await send(s, GOOD)
    assert status == 200, answer


def assert_error(answer: Any, *words: str) -> None:
    """An OpenAI-shaped error whose message names each of ``words`` (case-insensitive)."""
    assert isinstance(answer, dict), answer
    assert set(answer["error"]) >= {"message", "type", "code", "param"}, answer
    message = answer["error"]["message"].lower()
    for word in words:
        assert word.lower() in message, message


def assert_no_traceback(records: list[logging.LogRecord]) -> None:
    for record in records:
        assert not record.exc_info, f"{record.name}: {record.getMessage()}"
        assert "Traceback" not in record.getMessage(), record.getMessage()
        assert record.levelno < logging.ERROR, f"{record.name}: {record.getMessage()}"


BAD_BODIES: list[Any] = [
    pytest.param(b'{"model":"chat","messages":[{"role":"user","con\xa7ent":"hi"}]}', JSON, 400,
                 ("utf-8", "byte 47"), id="bad-utf8-in-a-nested-key"),
    pytest.param(GOOD[:-1] + b',"\xff":1}', JSON, 400, ("utf-8", "0xff"), id="bad-utf8-in-a-top-level-key"),
    pytest.param(b'{"model":"chat","messages":[{"role":"user","content":"h\xc0\x80i"}]}', JSON, 400,
                 ("utf-8",), id="bad-utf8-in-a-value"),
    pytest.param(b'{"model":"chat","messages":[{"role":"user","content":"\xed\xa0\x80"}]}', JSON, 400,
                 ("utf-8",), id="utf8-encoded-surrogate"),
    pytest.param(GOOD[:-1] + b",\xff}", JSON, 400, ("utf-8",), id="bad-utf8-between-tokens"),
    pytest.param(nested(MAX_DEPTH + 1), JSON, 400, (f"deeper than {MAX_DEPTH}", "'x'"), id="nesting-one-over"),
    pytest.param(deep_tool(MAX_DEPTH + 1), JSON, 400, (f"deeper than {MAX_DEPTH}", "'tools'"),
                 id="tool-schema-one-over"),
    pytest.param(nested(1000), JSON, 400, (f"deeper than {MAX_DEPTH}",), id="nesting-1000"),
    pytest.param(b"[" * 100_000, JSON, 400, ("object",), id="nesting-100000-unclosed"),
    pytest.param(b'{"a":' * 5000 + b"1" + b"}" * 5000, JSON, 400, (f"deeper than {MAX_DEPTH}",),
                 id="objects-nested-5000"),
    pytest.param(GOOD, {**JSON, "Content-Encoding": "gzip"}, 400, ("gzip",), id="gzip-header-on-plain-bytes"),
    pytest.param(GOOD, {**JSON, "Content-Encoding": "deflate"}, 400, ("deflate",), id="deflate-header-on-plain"),
    pytest.param(gzip.compress(GOOD)[:-12], {**JSON, "Content-Encoding": "gzip"}, 400, ("truncated",),
                 id="gzip-truncated"),
    pytest.param(gzip.compress(GOOD) + b"junk", {**JSON, "Content-Encoding": "gzip"}, 400, ("gzip",),
                 id="gzip-then-junk"),
    pytest.param(gzip.compress(b" " * (MAX_BODY + 1)), {**JSON, "Content-Encoding": "gzip"}, 413,
                 ("decompressed", str(MAX_BODY)), id="gzip-bomb"),
    pytest.param(GOOD, {**JSON, "Content-Encoding": "br"}, 415, ("'br'",), id="brotli"),
    pytest.param(GOOD, {**JSON, "Content-Encoding": "zstd"}, 415, ("'zstd'",), id="zstd"),
    pytest.param(gzip.compress(gzip.compress(GOOD)), {**JSON, "Content-Encoding": "gzip, gzip"}, 415,
                 ("'gzip, gzip'",), id="stacked-codings"),
    pytest.param(b"[]", JSON, 400, ("json object", "array"), id="array"),
    pytest.param(b"null", JSON, 400, ("json object", "null"), id="null"),
    pytest.param(b'"x"', JSON, 400, ("json object", "str"), id="string"),
    pytest.param(b"1", JSON, 400, ("json object", "int"), id="number"),
    pytest.param(b"", JSON, 400, ("empty",), id="empty"),
    pytest.param(b" \r\n", JSON, 400, ("empty",), id="whitespace"),
    pytest.param(b" " * (MAX_BODY + 1), JSON, 413, (str(MAX_BODY),), id="max-body-plus-one"),
    pytest.param(GOOD[:30], JSON, 400, ("truncated",), id="truncated-json"),
    pytest.param(GOOD + b"x", JSON, 400, ("trailing",), id="trailing-bytes"),
    pytest.param(b'{"model":"chat","messages":[{"role":"user","content":"a\x00b"}]}', JSON, 400,
                 ("not valid json", "byte 55"), id="nul-in-a-string"),
    pytest.param(GOOD + b"\x00", JSON, 400, ("not valid json",), id="nul-after-the-object"),
    pytest.param(b'{"model":"chat","messages":[{"role":"user","content":"\\ud800"}]}', JSON, 400,
                 ("surrogate", "byte 54"), id="lone-surrogate-escape"),
    pytest.param(b'{"model":"chat","messages":[{"role":"user","content":"\\udc00"}]}', JSON, 400,
                 ("surrogate",), id="lone-low-surrogate-escape"),
    pytest.param(GOOD[:-1] + b',"x":1e400}', JSON, 400, ("out of range",), id="huge-float"),
    pytest.param(GOOD[:-1] + b',"x":1' + b"0" * 5000 + b"}", JSON, 400, ("out of range",), id="huge-integer"),
    pytest.param(GOOD[:-1] + b',"temperature":1e300}', JSON, 400, ("temperature",), id="huge-temperature"),
    pytest.param(b'\xef\xbb\xbf' + GOOD, JSON, 400, ("not valid json",), id="utf8-bom"),
    pytest.param(b'{"model":"chat","messages":[]}', JSON, 400, ("messages",), id="no-messages"),
    pytest.param(GOOD.replace(b'"user"', b'"root"'), JSON, 400, ("role",), id="bad-role"),
    pytest.param(b"{not json", JSON, 400, ("not valid json",), id="not-json"),
    pytest.param(b"model=chat&messages=hi", {"Content-Type": "application/x-www-form-urlencoded"}, 400,
                 ("not valid json",), id="a-form"),
]


@pytest.mark.parametrize(("body", "headers", "status", "words"), BAD_BODIES)
async def test_a_malformed_body_is_a_4xx_naming_the_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, headers: dict[str, str], status: int,
    words: tuple[str, ...],
) -> None:
    """Each malformed body gets its 4xx with an OpenAI-shaped error; no traceback; the service goes on."""
    caplog.set_level(logging.INFO)
    a = FakeUpstream("a")
    async with service(tmp_path, a) as s:
        got, answer = await send(s, body, headers)
        assert got == status, answer
        assert_error(answer, *words)
        assert a.completions == 0
        await still_serves(s)
    assert_no_traceback(caplog.records)


ACCEPTED: list[Any] = [
    pytest.param(nested(MAX_DEPTH), JSON, id="nesting-at-the-limit"),
    pytest.param(deep_tool(MAX_DEPTH), JSON, id="tool-schema-at-the-limit"),
    pytest.param(gzip.compress(GOOD), {**JSON, "Content-Encoding": "gzip"}, id="gzip"),
    pytest.param(gzip.compress(GOOD[:20]) + gzip.compress(GOOD[20:]), {**JSON, "Content-Encoding": "GZip"},
                 id="gzip-in-two-members"),
    pytest.param(gzip.compress(GOOD), {**JSON, "Content-Encoding": "x-gzip"}, id="x-gzip"),
    pytest.param(zlib.compress(GOOD), {**JSON, "Content-Encoding": "deflate"}, id="deflate"),
    pytest.param(raw_deflate(GOOD), {**JSON, "Content-Encoding": "deflate"}, id="raw-deflate"),
    pytest.param(GOOD, {**JSON, "Content-Encoding": "identity"}, id="identity"),
    pytest.param(GOOD, {"Content-Type": "text/plain"}, id="json-labelled-text"),
    pytest.param(GOOD[:-1] + b',"model":"chat"}', JSON, id="duplicate-keys"),
    pytest.param(b'{"model":"chat","messages":[{"role":"user","content":"\\ud83d\\ude00 \xc3\xa9"}]}', JSON,
                 id="surrogate-pair-and-utf8"),
    pytest.param(GOOD[:-1] + b',"x":18446744073709551616}', JSON, id="integer-over-64-bits"),
]


@pytest.mark.parametrize(("body", "headers"), ACCEPTED)
async def test_an_unusual_good_body_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, headers: dict[str, str]
) -> None:
    """Valid but unusual bodies are served as any other: the provider gets the parsed request."""
    caplog.set_level(logging.INFO)
    a = FakeUpstream("a")
    async with service(tmp_path, a) as s:
        status, answer = await send(s, body, headers)
        assert status == 200, answer
    assert a.completions == 1
    sent = a.requests[0].body
    assert sent is not None
    assert sent["model"] == "a-model"
    assert_no_traceback(caplog.records)


async def test_duplicate_keys_keep_the_last(tmp_path: Path) -> None:
    """A key given twice counts once, with its last value (as Python's json does)."""
    a = FakeUpstream("a")
    async with service(tmp_path, a) as s:
        status, _ = await send(s, GOOD[:-1] + b',"user":"first","user":"last"}')
        assert status == 200
    sent = a.requests[0].body
    assert sent is not None
    assert sent["user"] == "last"


async def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    """Without a Content-Length the cap holds too: the read stops past server.max_body_bytes."""
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    async with service(tmp_path, FakeUpstream("a"), server={"max_body_bytes": 1_000_000}) as s:
        with anyio.fail_after(10):
            async with s.session.post(s.url + "/v1/chat/completions", data=chunks(), headers=JSON) as resp:
                status, answer = resp.status, await resp.json()
        assert status == 413
        assert_error(answer, "1000000")
        await still_serves(s)


def test_lines_log_one_line_per_kind_per_window(caplog: pytest.LogCaptureFixture) -> None:
    """A kind logs once per window; the next line says how many were left out; kinds are separate."""
    caplog.set_level(logging.DEBUG, logger="tests.lines")
    now = [0.0]
    lines = Lines(logging.getLogger("tests.lines"), window_s=10, clock=lambda: now[0])
    assert [lines.emit(logging.WARNING, "a", f"a{i}") for i in range(4)] == [True, False, False, False]
    assert lines.emit(logging.INFO, "b", "b0")
    now[0] = 10.0
    assert lines.emit(logging.WARNING, "a", "a4")
    assert not lines.emit(logging.WARNING, "a", "a5")
    assert [r.getMessage() for r in caplog.records if r.name == "tests.lines"] == [
        "a0", "b0", "a4 (and 3 more like it in the 10 s before, not logged)"]


def test_server_log_keeps_a_real_bug_s_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """What aiohttp logs that is not the client's doing keeps its traceback, once."""
    log = ServerLog(Lines(logging.getLogger("actors.gateway")))
    try:
        raise RuntimeError("a bug")
    except RuntimeError as exc:
        log.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
        log.exception("Unhandled exception")
    bugs = [r for r in caplog.records if r.exc_info]
    assert [r.levelno for r in bugs] == [logging.ERROR, logging.ERROR]
    assert all(isinstance(r.exc_info[1], RuntimeError) for r in bugs if r.exc_info)


# -------------------------------------------------------------- malformed HTTP


async def exchange(s: Service, data: bytes, *, hang_up: bool = False) -> bytes:
    """Send raw bytes over TCP; what the service answers until it closes (or 5 s pass)."""
    port = int(s.url.rsplit(":", 1)[1])
    answer = bytearray()
    async with await anyio.connect_tcp("127.0.0.1", port) as conn:
        await conn.send(data)
        if hang_up:
            await anyio.sleep(0.2)  # the handler is reading the body by now
            return b""
        with anyio.move_on_after(5):
            try:
                async for chunk in conn:
                    answer += chunk
            except (anyio.BrokenResourceError, ConnectionError):
                pass
    return bytes(answer)


POST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
MALFORMED_HTTP: list[Any] = [
    pytest.param(b"GARBAGE\r\n\r\n", b"Invalid method", id="bad-request-line"),
    pytest.param(b"POST /v1/chat/completions HTTP/9\r\n\r\n", b"status line", id="bad-http-version"),
    pytest.param(POST + b"NoColonHere\r\n\r\n", b"header", id="header-without-colon"),
    pytest.param(POST + b"Content-Length: abc\r\n\r\n", b"Content-Length", id="content-length-not-a-number"),
    pytest.param(POST + b"Content-Length: -1\r\n\r\n", b"Content-Length", id="negative-content-length"),
    pytest.param(POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", b"Content-Length",
                 id="two-content-lengths"),
    pytest.param(POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", b"Transfer-Encoding",
                 id="length-and-chunked"),
    pytest.param(POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", b"chunk",
                 id="bad-chunk-size"),
    pytest.param(POST + b"X-Long: " + b"a" * 10_000 + b"\r\n\r\n", b"8190", id="header-too-long"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), b"HTTPS", id="tls-hello"),
]


@pytest.mark.parametrize(("data", "named"), MALFORMED_HTTP)
async def test_malformed_http_is_a_400_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, named: bytes
) -> None:
    """aiohttp answers what it cannot parse with a 4xx naming it; the log gets one line, no traceback."""
    caplog.set_level(logging.DEBUG, logger="actors.gateway")
    caplog.set_level(logging.INFO)
    async with service(tmp_path, FakeUpstream("a")) as s:
        answer = await exchange(s, data)
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line[:10] in (b"HTTP/1.0 4", b"HTTP/1.1 4"), answer
        assert named.lower() in rest.lower(), answer
        await still_serves(s)
    lines = [r for r in caplog.records if r.name == "actors.gateway" and "malformed HTTP" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert "\n" not in lines[0].getMessage()
    assert_no_traceback(caplog.records)


class Seen(logging.Handler):
    """Sets ``event`` when a record whose message holds ``text`` goes by."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.event = text, anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_client_hanging_up_mid_body_is_one_line_per_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hang-ups mid-body log one INFO line (no traceback) per 10 s, however many there are."""
    caplog.set_level(logging.INFO)
    seen = Seen("disconnected")
    logging.getLogger("actors.gateway").addHandler(seen)
    try:
        async with service(tmp_path, FakeUpstream("a")) as s:
            for _ in range(5):
                await exchange(s, POST + b"Content-Length: 1000\r\n\r\n" + GOOD[:20], hang_up=True)
            with anyio.fail_after(5):
                await seen.event.wait()
            await still_serves(s)
    finally:
        logging.getLogger("actors.gateway").removeHandler(seen)
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO
    assert_no_traceback(caplog.records)


async def test_a_short_body_then_eof_is_no_5xx(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A body shorter than its Content-Length, the write side then closed: no 5xx, no traceback."""
    caplog.set_level(logging.INFO)
    async with service(tmp_path, FakeUpstream("a")) as s:
        port = int(s.url.rsplit(":", 1)[1])
        answer = bytearray()
        async with await anyio.connect_tcp("127.0.0.1", port) as conn:
            await conn.send(POST + b"Content-Length: 1000\r\n\r\n" + GOOD)
            await conn.send_eof()
            with anyio.move_on_after(5):
                try:
                    async for chunk in conn:
                        answer += chunk
                except (anyio.BrokenResourceError, ConnectionError):
                    pass
        assert not answer.startswith(b"HTTP/1.1 5"), answer
        await still_serves(s)
    assert_no_traceback(caplog.records)


# -------------------------------------------------------------- fuzz

SEED = 20240611
FUZZ_REQUESTS = 1500  # per event loop backend: about 2 s
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", "", "*/*"]
ENCODINGS = [*[None] * 12, "gzip", "gzip", "deflate", "identity", "br", "zstd", "gzip, deflate", "x-gzip",
             "GZIP", "compress", "*", ","]
INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]
GOOD_BODY = (b'{"model":"chat","stream":false,"temperature":0.7,"messages":[{"role":"system","content":"be brief"},'
             b'{"role":"user","content":[{"type":"text","text":"hi \\u00e9 \\"q\\""}]}],"tools":[],"n":1}')


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a few bytes
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:  # truncate
            del data[at:]
        elif op == 2:  # random bytes
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:  # deep brackets, balanced or not
            depth = rng.choice([MAX_DEPTH - 2, MAX_DEPTH, MAX_DEPTH + 1, 500, 5000, 50_000])
            open_, close = rng.choice([(b"[", b"]"), (b'{"k":', b"}")])
            data[at:at] = open_ * depth + (b"1" + close * depth if rng.random() < 0.5 else b"")
        elif op == 4:  # invalid UTF-8
            data[at:at] = rng.choice(INVALID_UTF8)
        elif op == 5:  # a JSON-ish token where it may not belong
            data[at:at] = rng.choice([b'"', b"\\", b"\\ud800", b",", b":", b"{", b"]", b"null", b"1e999", b"\x00"])
        else:  # a large value
            data[at:at] = b'"' + b"a" * rng.randint(100, 100_000) + b'"'
        if not data:
            break
    return bytes(data)


def fuzz_case(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    body = mutate(rng, GOOD_BODY) if rng.random() < 0.9 else GOOD_BODY
    headers: dict[str, str] = {}
    content_type = rng.choice(CONTENT_TYPES)
    if content_type is not None:
        headers["Content-Type"] = content_type
    encoding = rng.choice(ENCODINGS)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if encoding.lower() in ("gzip", "x-gzip") and rng.random() < 0.7:
            body = gzip.compress(body)
        elif encoding == "deflate" and rng.random() < 0.7:
            body = zlib.compress(body)
        if rng.random() < 0.2 and body:  # and then damage the compressed bytes
            cut = bytearray(body)
            cut[rng.randrange(len(cut))] ^= 1 << rng.randrange(8)
            body = bytes(cut[: rng.randint(1, len(cut))])
    return body, headers


async def fuzz(s: Service, seed: int, requests: int) -> Counter[tuple[int, str | None]]:
    """Send ``requests`` mutations drawn from ``seed``; the answers counted by status and error code."""
    rng = random.Random(seed)
    counts: Counter[tuple[int, str | None]] = Counter()
    for _ in range(requests):
        body, headers = fuzz_case(rng)
        async with s.session.post(s.url + "/v1/chat/completions", data=body, headers=headers) as resp:
            status, raw = resp.status, await resp.read()
        assert status < 500, (status, raw[:300], body[:300], headers)
        answer = msgspec.json.decode(raw) if status >= 400 else None
        if answer is not None:
            assert_error(answer)
        counts[status, answer["error"]["code"] if answer is not None else None] += 1
    return counts


async def test_fuzzed_requests_get_no_5xx_and_log_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seeded mutations of a good request: every answer is below 500, every 4xx is OpenAI-shaped,
    and no log record carries a traceback."""
    caplog.set_level(logging.INFO)
    async with service(tmp_path, FakeUpstream("a")) as s:
        with anyio.fail_after(120):
            counts = await fuzz(s, SEED, FUZZ_REQUESTS)
        await still_serves(s)
    by_status = Counter[int]()
    for (status, _), n in counts.items():
        by_status[status] += n
    print(f"\nfuzz, seed {SEED}, {FUZZ_REQUESTS} requests: by status {dict(sorted(by_status.items()))}; "
          f"by status and code {dict(sorted(counts.items(), key=str))}")
    assert sum(n for status, n in by_status.items() if status >= 400) > FUZZ_REQUESTS // 2  # it reaches the checks
    assert_no_traceback(caplog.records)
