"""The two systems under comparison, set up the same way: helpers for bench/run.py.

Ours: the library (:class:`actors.Supervisor`) and the service (``run.py`` in
its own process). LiteLLM: its ``Router`` in this process and its proxy server
(``litellm --config``) in its own process. Every upstream is a
:class:`actors.testing.FakeUpstream` on 127.0.0.1; nothing leaves the machine.

LiteLLM is imported lazily, with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` set
first, so it never fetches its model cost map from the network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from actors import Supervisor, parse_config

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before any litellm import, here and in children
os.environ.setdefault("LITELLM_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "BENCH_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-bench-upstream"
CLIENT_KEY = "sk-bench-" + secrets.token_hex(16)  # our client key and LiteLLM's master key
os.environ[KEY_ENV] = UPSTREAM_KEY


def msgs(tag: str) -> list[dict[str, str]]:
    """A one-message chat whose content tags the user request, so the fakes can tell them apart."""
    return [{"role": "user", "content": tag}]


def tag_of(body: dict[str, Any] | None) -> str | None:
    try:
        return str(body["messages"][0]["content"]) if body else None
    except (KeyError, IndexError, TypeError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    todo = [pid]
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                todo += [int(k) for k in kids]
        except (OSError, ValueError):
            continue
    return total / 1024


# ---------------------------------------------------------------- our side


def our_raw_config(providers: list[tuple[str, str]], *, timeout_s: float = 60, port: int = 0,
                   state_path: str, routing: dict[str, Any] | None = None,
                   provider_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Providers as (name, base_url) in priority order; periodic health checks off (probes stay on).

    `provider_extra` adds the same keys to every provider (``first_token_timeout_s``, ...).
    """
    return {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_grace_s": 1},
        "state": {"path": state_path},
        "routing": dict(routing or {}),
        "health": {"ping_interval_s": 0, "full_interval_s": 0, "api_interval_s": 0, "api_timeout_s": 5},
        "providers": [
            {"name": name, "base_url": url, "api_key_env": KEY_ENV, "priority": i + 1,
             "timeout_s": timeout_s, "models": {"chat": "fake-model"}, **(provider_extra or {})}
            for i, (name, url) in enumerate(providers)
        ],
    }


def our_supervisor(raw: dict[str, Any]) -> Supervisor:
    return Supervisor(parse_config(raw, env={KEY_ENV: UPSTREAM_KEY}))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(raw: dict[str, Any]) -> str:
    """Enough TOML for our config: tables, one nested table level, and [[providers]]."""
    out: list[str] = []
    for section, body in raw.items():
        if isinstance(body, list):
            for item in body:
                out.append(f"[[{section}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
            continue
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in body.items() if not isinstance(v, dict)]
        for k, v in body.items():
            if isinstance(v, dict):
                out.append(f"[{section}.{k}]")
                out += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- LiteLLM side


def litellm_module() -> Any:
    """Import litellm quietly (no telemetry, no cost-map download, errors only in the log)."""
    warnings.filterwarnings("ignore")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def litellm_router_settings(providers: list[tuple[str, str]], *, mode: str, num_retries: int | None,
                            timeout_s: float = 60, extra: dict[str, Any] | None = None,
                            ) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """(model_list, router settings, model to call) for `providers` in priority order.

    mode "order": one model group "chat", deployments with litellm_params.order 1, 2, ...
    mode "fallbacks": one group per provider, ``fallbacks=[{first: [the others]}]``.
    num_retries None leaves LiteLLM's default (2, openai.DEFAULT_MAX_RETRIES).
    """
    model_list = []
    for i, (name, url) in enumerate(providers):
        params: dict[str, Any] = {"model": "openai/fake-model", "api_base": url, "api_key": UPSTREAM_KEY,
                                  "timeout": timeout_s}
        if mode == "order":
            params["order"] = i + 1
        model_list.append({"model_name": "chat" if mode == "order" else name, "litellm_params": params})
    settings: dict[str, Any] = {"timeout": timeout_s}
    if num_retries is not None:
        settings["num_retries"] = num_retries
    if mode == "fallbacks" and len(providers) > 1:
        settings["fallbacks"] = [{providers[0][0]: [n for n, _ in providers[1:]]}]
    settings.update(extra or {})
    model = "chat" if mode == "order" else providers[0][0]
    return model_list, settings, model


