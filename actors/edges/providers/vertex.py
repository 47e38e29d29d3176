"""Vertex AI's OpenAI-compatible Chat Completions (``kind = "vertex"``): Gemini and partner models.

The wire is OpenAI's (:class:`~actors.edges.providers.openai.OpenAIAdapter`) at
``.../v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions`` (the base URL
is derived in :mod:`actors.core.provider_kinds`); model ids look like ``google/gemini-2.5-flash``
(https://cloud.google.com/vertex-ai/generative-ai/docs/migrate/openai/overview). What differs is
the sign-in: every call carries a Google OAuth 2 access token for the ``cloud-platform`` scope,
from ``credentials_file`` (a service account's JSON key, whose ``token_uri`` is honoured, or an
authorized user's file) or, without it, application default
credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file, the metadata server).

:class:`GoogleToken` owns the token. google-auth's loading and refresh are blocking I/O, so they
run in a worker thread (``anyio.to_thread``), one at a time (a lock); a token with less than
:data:`REFRESH_MARGIN_S` left is refreshed before it is used, and one that Vertex refuses with a
401 is dropped so the next call signs in again. A failed sign-in is an ``UpstreamFailure``: 401 for
bad or missing credentials, 503 for a token endpoint that says "try again", ``connect`` for one
out of reach; its message names the credential source, never a token or a key.

Checks: ``ping`` is the OpenAI one (any HTTP answer on ``health_path``, unauthenticated);
``check`` refreshes the token (the proof that the credentials work) and GETs
``endpoints/openapi/models`` with it, which Google does not document: its 404 passes, a 401/403 fails.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google.oauth2.service_account

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.edges.providers.base import UpstreamFailure, redact
from actors.edges.providers.openai import OpenAIAdapter

__all__ = ("REFRESH_MARGIN_S", "SCOPE", "GoogleToken", "VertexAdapter")

#: The OAuth scope Vertex AI's Chat Completions accepts (its REST reference lists it first).
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: A token with less than this left is refreshed before a call uses it.
REFRESH_MARGIN_S = 300.0


def _reason(exc: BaseException, token: str | None) -> str:
    """What went wrong, in a line: the exception's first argument only (google-auth puts the token
    endpoint's whole answer in the second), with the token redacted should it ever appear."""
    first = exc.args[0] if exc.args else ""
    text = " ".join(str(first).split())[:200] or type(exc).__name__
    return redact(text, token)


class GoogleToken:
    """One provider's Google access token: loaded and refreshed off the event loop, one at a time."""

    def __init__(self, credentials_file: str = "", *, margin_s: float = REFRESH_MARGIN_S) -> None:
        self._file = credentials_file
        self._margin = margin_s
        #: Where the credentials come from, as error messages name it (never a secret).
        self.source = (f"credentials_file {credentials_file}" if credentials_file
                       else "application default credentials")
        self._credentials: Any = None  # google.auth.credentials.Credentials, loaded at first use
        self._request: google.auth.transport.requests.Request | None = None
        self._stale = False
        self._lock = anyio.Lock()
        self.refreshes = 0  # how many tokens it has fetched (for tests and the curious)

    def _fresh(self) -> bool:
        creds = self._credentials
        if self._stale or creds is None or not creds.token:
            return False
        if creds.expiry is None:
            return True  # a token without an expiry (google-auth's own convention)
        # google-auth keeps expiry as a naive UTC datetime, on the wall clock its token endpoint uses.
        expiry: dt.datetime = creds.expiry
        left = expiry.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)
        return left.total_seconds() > self._margin

    def invalidate(self) -> None:
        """Drop the token (the upstream refused it): the next call signs in again."""
        self._stale = True

    async def headers(self) -> dict[str, str]:
        """The headers that authenticate a call: ``Authorization`` and, if any, the quota project."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():  # unless a call that held the lock just refreshed it
                    await self._refresh()
        creds = self._credentials
        headers = {"Authorization": f"Bearer {creds.token}"}
        quota = getattr(creds, "quota_project_id", None)
        if isinstance(quota, str) and quota:
            headers["x-goog-user-project"] = quota  # user credentials bill a project this way
        return headers

    async def _refresh(self) -> None:
        token = getattr(self._credentials, "token", None)
        try:
            # Abandoned on cancel: a request's timeout is not held up by a slow token endpoint.
            await anyio.to_thread.run_sync(self._refresh_blocking, abandon_on_cancel=True)
        except google.auth.exceptions.TransportError as exc:
            raise UpstreamFailure("connect", f"{self.source}: the token endpoint is out of reach "
                                  f"({_reason(exc, token)})") from None
        except google.auth.exceptions.RefreshError as exc:
            status = 503 if exc.retryable else 401
            raise UpstreamFailure("http", f"{self.source}: the token refresh failed: {_reason(exc, token)}",
                                  status=status) from None
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError, TypeError, KeyError) as exc:
            # A missing or malformed file, no ADC at all, a key that can't be read: `from None`, so
            # nothing the file held can ride along in a chained exception.
            raise UpstreamFailure("http", f"{self.source}: cannot sign in: {_reason(exc, token)}",
                                  status=401) from None
        self._stale = False
        self.refreshes += 1

    def _refresh_blocking(self) -> None:
        """In a worker thread: load the credentials once, then fetch a new token."""
        if self._credentials is None:
            self._credentials = (_from_file(self._file) if self._file
                                 else google.auth.default(scopes=[SCOPE])[0])
        if self._request is None:
            self._request = google.auth.transport.requests.Request()
        self._credentials.refresh(self._request)


def _from_file(path: str) -> Any:
    """The credentials in a service account's key or an authorized user's file, loaded by their type
    (google-auth's generic loader is deprecated: it would take any credential configuration)."""
    info = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        return google.oauth2.service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE])
    if kind == "authorized_user":
        return google.oauth2.credentials.Credentials.from_authorized_user_info(  # type: ignore[no-untyped-call]
            info, scopes=[SCOPE])
    raise ValueError(f"credentials of type {kind!r}: expected a service account key or an authorized "
                     "user file (for others, set GOOGLE_APPLICATION_CREDENTIALS and leave "
                     "credentials_file out)")


class VertexAdapter(OpenAIAdapter):
    """Speaks OpenAI's /chat/completions to Vertex AI with a Google access token."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock, *,
                 token: GoogleToken | None = None) -> None:
        super().__init__(config, session, clock)
        self.token = token if token is not None else GoogleToken(config.credentials_file)

    async def _auth(self) -> Mapping[str, str]:
        auth = await self.token.headers()
        # The key every failure message and error body is redacted of (base.HttpAdapter).
        self._key = auth["Authorization"].removeprefix("Bearer ")
        return {**self._headers, **auth}

    async def _http_failure(self, resp: aiohttp.ClientResponse) -> UpstreamFailure:
        if resp.status == 401 and "Authorization" in resp.request_info.headers:
            self.token.invalidate()  # refused (expired early, revoked): the next call signs in again
        return await super()._http_failure(resp)
