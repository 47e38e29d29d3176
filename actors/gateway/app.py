"""The HTTP gateway: an OpenAI-compatible service in front of a :class:`Supervisor`.

::

    async with Supervisor(config) as fallback:
        await serve(fallback, host="127.0.0.1", port=8080, stop=stop_event)

Routes (DESIGN.md, "HTTP API"): ``POST /v1/chat/completions`` (JSON, or SSE
with ``stream: true``), ``GET /v1/models``, ``/healthz``, ``/readyz``,
``/status``, ``/metrics`` (Prometheus), ``/events`` (filterable: :mod:`actors.gateway.events`),
``POST /admin/providers/{name}/disable|enable|probe``, and the status page (``/``, ``/ui/``) with
``/status/history`` (:mod:`actors.gateway.ui`).

Access: ``/v1/*`` asks for ``Authorization: Bearer <key>`` when client keys
are configured. ``/healthz``, ``/readyz``, ``/status``, ``/metrics``,
``/events`` and the status page are always open: the service listens on loopback, and these views
carry no secrets (put a guarding proxy in front before exposing it).
``/admin/*`` needs the admin token and refuses every call while none is set.

Promises: every error is OpenAI-shaped JSON (``{"error": {"message", "type",
"code", "param"}}``), never a traceback; every completion answer carries
``x-fallback-attempts``, plus ``x-fallback-provider`` when a provider
answered; a successful answer's body is the provider's bytes, untouched; a
stream that breaks after its first chunk ends with an SSE error event, never
a silent truncation; ``/metrics`` is computed at scrape time from the
supervisor's snapshots, so nothing is counted per request here.

Hostile input: a body is parsed once (:mod:`actors.gateway.body`): not UTF-8,
not a JSON object, nested deeper than 64, or compressed other than with
gzip/deflate, it gets a 4xx naming what is wrong. HTTP that aiohttp cannot
parse (a bad request line, a header without a colon, ...) is answered by
aiohttp itself with a plain-text 400; that, and a client hanging up, are one
rate-limited log line each (:mod:`actors.gateway.serverlog`), never a traceback.
"""

from __future__ import annotations

import errno
import hmac
import logging
from collections.abc import Callable, Sequence

import anyio
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from actors.core.config import Secret
from actors.core.errors import StreamInterruptedError
from actors.core.states import USABLE_STATES
from actors.gateway.body import read_body
from actors.gateway.events import events_route
from actors.gateway.http import (
    ATTEMPTS,
    PROVIDER,
    GatewayError,
    HTTPError,
    errors,
    failure,
    json_response,
    sse_error,
)
from actors.gateway.prometheus import SnapshotCollector
from actors.gateway.serverlog import Lines, ServerLog
from actors.gateway.ui import add_ui_routes
from actors.runtime.route import headers_route
from actors.runtime.supervisor import Supervisor

__all__ = ("SUPERVISOR", "create_app", "serve")

log = logging.getLogger("actors.gateway")

SUPERVISOR = web.AppKey("supervisor", Supervisor)
_REGISTRY = web.AppKey("registry", CollectorRegistry)
_LINES = web.AppKey("lines", Lines)  # client faults (malformed HTTP, hang-ups): rate-limited log lines
_BODY_MARGIN = 64 * 1024  # aiohttp's own cap sits above ours, so ours answers first


def _bearer_matches(request: web.Request, secrets: Sequence[Secret]) -> bool:
    """True when the Bearer token equals one of ``secrets``, compared in constant time."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode()
    matched = False
    for secret in secrets:  # no early exit: timing does not say which key matched
        matched |= hmac.compare_digest(given, secret.reveal().encode())
    return matched


def _check_client(request: web.Request) -> None:
    server = request.app[SUPERVISOR].config.server
    if server.client_keys and not _bearer_matches(request, server.client_keys):
        raise HTTPError(401, "a valid client key is required: send 'Authorization: Bearer <key>' with one "
                              f"of the keys in {server.client_keys_env}", code="invalid_api_key")


# -------------------------------------------------------------- completions


async def _completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: validate, then answer through the supervisor."""
    supervisor = request.app[SUPERVISOR]
    try:
        _check_client(request)
        body = await read_body(request, supervisor.config.server.max_body_bytes, request.app[_LINES])
        route = headers_route(request.headers)  # x-fallback-providers, x-fallback
        if body.get("stream"):
            stream = await supervisor.open_stream_body(body, validated=True, route=route)
        else:
            # Not complete(body): it passes ``messages`` both by position and by keyword.
            reply = await supervisor.complete(body, validated=True, route=route)
            return web.Response(body=reply.raw, content_type="application/json",
                                headers={PROVIDER: reply.provider, ATTEMPTS: str(reply.attempts)})
    except Exception as exc:
        return failure(exc, completion=True)
    async with stream:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           PROVIDER: stream.provider, ATTEMPTS: str(stream.attempts)})
        try:
            await resp.prepare(request)
            try:
                async for payload in stream:
                    await resp.write(b"data: " + payload + b"\n\n")
            except StreamInterruptedError as exc:
                await resp.write(sse_error(str(exc), "upstream_error", "stream_interrupted"))
            except ConnectionError:
                raise
            except Exception as exc:
                log.error("unexpected error in a stream from %s", stream.provider, exc_info=exc)
                await resp.write(sse_error(f"the gateway failed unexpectedly ({type(exc).__name__})",
                                            "server_error", "internal_error"))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionError:
            # The client went away; leaving the ``async with`` releases the upstream.
            request.app[_LINES].emit(logging.INFO, "stream-disconnect",
                                     f"client disconnected from a stream served by {stream.provider}")
    return resp


