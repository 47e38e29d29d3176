"""The status page: ``GET /`` and ``GET /ui/``, its assets under ``/ui/assets/``, and ``GET /status/history``.

The page is plain HTML, CSS and JavaScript (``static/``: no build step). It
polls ``/status`` every few seconds and ``/status/history`` (the timeline,
latency charts and fallback log: :mod:`actors.runtime.history`) more
rarely, and never reloads. Every asset ships in the package, uPlot vendored
from its npm release beside its licence (``static/vendor/VENDORED.md``), so
the page works with no internet; its Content-Security-Policy lets it load
nothing from anywhere else. Its URLs are relative, so it also works behind a
proxy that mounts the gateway under a path. An admin token typed into the
page stays in a JavaScript variable: never a URL, storage or a cookie. The
files are read and gzipped once, when the app is made (about 40 kB reach the browser).

``/status/history?hours=N`` takes N from 1 to 168 (default 24); anything else
is a 400 naming ``hours``.
"""

from __future__ import annotations

import gzip
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from actors.core.errors import InvalidRequestError, SupervisorClosedError
from actors.gateway.http import json_response
from actors.runtime.history import MAX_HOURS, load_history
from actors.runtime.supervisor import Supervisor

__all__ = ("add_ui_routes",)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    gzipped: bytes  # compressed once, at start: a phone on a slow link loads uPlot in a third of the bytes

    @classmethod
    def of(cls, body: bytes, content_type: str) -> _Asset:
        return cls(body, content_type, gzip.compress(body, mtime=0))

    def response(self, request: web.Request, headers: dict[str, str]) -> web.Response:
        """The asset, gzipped when the client takes gzip."""
        zipped = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        extra = {"Content-Encoding": "gzip"} if zipped else {}
        return web.Response(body=self.gzipped if zipped else self.body, content_type=self.content_type,
                            charset="utf-8", headers={**headers, **extra, "Vary": "Accept-Encoding"})


#: URL name -> (file under static/, content type). Nothing else under /ui/assets/ is served.
_FILES = {
    "app.js": ("app.js", "text/javascript"),
    "app.css": ("app.css", "text/css"),
    "uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript"),
    "uPlot.min.css": ("vendor/uPlot.min.css", "text/css"),
    "uPlot.LICENSE": ("vendor/uPlot.LICENSE", "text/plain"),
    "VENDORED.md": ("vendor/VENDORED.md", "text/markdown"),
}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _read(name: str) -> bytes:
    return resources.files("actors.gateway").joinpath("static", *name.split("/")).read_bytes()


def _page(assets: str, root: str) -> bytes:
    """The page with its asset prefix and the gateway's root, both relative to where it is served."""
    html = _read("index.html").decode()
    return html.replace("{{assets}}", assets).replace("{{root}}", root).encode()


def _hours(request: web.Request) -> int:
    raw = request.query.get("hours", "24")
    try:
        hours = int(raw)
    except ValueError:
        hours = 0
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidRequestError(f"'hours' must be an integer from 1 to {MAX_HOURS}, got {raw!r}",
                                  param="hours")
    return hours


def _history_route(supervisor: Supervisor) -> _Handler:
    async def history(request: web.Request) -> web.StreamResponse:
        hours = _hours(request)
        store = supervisor.store
        if store is None:
            raise SupervisorClosedError("the supervisor is not running")
        await store.flush()  # what just happened is in it
        doc = await load_history(store, supervisor.routing, now=supervisor.clock.now(), hours=hours)
        return json_response(doc, headers={"Cache-Control": "no-store"})

    return history


def add_ui_routes(app: web.Application, supervisor: Supervisor) -> None:
    """Register the page, its assets and ``/status/history`` on ``app``."""
    # Read once: the assets are small, and a broken install fails at start, not on a click.
    assets = {name: _Asset.of(_read(path), kind) for name, (path, kind) in _FILES.items()}
    pages = {"/": _Asset.of(_page("ui/assets/", "./"), "text/html"),
             "/ui/": _Asset.of(_page("assets/", "../"), "text/html")}
    page_headers = {**_HEADERS, "Content-Security-Policy": _CSP, "Cache-Control": "no-cache"}

    async def page(request: web.Request) -> web.StreamResponse:
        return pages[request.path].response(request, page_headers)

    async def asset(request: web.Request) -> web.StreamResponse:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return found.response(request, {**_HEADERS, "Cache-Control": "max-age=300"})

    async def ui(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("ui/")  # relative: right behind a proxy that mounts us under a path

    app.router.add_get("/", page)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui", ui)
    app.router.add_get("/ui/assets/{name}", asset)
    app.router.add_get("/status/history", _history_route(supervisor))