def litellm_router(model_list: list[dict[str, Any]], settings: dict[str, Any]) -> Any:
    litellm_module()
    from litellm import Router

    return Router(model_list=model_list, **settings)


def describe_litellm(mode: str, num_retries: int | None, extra: dict[str, Any] | None = None) -> str:
    retries = "num_retries default (2)" if num_retries is None else f"num_retries={num_retries}"
    how = "deployments of one model_name with litellm_params.order" if mode == "order" else "fallbacks list"
    more = "".join(f", {k}={v}" for k, v in (extra or {}).items())
    return f"{how}, {retries}{more}"


# ---------------------------------------------------------------- processes


class Service:
    """A gateway in its own process: ours (run.py) or LiteLLM's proxy; started and stopped here."""

    def __init__(self, kind: str, url: str, proc: subprocess.Popen[bytes], tmp: str, health: str) -> None:
        self.kind, self.url, self.proc, self.tmp, self.health = kind, url, proc, tmp, health
        self.completions = self.url + "/v1/chat/completions"
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
        self.startup_s = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_ready(self, session: aiohttp.ClientSession, within_s: float = 120) -> None:
        start = time.perf_counter()
        with anyio.fail_after(within_s):
            while True:
                if self.proc.poll() is not None:
                    log = Path(self.tmp, "service.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n{log}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self.url + self.health) as r:
                        if r.status == 200:
                            break
                await anyio.sleep(0.1)
        self.startup_s = time.perf_counter() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_ours(tmp: str, providers: list[tuple[str, str]], **kw: Any) -> Service:
    port = free_port()
    raw = our_raw_config(providers, port=port, state_path=f"{tmp}/ours.db", **kw)
    cfg = Path(tmp, "ours.toml")
    cfg.write_text(to_toml(raw))
    env = {**os.environ, "FALLBACK_CLIENT_KEYS": CLIENT_KEY}
    log = open(Path(tmp, "service.log"), "wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--config", str(cfg),
                             "--port", str(port), "--log-level", "warning"],
                            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Service("ours", f"http://127.0.0.1:{port}", proc, tmp, "/healthz")


_UVICORN_LOG = {
    "version": 1, "disable_existing_loggers": False,
    "handlers": {"default": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": {"handlers": ["default"], "level": "WARNING"},
                "uvicorn.error": {"level": "WARNING"},
                "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False}},
}


def start_litellm_proxy(tmp: str, model_list: list[dict[str, Any]], router_settings: dict[str, Any]) -> Service:
    """``litellm --config`` with one uvicorn worker, no database, no telemetry, access log off."""
    port = free_port()
    config = {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {"telemetry": False, "suppress_debug_info": True, "drop_params": True},
        "general_settings": {"master_key": CLIENT_KEY, "disable_spend_logs": True},
    }
    cfg = Path(tmp, "litellm.yaml")
    cfg.write_text(json.dumps(config, indent=1))  # JSON is YAML
    logcfg = Path(tmp, "uvicorn-log.json")
    logcfg.write_text(json.dumps(_UVICORN_LOG))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_MASTER_KEY": CLIENT_KEY, "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "True"}
    env.pop("DATABASE_URL", None)
    exe = Path(sys.executable).with_name("litellm")
    log = open(Path(tmp, "service.log"), "wb")
    proc = subprocess.Popen([str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1", "--log_config", str(logcfg)],
                            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Service("litellm", f"http://127.0.0.1:{port}", proc, tmp, "/health/liveliness")


# ---------------------------------------------------------------- request pools


async def pool(fn: Callable[[int], Awaitable[Any]], n: int, concurrency: int, cap_s: float,
               ) -> tuple[list[Any], float]:
    """Call fn(0..n-1) from `concurrency` workers; stop starting new calls after cap_s. Returns results, seconds."""
    results: list[Any] = []
    nxt = 0
    start = time.perf_counter()
    deadline = start + cap_s

    async def worker() -> None:
        nonlocal nxt
        while nxt < n and time.perf_counter() < deadline:
            i = nxt
            nxt += 1
            results.append(await fn(i))

    with anyio.fail_after(cap_s + 120):  # a call already started gets up to 2 more minutes
        async with anyio.create_task_group() as tg:
            for _ in range(max(1, min(concurrency, n))):
                tg.start_soon(worker)
    return results, time.perf_counter() - start
