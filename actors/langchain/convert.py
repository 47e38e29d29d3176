"""Between LangChain and the OpenAI chat-completions shape the Supervisor speaks: pure functions, no I/O.

Out: LangChain messages, tools and ``tool_choice`` as an OpenAI request body
(an AIMessage's ``tool_calls`` become ``tool_calls`` with JSON ``arguments``;
a ToolMessage becomes a ``tool`` message with its ``tool_call_id``). Back:
a ``chat.completion`` body as :class:`ChatResult` (tool calls parsed, bad ones
kept as ``invalid_tool_calls``), each ``chat.completion.chunk`` as a
:class:`ChatGenerationChunk` (tool-call deltas as ``tool_call_chunks``), usage
as ``usage_metadata``. The answering provider, the number of attempts and the
attempts that failed before it go into ``response_metadata``, and a
:class:`ModelProfile` is worked out for a whole chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import ModelProfile
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    InvalidToolCall,
    ToolCall,
    ToolCallChunk,
    UsageMetadata,
)
from langchain_core.messages.utils import convert_to_openai_messages
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from actors.core.config import Config
from actors.core.errors import Attempt

__all__ = ("ToolLike", "chain_profile", "chat_result", "generation_chunk", "openai_messages",
           "openai_tool_choice", "openai_tools", "reply_metadata", "usage_metadata")

ToolLike = dict[str, Any] | type | Callable[..., Any] | BaseTool
_CHOICES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


# -- out ------------------------------------------------------------------------
def openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """The messages as OpenAI chat messages (``content`` is null beside tool calls, as OpenAI sends it)."""
    out = convert_to_openai_messages(list(messages))
    for message in out:
        if message.get("role") == "assistant" and message.get("tool_calls") and not message.get("content"):
            message["content"] = None
    return out


def openai_tools(tools: Sequence[ToolLike], *, strict: bool | None = None) -> list[dict[str, Any]]:
    """Dicts, pydantic models, TypedDicts, functions and BaseTools as OpenAI ``tools`` entries."""
    return [convert_to_openai_tool(tool, strict=strict) for tool in tools]


def openai_tool_choice(choice: str | bool | dict[str, Any] | None, tools: Sequence[Mapping[str, Any]]
                       ) -> str | dict[str, Any] | None:
    """LangChain's ``tool_choice`` as OpenAI's: "any" is "required", a tool's name forces that tool.

    ``True`` forces the only tool. Raises ValueError for a name no bound tool has.
    """
    names = [t["function"]["name"] for t in tools if isinstance(t.get("function"), Mapping)]
    if choice is None or choice is False:
        return None
    if isinstance(choice, dict):
        return choice
    if choice is True:
        if len(names) != 1:
            raise ValueError(f"tool_choice=True needs exactly one tool, got {len(names)}")
        choice = names[0]
    if choice in _CHOICES:
        return _CHOICES[choice]
    if choice not in names:
        raise ValueError(f"tool_choice {choice!r} is none of the bound tools ({', '.join(names)}) "
                         f"and not one of {', '.join(_CHOICES)}")
    return {"type": "function", "function": {"name": choice}}


# -- back -----------------------------------------------------------------------
def usage_metadata(usage: Any) -> UsageMetadata | None:
    """OpenAI ``usage`` as LangChain's (cached input and reasoning tokens in the details)."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    result = UsageMetadata(input_tokens=prompt, output_tokens=completion,
                           total_tokens=int(usage.get("total_tokens") or prompt + completion))
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        result["input_token_details"] = {"cache_read": int(cached)}
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is not None:
        result["output_token_details"] = {"reasoning": int(reasoning)}
    return result


def reply_metadata(*, provider: str, attempts: int, attempt_log: Iterable[Attempt], model: str
                   ) -> dict[str, Any]:
    """Who answered after how many attempts, the failed attempts before, the providers fallen back from."""
    log = [asdict(a) for a in attempt_log]
    fallbacks = list(dict.fromkeys(a["provider"] for a in log if a["provider"] != provider))
    return {"provider": provider, "attempts": attempts, "attempt_log": log, "fallbacks": fallbacks,
            "logical_model": model}


