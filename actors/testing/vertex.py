"""A fake Vertex AI for tests: Google's OAuth token endpoint and Vertex AI's OpenAI-compatible
chat endpoint on one real server, built from the public docs.

:class:`FakeVertex` is a :class:`~actors.testing.FakeUpstream` (the same script of faults:
``ok``, ``error(429)``, ``hang``, ``cut_stream``...) that adds Google's sign-in, paths and error
shapes:

- ``POST /token``: the JWT-bearer grant (RFC 7523) google-auth's service-account credentials make
  against the key file's ``token_uri`` (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``,
  ``assertion=<JWT>``). The assertion's RS256 signature is verified against the public key of an
  account :meth:`FakeVertex.service_account_file` wrote, with ``aud`` Google's token endpoint
  (google-auth names it whatever the ``token_uri``) or this one, ``iss`` the
  account's email and ``scope`` holding cloud-platform; it answers ``{"access_token", "expires_in",
  "token_type": "Bearer"}``, and refuses in OAuth's shape, ``400 {"error": "invalid_grant",
  "error_description": ...}``.
- ``POST /v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions``: the
  script, once ``Authorization: Bearer`` carries a token it issued that has not expired on its
  clock (``now``, real time unless given); otherwise 401 UNAUTHENTICATED. Another project or
  location: 404 NOT_FOUND. ``GET .../endpoints/openapi/models``: health, signed in likewise.
- Errors in Google's shape (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/api-errors):
  ``[{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED"}}]`` as the OpenAI
  endpoint sends it, or the bare object with ``error_list=False``; an ``error(status)`` without a
  message of its own gets Google's wording.

Its ``base_url`` is the origin: a ``kind = "vertex"`` provider with ``base_url = fake.base_url``
appends the standard path for its ``project`` and ``location``. Needs google-auth and
cryptography (the ``vertex`` extra), imported only when a key is written or a grant checked.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from actors.testing.faults import Fault, error
from actors.testing.upstream import FakeUpstream

__all__ = ("GOOGLE_ERRORS", "JWT_BEARER", "FakeVertex")

#: The grant type of a service account's token request.
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: The audience google-auth's service-account assertions name, whatever their token_uri.
_GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
#: HTTP status -> (canonical status, Google's message), after Vertex AI's API errors page.
GOOGLE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access "
                             "token, login cookie or other valid authentication credential."),
    403: ("PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource (or it may "
                               "not exist)."),
    404: ("NOT_FOUND", "Publisher Model was not found or your project does not have access to it."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource exhausted, please try again later."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}


class FakeVertex(FakeUpstream):
    """A fake Vertex AI: a token endpoint and the ``endpoints/openapi`` chat, answering from a script."""

    def __init__(self, name: str = "vertex", *, project: str = "test-project", location: str = "us-central1",
                 expires_in: int = 3600, error_list: bool = True, now: Callable[[], float] = time.time,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.project, self.location = project, location
        self.expires_in = expires_in  # what the next tokens live (seconds)
        self.error_list = error_list
        self.now = now  # the clock its tokens expire on
        self.tokens: dict[str, float] = {}  # every token issued -> when it expires (on `now`)
        self.token_requests = 0
        #: Set: the token endpoint refuses every grant, ``400 {"error": "invalid_grant", ...}`` with it.
        self.token_refusal: str | None = None
        self._accounts: dict[str, bytes] = {}  # a service account's email -> its public key (PEM)

    @property
    def base_url(self) -> str:
        """The origin, ``http://127.0.0.1:<port>``: the provider appends the project's path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def service_account_file(self, path: Path, *, email: str | None = None) -> Path:
        """Write a service account's JSON key (a new RSA key, ``token_uri`` this fake), and trust it."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = email or f"fallback-test@{self.project}.iam.gserviceaccount.com"
        self._accounts[email] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": self.project, "private_key_id": "fake-key-1",
            "private_key": pem, "client_email": email, "client_id": "100000000000000000001",
            "token_uri": self.token_uri, "universe_domain": "googleapis.com",
        }))
        return path

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the next call with one gets a 401)."""
        self.tokens = dict.fromkeys(self.tokens, self.now())

    # -- routes ---------------------------------------------------------------
    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._on_token)
        prefix = "/v1/projects/{project}/locations/{location}/endpoints/openapi"
        app.router.add_post(prefix + "/chat/completions", self._on_chat)
        app.router.add_get(prefix + "/models", self._on_models)

    def _elsewhere(self, request: web.Request) -> bool:
        info = request.match_info
        return (info["project"], info["location"]) != (self.project, self.location)

    async def _on_chat(self, request: web.Request) -> web.StreamResponse:
        if self._elsewhere(request):
            await request.read()
            return await self._answer(request, error(404), {}, health=False)
        return await self._on_completion(request)

    async def _on_models(self, request: web.Request) -> web.StreamResponse:
        if self._elsewhere(request):
            return await self._answer(request, error(404), {}, health=True)
        return await self._on_health(request)

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        expires = self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        return expires is not None and self.now() < expires

    def _error_body(self, fault: Fault) -> Any:
        status, wording = GOOGLE_ERRORS.get(fault.status, ("UNKNOWN", "Unknown error."))
        message = wording if fault.message == error(fault.status).message else fault.message
        body = {"error": {"code": fault.status, "message": message, "status": status}}
        return [body] if self.error_list else body

    # -- the token endpoint -----------------------------------------------------
    async def _on_token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if self.token_refusal is not None:
            return _oauth_error("invalid_grant", self.token_refusal)
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        try:
            self._verify(str(form.get("assertion", "")))
        except ValueError as exc:
            return _oauth_error("invalid_grant", str(exc))
        token = f"ya29.fake-{secrets.token_urlsafe(24)}"
        self.tokens[token] = self.now() + self.expires_in
        return web.json_response({"access_token": token, "expires_in": self.expires_in,
                                  "token_type": "Bearer"})

    def _verify(self, assertion: str) -> None:
        """Raise ValueError (with Google's wording) unless the assertion is a valid grant."""
        from google.auth import exceptions, jwt

        try:
            unverified = jwt.decode(assertion, verify=False)  # type: ignore[no-untyped-call]
        except (ValueError, exceptions.GoogleAuthError):
            raise ValueError("Invalid JWT: the assertion is not a JWT.") from None
        public = self._accounts.get(str(unverified.get("iss")))
        if public is None:
            raise ValueError("Invalid JWT Signature.")  # no such account: Google says the same
        try:
            claims = jwt.decode(assertion, certs=public.decode(),  # type: ignore[no-untyped-call]
                                audience=[_GOOGLE_TOKEN_URI, self.token_uri])
        except (ValueError, exceptions.GoogleAuthError) as exc:
            raise ValueError(f"Invalid JWT: {exc}") from None
        if _SCOPE not in str(claims.get("scope", "")).split():
            raise ValueError("Invalid JWT: the scope does not include cloud-platform.")


def _oauth_error(code: str, description: str) -> web.Response:
    return web.json_response({"error": code, "error_description": description}, status=400)
