"""``run.py providers [list|enable|disable|probe] [NAME]``: operate on the running service.

``list`` shows the providers table (as ``status``); the others call the
service's admin endpoints with the admin token from the variable the config
names (``[server] admin_token_env``). The token is sent, never printed.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import aiohttp

from actors.cli.common import EXIT_FAILED, EXIT_OK, EXIT_STARTUP, fail, run_async, service_url
from actors.cli.status import cmd_status
from actors.core.config import load_config
from actors.core.errors import FallbackError

__all__ = ("cmd_providers", "post_admin")


async def post_admin(url: str, token: str, name: str, action: str) -> tuple[int, dict[str, Any]]:
    """POST ``/admin/providers/{name}/{action}``; the status and the JSON answer."""
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.post(f"{url.rstrip('/')}/admin/providers/{name}/{action}", headers=headers) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, body


def cmd_providers(args: argparse.Namespace) -> int:
    """``providers``: list (the status table), or enable / disable / probe NAME on the running service."""
    if args.action == "list":
        return cmd_status(args)
    if not args.name:
        fail(ValueError(f"providers {args.action} needs a provider NAME"))
        return EXIT_STARTUP
    try:
        config = load_config(args.config)
        token = os.environ.get(config.server.admin_token_env, "")
        if not token:
            raise FallbackError(f"set {config.server.admin_token_env} to the service's admin token")
        status, body = run_async(post_admin, args.url or service_url(config), token, args.name, args.action)
    except FallbackError as exc:
        fail(exc)
        return EXIT_STARTUP
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:
        fail(OSError(f"cannot reach the service: {exc}"))
        return EXIT_FAILED
    if status != 200:
        fail(ValueError(body.get("error", {}).get("message", f"HTTP {status}")))
        return EXIT_FAILED
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.action == "probe":
        verdict = "passed" if body.get("ok") else f"failed: {body.get('message') or body.get('status')}"
        print(f"{args.name}: {body.get('tier')} check {verdict} ({body.get('latency_ms')} ms);"
              f" now {body['state']}")
    else:
        print(f"{args.name}: now {body['state']}")
    return EXIT_OK
