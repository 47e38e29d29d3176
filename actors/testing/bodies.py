"""The bodies a :class:`~actors.testing.FakeUpstream` answers with: completions, SSE events, usage, health."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from actors.testing.faults import Fault

__all__ = ("completion", "health_body", "split", "sse", "usage")


def split(text: str, n: int) -> list[str]:
    """``text`` in ``n`` pieces of about the same length."""
    size, extra = divmod(len(text), n)
    bounds = [k * size + min(k, extra) for k in range(n + 1)]
    return [text[bounds[k]:bounds[k + 1]] for k in range(n)]


def sse(payload: Mapping[str, Any] | str) -> bytes:
    """One server-sent event."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def completion(name: str, count: int, fault: Fault, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion answering as ``fault`` says (a tool call when it names one)."""
    answer: dict[str, Any] = {
        "id": f"chatcmpl-{name}-{count}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": fault.text},
                     "finish_reason": "stop"}],
    }
    if fault.tool is not None:
        call = {"id": f"call_{name}_{count}", "type": "function",
                "function": {"name": fault.tool, "arguments": fault.text}}
        answer["choices"][0] = {"index": 0, "finish_reason": "tool_calls",
                                "message": {"role": "assistant", "content": None, "tool_calls": [call]}}
    if fault.usage:
        answer["usage"] = usage(fault, body)
    return answer

def usage(fault: Fault, body: dict[str, Any]) -> dict[str, int]:
    """Word counts: deterministic, and close enough for accounting tests."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    completion = len(fault.text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def health_body(name: str, models: list[str], path: str) -> dict[str, Any]:
    """What a health route answers: the model list, or a status."""
    if path.endswith("/models"):
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": name}
            for m in models]}
    return {"status": "healthy"}