async def _models(request: web.Request) -> web.StreamResponse:
    """GET /v1/models: the logical models, in OpenAI's list shape."""
    _check_client(request)
    models = request.app[SUPERVISOR].config.models()
    return json_response({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": "provider-fallback"} for m in models]})


# -------------------------------------------------------------- operations


async def _healthz(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})  # the process runs; /readyz says whether it can serve


async def _readyz(request: web.Request) -> web.StreamResponse:
    """200 while some healthy or degraded provider serves the default model, else 503 with why."""
    supervisor = request.app[SUPERVISOR]
    model = supervisor.config.routing.default_model
    serving = {p.name for p in supervisor.config.providers if model in p.models}
    views = [v for v in supervisor.routing.providers if v.name in serving]
    ready = [v.name for v in views if v.state in USABLE_STATES]
    if ready:
        return json_response({"status": "ready", "model": model, "providers": ready})
    why = "; ".join(f"{v.name} is {v.state}" + (f" ({v.detail})" if v.detail else "") for v in views)
    return json_response({"status": "unavailable", "model": model,
                  "reason": f"no provider can serve {model!r} now: {why or 'none configured'}"}, 503)


async def _status(request: web.Request) -> web.StreamResponse:
    supervisor = request.app[SUPERVISOR]
    await supervisor.refresh()
    return json_response(supervisor.status())


async def _metrics(request: web.Request) -> web.StreamResponse:
    await request.app[SUPERVISOR].refresh()
    text = generate_latest(request.app[_REGISTRY])
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _admin(request: web.Request) -> web.StreamResponse:
    """POST /admin/providers/{name}/disable|enable|probe with the admin token."""
    supervisor = request.app[SUPERVISOR]
    server = supervisor.config.server
    if server.admin_token is None:
        raise HTTPError(403, f"admin endpoints are off: set {server.admin_token_env}",
                         type="permission_error", code="admin_disabled")
    if not _bearer_matches(request, [server.admin_token]):
        raise HTTPError(401, "send 'Authorization: Bearer <admin token>'", code="invalid_admin_token")
    name, action = request.match_info["name"], request.match_info["action"]
    if action == "probe":
        result = await supervisor.probe(name)
        log.warning("admin: %s probed (%s): %s, now %s", name, result["tier"],
                    "passed" if result["ok"] else "failed", result["state"])
        return json_response(result)
    state = await (supervisor.disable(name) if action == "disable" else supervisor.enable(name))
    log.warning("admin: %s %sd, now %s", name, action, state)
    return json_response({"provider": name, "state": state})


# -------------------------------------------------------------- the app


def create_app(supervisor: Supervisor) -> web.Application:
    """The aiohttp application serving ``supervisor`` (which must be running while it serves)."""
    limit = supervisor.config.server.max_body_bytes + _BODY_MARGIN
    app = web.Application(client_max_size=limit, middlewares=[errors])
    app[SUPERVISOR] = supervisor
    registry = CollectorRegistry(auto_describe=False)  # never the process-global registry
    registry.register(SnapshotCollector(supervisor))
    app[_REGISTRY] = registry
    app[_LINES] = Lines(log)
    app.router.add_post("/v1/chat/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/events", events_route(supervisor))
    app.router.add_post(r"/admin/providers/{name}/{action:disable|enable|probe}", _admin)
    add_ui_routes(app, supervisor)  # the status page, its assets and /status/history
    return app


async def serve(supervisor: Supervisor, *, host: str, port: int,
                on_ready: Callable[[str], None] | None = None, stop: anyio.Event | None = None,
                reuse_port: bool = False) -> None:
    """Serve the gateway until ``stop`` is set (or the task is cancelled), then shut down gracefully.

    Run it inside ``async with Supervisor(...)``. ``on_ready`` gets the base
    URL (with the real port when ``port`` is 0) once the socket listens. On
    the way out it stops accepting connections and gives in-flight requests
    ``server.shutdown_grace_s`` seconds to finish. Raises :class:`GatewayError`
    when it cannot listen. ``reuse_port``: several processes listen on one port (SO_REUSEPORT,
    ``run.py --workers N``), the kernel spreading connections between them.
    """
    app = create_app(supervisor)
    # logger: aiohttp logs a request it cannot parse through it (one line here, not a traceback);
    # auto_decompress off: read_body inflates gzip/deflate itself, capped at max_body_bytes.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, logger=ServerLog(app[_LINES]),
                           auto_decompress=False, shutdown_timeout=supervisor.config.server.shutdown_grace_s)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise GatewayError(f"cannot listen on {host}:{port}: address already in use; "
                                   "choose another with --port or [server].port") from exc
            raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        actual = runner.addresses[0][1] if runner.addresses else port
        url = f"http://{f'[{host}]' if ':' in host else host}:{actual}"
        log.debug("gateway listening on %s", url)
        if on_ready is not None:
            on_ready(url)
        if stop is None:
            await anyio.sleep_forever()
        else:
            await stop.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
