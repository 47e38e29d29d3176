"""The floor under the gateway benchmark: a proxy with no logic at all. Prints numbers; asserts nothing.

    python bench/bench_floor.py [--requests 20000] [--concurrency 16]

Same harness as bench_gateway.py (one 0-latency FakeUpstream and one aiohttp
client in this process, alternating direct and proxied rounds), but the
process in the middle is a bare aiohttp pass-through: read the body, POST it
to the upstream with one ClientSession, answer with the upstream's bytes.
No validation, no actors, no event log, no metrics. Under uvloop, like run.py.
Whatever this adds is what the aiohttp server + client stack costs per hop on
this machine; the gateway cannot add less.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import aiohttp
import anyio
from aiohttp import web
from bench_gateway import compare, free_port, wait_listening

from actors.testing import FakeUpstream

_PROXY = "--serve-proxy"


def serve_proxy(port: int, upstream: str) -> None:
    """The bare proxy (runs in the child process)."""
    import asyncio

    import uvloop

    async def main() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=256))
        headers = {"Content-Type": "application/json"}

        async def completions(request: web.Request) -> web.Response:
            body = await request.read()
            async with session.post(upstream, data=body, headers=headers) as resp:
                raw = await resp.read()
            return web.Response(body=raw, status=resp.status, content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_get("/healthz", lambda _r: _ok())
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    async def _ok() -> web.Response:
        return web.Response(text="ok")

    uvloop.run(main())


async def main(n: int, concurrency: int) -> None:
    async with FakeUpstream("floor") as fake:
        port = free_port()
        direct_url = fake.base_url + "/chat/completions"
        proc = subprocess.Popen([sys.executable, __file__, _PROXY, str(port), direct_url])
        try:
            proxy = f"http://127.0.0.1:{port}"
            connector = aiohttp.TCPConnector(limit=concurrency * 2)
            async with aiohttp.ClientSession(connector=connector) as session:
                await wait_listening(session, proxy)
                await compare(session, direct_url, proxy + "/v1/chat/completions", n, concurrency,
                              "bare aiohttp proxy, ", "proxy")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == _PROXY:
        serve_proxy(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    parser = argparse.ArgumentParser(description="bare aiohttp proxy vs direct")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    anyio.run(main, args.requests, args.concurrency, backend_options={"use_uvloop": True})