def _tool_calls(raw: Any) -> tuple[list[ToolCall], list[InvalidToolCall]]:
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for call in raw if isinstance(raw, list) else ():
        try:
            parsed = parse_tool_call(call, return_id=True)
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(call, str(exc)))
            continue
        if parsed is not None:
            calls.append(ToolCall(name=parsed["name"], args=parsed["args"], id=parsed.get("id"),
                                  type="tool_call"))
    return calls, invalid


def _extras(source: Mapping[str, Any]) -> dict[str, Any]:
    """Fields some providers add beside the content: reasoning, a refusal."""
    return {key: value for key in ("reasoning_content", "reasoning", "refusal")
            if isinstance(value := source.get(key), str) and value}


def chat_result(body: Mapping[str, Any], metadata: Mapping[str, Any]) -> ChatResult:
    """A ``chat.completion`` body as a ChatResult, one generation per choice."""
    usage = usage_metadata(body.get("usage"))
    generations = []
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        content = message.get("content")
        calls, invalid = _tool_calls(message.get("tool_calls"))
        finish = choice.get("finish_reason")
        info = {**metadata, "model_name": body.get("model"), "finish_reason": finish, "id": body.get("id")}
        ai = AIMessage(content=content if isinstance(content, str | list) else "",
                       tool_calls=calls, invalid_tool_calls=invalid, usage_metadata=usage,
                       response_metadata=info, additional_kwargs=_extras(message), id=body.get("id"))
        generations.append(ChatGeneration(message=ai, generation_info={"finish_reason": finish}))
    return ChatResult(generations=generations)


def generation_chunk(chunk: Mapping[str, Any]) -> ChatGenerationChunk | None:
    """One ``chat.completion.chunk`` (its first choice) as a ChatGenerationChunk; None if it says nothing."""
    usage = usage_metadata(chunk.get("usage"))
    choices = chunk.get("choices") or ()
    if not choices:  # the usage chunk at the end, or nothing
        return None if usage is None else ChatGenerationChunk(message=AIMessageChunk(content="",
                                                                                     usage_metadata=usage))
    choice = choices[0]
    delta = choice.get("delta") or {}
    tool_chunks = [
        ToolCallChunk(name=(call.get("function") or {}).get("name"),
                      args=(call.get("function") or {}).get("arguments"),
                      id=call.get("id"), index=call.get("index"), type="tool_call_chunk")
        for call in delta.get("tool_calls") or () if isinstance(call, Mapping)
    ]
    finish = choice.get("finish_reason")
    metadata: dict[str, Any] = {"finish_reason": finish, "model_name": chunk.get("model")} if finish else {}
    continued = chunk.get("x_fallback")
    parts = continued.get("parts") if isinstance(continued, Mapping) else None
    if finish and isinstance(parts, list) and parts:
        # A stream broken mid-answer went on elsewhere: who wrote what, and who finished it (the first
        # chunk's ``provider`` is who started; merged chunks would concatenate a second one).
        metadata.update(continued=True, parts=parts, finished_by=parts[-1].get("provider"))
    content = delta.get("content")
    message = AIMessageChunk(content=content if isinstance(content, str) else "",
                             tool_call_chunks=tool_chunks, usage_metadata=usage,
                             response_metadata=metadata, additional_kwargs=_extras(delta))
    return ChatGenerationChunk(message=message, generation_info={"finish_reason": finish} if finish else None)


# -- the chain's profile -------------------------------------------------------
def chain_profile(config: Config, model: str) -> ModelProfile:
    """What every configured provider serving ``model`` can do: the smallest token limits, and
    ``tool_calling`` true only if all of them call tools. A key is left out when some provider
    does not state it (nothing is promised for the whole chain then), except that one provider
    without tool calling makes ``tool_calling`` false.
    """
    limits = [p.model_limits.get(model) for p in config.providers if model in p.models and p.configured]
    profile = ModelProfile()
    if not limits:
        return profile
    inputs = [lim.max_input_tokens if lim else None for lim in limits]
    outputs = [lim.max_output_tokens if lim else None for lim in limits]
    tools = [lim.tool_calling if lim else None for lim in limits]
    if all(n is not None for n in inputs):
        profile["max_input_tokens"] = min(n for n in inputs if n is not None)
    if all(n is not None for n in outputs):
        profile["max_output_tokens"] = min(n for n in outputs if n is not None)
    if False in tools:
        profile["tool_calling"] = False
    elif all(tools):
        profile["tool_calling"] = True
    return profile
