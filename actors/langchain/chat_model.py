"""FallbackChatModel: a LangChain chat model answered by an embedded Supervisor, with failover.

Built from a config (``config_path=`` or ``config=``) it owns its Supervisor
and runs it on a private event loop in a daemon thread (see
:mod:`actors.langchain.host`): that one loop serves sync calls, async calls
from any loop, and one ``asyncio.run`` after another. Built over a running
``supervisor=`` (constructed inside its loop, or with ``loop=``) it calls it
directly from that loop, hops onto that loop from other threads and loops,
and never closes it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import msgspec
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput, ModelProfile
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field, PrivateAttr

from actors.core.config import Config, load_config
from actors.langchain.convert import (
    ToolLike,
    chain_profile,
    chat_result,
    generation_chunk,
    openai_messages,
    openai_tool_choice,
    openai_tools,
    reply_metadata,
)
from actors.langchain.host import Engine, Guest, Host, Opened
from actors.runtime.replies import ChatReply
from actors.runtime.supervisor import Supervisor

__all__ = ("FallbackChatModel",)

_decode = msgspec.json.Decoder().decode
_NOT_BODY = frozenset({"stream"})  # call kwargs LangChain may pass that are not request fields


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class FallbackChatModel(BaseChatModel):
    """A LangChain chat model over provider-fallback's Supervisor: one logical model, many providers.

    ::

        llm = FallbackChatModel(config_path="config.toml", model="chat")
        reply = llm.invoke("hi")
        reply.response_metadata["provider"], reply.response_metadata["fallbacks"]
        llm.close()                      # or: with FallbackChatModel(...) as llm: ...

        async with Supervisor(load_config("config.toml")) as fallback:
            llm = FallbackChatModel(supervisor=fallback, model="chat")
            await llm.ainvoke("hi")

    Give exactly one of ``config_path``, ``config`` and ``supervisor``.
    ``response_metadata`` holds ``provider`` (who answered), ``attempts``,
    ``attempt_log`` (each failed attempt before: provider, status, category,
    message, latency_ms), ``fallbacks`` (the providers it fell back from),
    ``logical_model``, ``model_name`` (the upstream model) and
    ``finish_reason``; a stream broken mid-answer and continued elsewhere also has
    ``continued``, ``parts`` (who wrote what) and ``finished_by``. A call's
    ``fallback={"providers": [...]}`` or ``fallback={"enabled": False}`` pins
    the chain or turns fallback off for it. The library's errors reach the caller as they are:
    :class:`~actors.AllProvidersFailedError` (``.attempts``),
    :class:`~actors.UpstreamRejectedError` (``.provider``, ``.status``),
    :class:`~actors.StreamInterruptedError` (``.partial_text``), ...
    """

    model: str | None = None
    """The logical model (``None``: the config's ``routing.default_model``)."""
    config_path: str | None = None
    config: Config | None = Field(default=None, exclude=True, repr=False)
    supervisor: Supervisor | None = Field(default=None, exclude=True, repr=False)
    loop: asyncio.AbstractEventLoop | None = Field(default=None, exclude=True, repr=False)
    """The event loop a given ``supervisor`` runs in (default: the one running at construction)."""
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More OpenAI request fields for every call (``top_p``, ``seed``, ``response_format``...)."""
    stream_usage: bool = True
    """Ask streams for a final usage chunk (``stream_options.include_usage``)."""

    _host: Host = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        given = [key for key in ("config_path", "config", "supervisor") if data.get(key) is not None]
        if len(given) != 1:
            raise ValueError("FallbackChatModel needs exactly one of config_path=, config= or supervisor=, "
                             f"got {', '.join(given) or 'none'}")
        path = data.get("config_path")
        if path is not None:
            data["config_path"] = os.fspath(path)
            data["config"] = load_config(data["config_path"])  # a ConfigError names the file and key
        supervisor = data.get("supervisor")
        if supervisor is not None:
            if not isinstance(supervisor, Supervisor):
                raise TypeError(f"supervisor= must be an actors.Supervisor, got {type(supervisor).__name__}")
            data["config"] = supervisor.config
            data["loop"] = data.get("loop") or _running_loop()
            if data["loop"] is None:
                raise ValueError("supervisor=: construct the model inside the loop that entered the "
                                 "Supervisor ('async with Supervisor(...)'), or pass loop=")
        elif data.get("loop") is not None:
            raise ValueError("loop= goes with supervisor=; a model built from a config runs its own loop")
        super().__init__(**data)
        assert self.config is not None
        if self.supervisor is not None and self.loop is not None:
            self._host = Guest(self.supervisor, self.loop)
        else:
            self._host = Engine(self.config)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Start the Supervisor this model owns now (else the first call does); no-op for a given one."""
        if isinstance(self._host, Engine):
            self._host.start()

    def close(self) -> None:
        """Stop the Supervisor this model owns (drained, state flushed); a given one is left running."""
        self._host.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        if isinstance(self._host, Engine):
            await self._host.aclose()

    def __enter__(self) -> FallbackChatModel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> FallbackChatModel:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- what LangChain asks of a chat model ------------------------------------
    @property
    def _llm_type(self) -> str:
        return "provider-fallback"

    @property
    def _identifying_params(self) -> Mapping[str, Any]:
        return {"model": self._logical(), "temperature": self.temperature, "max_tokens": self.max_tokens,
                **self.model_kwargs}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "provider-fallback"
        params["ls_model_name"] = str(kwargs.get("model") or self._logical())
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        return chain_profile(self.config, self._logical()) if self.config is not None else None

    def _logical(self) -> str:
        assert self.config is not None
        return self.model or self.config.routing.default_model

    def _body(self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any],
              *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.model_kwargs)
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if stop or self.stop:
            body["stop"] = stop or self.stop
        body.update((k, v) for k, v in kwargs.items() if k not in _NOT_BODY and v is not None)
        body["messages"] = openai_messages(messages)
        body["model"] = body.get("model") or self._logical()
        if stream and self.stream_usage:
            body["stream_options"] = {"include_usage": True, **(body.get("stream_options") or {})}
        return body

    @staticmethod
    def _result(reply: ChatReply) -> ChatResult:
        meta = reply_metadata(provider=reply.provider, attempts=reply.attempts, attempt_log=reply.attempt_log,
                              model=reply.model)
        return chat_result(reply.body, meta)

    @staticmethod
    def _chunk(item: Opened | bytes, model: str) -> ChatGenerationChunk | None:
        if isinstance(item, Opened):  # before any token: who answers, after what
            meta = reply_metadata(provider=item.provider, attempts=item.attempts,
                                  attempt_log=item.attempt_log, model=model)
            return ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=meta))
        payload = _decode(item)
        return generation_chunk(payload) if isinstance(payload, dict) else None

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        body = self._body(messages, stop, kwargs, stream=False)
        return self._result(self._host.run(lambda supervisor: supervisor.complete(body)))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                         ) -> ChatResult:
        body = self._body(messages, stop, kwargs, stream=False)
        return self._result(await self._host.arun(lambda supervisor: supervisor.complete(body)))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        body = self._body(messages, stop, kwargs, stream=True)
        for item in self._host.stream(body):
            if (chunk := self._chunk(item, body["model"])) is not None:
                yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        body = self._body(messages, stop, kwargs, stream=True)
        async for item in self._host.astream(body):
            if (chunk := self._chunk(item, body["model"])) is not None:
                yield chunk

    def bind_tools(self, tools: Sequence[ToolLike], *, tool_choice: str | bool | dict[str, Any] | None = None,
                   strict: bool | None = None, parallel_tool_calls: bool | None = None, **kwargs: Any
                   ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (dicts, pydantic models, functions, BaseTools) as OpenAI ``tools``.

        ``tool_choice``: "auto", "none", "required" (or "any"), a tool's name, or True for the
        only tool. The Supervisor translates for providers that speak another dialect.
        """
        formatted = openai_tools(tools, strict=strict)
        choice = openai_tool_choice(tool_choice, formatted)
        if choice is not None:
            kwargs["tool_choice"] = choice
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)
