"""A worked example: an aiohttp service that embeds the Supervisor and runs a LangChain tool-calling
agent on :class:`~actors.langchain.FallbackChatModel`, with no HTTP hop to a gateway.

Run it (needs the ``langchain`` extra; providers and keys as in config.toml)::

    pip install -e '.[langchain]'
    python examples/agent_service.py --config config.toml --port 8090
    curl -s localhost:8090/ask -d '{"question": "What is the weather in Paris?"}'

``POST /ask`` ``{"question": "..."}`` runs the agent: the model may call the tools below (a weather
lookup and a calculator) and sees their results, for at most ``MAX_STEPS`` model calls; the answer
names the provider that gave the final answer and every provider the failover tried on the way.
``GET /status`` is the Supervisor's status document. The same Supervisor serves every request:
one process, one state file, one set of health checks.

This replaces the pattern of building a LiteLLM Router from a primary and a fallback and wrapping it
in a LangChain chat model: the failover, cooldowns and recovery happen inside FallbackChatModel.
"""

from __future__ import annotations

import argparse
import ast
import operator
from collections.abc import Callable
from typing import Any

from aiohttp import web
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from actors import Supervisor, load_config
from actors.langchain import FallbackChatModel, FallbackError

MAX_STEPS = 6
SUPERVISOR = web.AppKey("supervisor", Supervisor)
MODEL = web.AppKey("model", FallbackChatModel)

_WEATHER = {"paris": "sunny, 21 °C", "london": "light rain, 14 °C", "tokyo": "cloudy, 18 °C"}
_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return _WEATHER.get(city.strip().lower(), f"no weather data for {city}")


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression of numbers, + - * / and parentheses."""
    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError("only numbers and + - * / are allowed")
    try:
        return str(value(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"cannot evaluate {expression!r}: {exc}"


TOOLS: list[BaseTool] = [get_weather, calculate]


async def run_agent(model: FallbackChatModel, question: str) -> dict[str, Any]:
    """The agent loop: ask, run the tools it calls, give it their results, until it answers."""
    llm = model.bind_tools(TOOLS)
    by_name = {t.name: t for t in TOOLS}
    messages: list[BaseMessage] = [SystemMessage("Answer briefly. Use the tools when they help."),
                                   HumanMessage(question)]
    tried: list[str] = []
    for step in range(1, MAX_STEPS + 1):
        reply = await llm.ainvoke(messages)
        assert isinstance(reply, AIMessage)
        meta = reply.response_metadata
        # attempt_log: the tries that failed before the answer; then who answered.
        tried += [a["provider"] for a in meta.get("attempt_log", ())] + [meta.get("provider", "?")]
        messages.append(reply)
        if not reply.tool_calls:
            return {"answer": reply.content, "provider": meta.get("provider"), "steps": step,
                    "providers_tried": tried}
        for call in reply.tool_calls:
            chosen = by_name.get(call["name"])
            result = await chosen.ainvoke(call["args"]) if chosen else f"unknown tool {call['name']!r}"
            messages.append(ToolMessage(str(result), tool_call_id=call["id"] or "", name=call["name"]))
    return {"answer": None, "error": f"no answer within {MAX_STEPS} model calls", "steps": MAX_STEPS,
            "providers_tried": tried}


async def _ask(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    question = body.get("question") if isinstance(body, dict) else None
    if not isinstance(question, str) or not question.strip():
        return web.json_response({"error": 'send {"question": "..."} as JSON'}, status=400)
    try:
        return web.json_response(await run_agent(request.app[MODEL], question))
    except FallbackError as exc:  # every provider failed, or refused the request
        return web.json_response({"error": str(exc)}, status=503)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SUPERVISOR].status())


def create_app(supervisor: Supervisor, model: str = "chat") -> web.Application:
    """The service over a running Supervisor (entered by the caller, in this event loop)."""
    app = web.Application()
    app[SUPERVISOR] = supervisor
    app[MODEL] = FallbackChatModel(supervisor=supervisor, model=model)
    app.router.add_post("/ask", _ask)
    app.router.add_get("/status", _status)
    return app


async def main(config_path: str, host: str, port: int) -> None:
    import anyio

    async with Supervisor(load_config(config_path)) as supervisor:
        runner = web.AppRunner(create_app(supervisor))
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        print(f"agent service on http://{host}:{port} (POST /ask); Ctrl-C stops it")
        try:
            await anyio.sleep_forever()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config.toml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    import anyio

    try:
        anyio.run(main, args.config, args.host, args.port)
    except KeyboardInterrupt:
        pass
