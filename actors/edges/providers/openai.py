"""The OpenAI chat-completions dialect: OpenAI, Azure OpenAI, and every
OpenAI-compatible server (LiteLLM proxy, Kilo Gateway, OpenRouter, vLLM,
Ollama, Together, Groq...).

Azure differs only in the URL (``/openai/deployments/{model}/...?api-version``)
and the key header (``api-key``), per Azure OpenAI's REST reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.edges.providers.base import HttpAdapter, Seen, UpstreamFailure, redact

__all__ = ("OpenAIAdapter",)

_encode = msgspec.json.Encoder().encode


class _Choice(msgspec.Struct):
    index: int = 0


class _Completion(msgspec.Struct):
    choices: list[_Choice]


class _MaybeError(msgspec.Struct):
    error: Any = None


_completion = msgspec.json.Decoder(_Completion)
_maybe_error = msgspec.json.Decoder(_MaybeError | list[_MaybeError])  # Vertex AI: a list of errors


class OpenAIAdapter(HttpAdapter):
    """Speaks /chat/completions to one provider; translates every failure."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        super().__init__(config, session, clock)
        headers = {"Content-Type": "application/json", **config.headers}
        if self._key:
            if config.kind == "azure":
                headers["api-key"] = self._key
            else:
                headers["Authorization"] = f"Bearer {self._key}"
        self._headers = headers

    async def _auth(self) -> Mapping[str, str]:
        """The headers of every call: a dialect whose tokens expire refreshes them here."""
        return self._headers

    def _url(self, model: str) -> str:
        if self.config.kind == "azure":
            return (
                f"{self._base}/openai/deployments/{model}/chat/completions"
                f"?api-version={self.config.api_version}"
            )
        return f"{self._base}/chat/completions"

    def _models_url(self) -> str:
        """Where :meth:`check` lists models with the key (a dialect may list them elsewhere)."""
        return self._base + "/models"

    def _payload(self, body: dict[str, Any], model: str) -> bytes:
        if body.get("model") == model:
            return _encode(body)
        return _encode({**body, "model": model})

    # -- failures ---------------------------------------------------------
    def _validate(self, raw: bytes) -> None:
        try:
            _completion.decode(raw)
            return
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError as exc:
            raise UpstreamFailure("bad_response", f"invalid JSON in the response: {exc}") from None
        # Some proxies answer 200 with an error object (OpenRouter, LiteLLM on provider errors).
        try:
            found = _maybe_error.decode(raw)
        except msgspec.ValidationError:
            raise UpstreamFailure("bad_response", "the response is not a JSON object") from None
        err = (found[0] if found else _MaybeError()).error if isinstance(found, list) else found.error
        if isinstance(err, dict):
            code = err.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else None
            message = redact(str(err.get("message", ""))[:500], self._key)
            if status is not None:
                raise UpstreamFailure("http", message, status=status, code=str(err.get("status") or code))
            raise UpstreamFailure("bad_response", f"error object in a 200 answer: {message}")
        raise UpstreamFailure("bad_response", "the response has no 'choices' list")

    # -- calls --------------------------------------------------------------
    async def complete(self, body: dict[str, Any], model: str, *, seen: Seen | None = None) -> bytes:
        raw = await self._post_json(self._url(model), self._payload(body, model), await self._auth(), seen)
        self._validate(raw)
        return raw

    @asynccontextmanager
    async def stream(self, body: dict[str, Any], model: str, *,
                     seen: Seen | None = None) -> AsyncIterator[AsyncIterator[bytes]]:
        payload = self._payload({**body, "stream": True}, model)
        async with self._open_stream(self._url(model), payload, await self._auth(), seen) as resp:
            yield self._events(resp)

    async def _events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """Yield each SSE ``data:`` payload; a stream without ``[DONE]`` is cut."""
        try:
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue  # comments (": keep-alive"), event:, id:, blank lines
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                if data.startswith((b'{"error"', b'[{"error"')):
                    self._validate(data)  # raises the upstream's error
                yield data
        except UpstreamFailure:
            raise
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise UpstreamFailure("stream_cut", f"the stream broke: {type(exc).__name__}") from exc
        raise UpstreamFailure("stream_cut", "the stream ended without [DONE]")

    async def ping(self) -> None:
        """Any HTTP answer on the health path means the server is up."""
        url = self._base + (self.config.health_path or "/models")
        try:
            async with self.session.get(url) as resp:
                if resp.status >= 500:
                    raise await self._http_failure(resp)
        except UpstreamFailure:
            raise
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise self._connect_failure(exc) from exc

    async def check(self) -> None:
        """An authenticated GET /models: catches bad keys and dead backends."""
        try:
            async with self.session.get(self._models_url(), headers=await self._auth()) as resp:
                # 404/405: the server has no model listing; that says nothing bad about it.
                if resp.status >= 300 and resp.status not in (404, 405):
                    raise await self._http_failure(resp)
        except UpstreamFailure:
            raise
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise self._connect_failure(exc) from exc
