"""The zero-code path: LangChain's own ChatOpenAI (langchain-openai) pointed at the gateway.

No FallbackChatModel here: a stock LangChain model talks HTTP to ``python run.py``'s app, and the
failover behind it is invisible except in the headers it asks for.
"""

from __future__ import annotations

import operator
import os
from functools import reduce
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest

from actors.testing import FakeUpstream, error, ok
from tests.helpers import service

if find_spec("langchain_openai") is None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise RuntimeError("langchain-openai is missing: .ci/run installs it with the test extra")
    pytest.skip("needs langchain-openai (the test extra)", allow_module_level=True)

from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.anyio


async def test_chat_openai_through_the_gateway_falls_over_invisibly(tmp_path: Path) -> None:
    primary, backup = FakeUpstream("primary", default=error(503)), FakeUpstream("backup", default=ok("from backup"))
    # Our own httpx client, closed after (ChatOpenAI's default one outlives the test's event loop).
    async with service(tmp_path, primary, backup) as s, httpx.AsyncClient() as http:
        llm = ChatOpenAI(base_url=s.url + "/v1", model="chat", api_key="unused", max_retries=0,  # type: ignore[arg-type]
                         include_response_headers=True, http_async_client=http,
                         profile={"max_input_tokens": 32768, "tool_calling": True})
        reply = await llm.ainvoke("hi")
        streamed = reduce(operator.add, [c async for c in llm.astream("hi")])
        pinned = ChatOpenAI(base_url=s.url + "/v1", model="chat", api_key="unused", max_retries=0,  # type: ignore[arg-type]
                            include_response_headers=True, http_async_client=http,
                            default_headers={"x-fallback-providers": "backup"})
        direct = await pinned.ainvoke("hi")
    assert reply.content == streamed.content == direct.content == "from backup"
    assert reply.response_metadata["headers"]["x-fallback-provider"] == "backup"
    assert reply.response_metadata["headers"]["x-fallback-attempts"] == "2"
    assert direct.response_metadata["headers"]["x-fallback-attempts"] == "1"  # pinned: primary not asked
    assert llm.profile == {"max_input_tokens": 32768, "tool_calling": True}
    assert primary.completions == 1  # once: out of routing after its 503
