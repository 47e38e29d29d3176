"""A fake Snowflake Cortex for tests: the account URL's OpenAI-compatible chat endpoint, with
Snowflake's two sign-ins, built from the public docs.

:class:`FakeSnowflake` is a :class:`~actors.testing.FakeUpstream` (the same script of faults) that
serves ``POST /api/v2/cortex/v1/chat/completions`` and ``GET /api/v2/cortex/models`` (and
``/api/v2/cortex/v1/models`` for pings) on ``base_url``, the account URL, and signs callers in as
https://docs.snowflake.com/en/developer-guide/snowflake-rest-api/authentication says:

- ``X-Snowflake-Authorization-Token-Type: PROGRAMMATIC_ACCESS_TOKEN`` (or no type, as the OpenAI SDK
  sends it) with ``Authorization: Bearer <pat>``: the PAT given as ``pat``;
- ``KEYPAIR_JWT``: a JWT signed RS256 by a user :meth:`FakeSnowflake.key_pair` registered, whose
  ``sub`` is ``ACCOUNT.USER``, ``iss`` is ``ACCOUNT.USER.SHA256:<fingerprint of that user's public
  key>``, ``iat`` is not in the future and ``exp`` is ahead on its clock (``now``) and at most an
  hour after ``iat``.

Anything else is a 401. Error bodies are Snowflake's ErrorResponse (snowflakedb/
snowflake-rest-api-specs ``common.yaml``): ``{"message": ..., "code": ..., "request_id": ...}``,
with the Cortex REST API's wording for an ``error(status)`` without a message of its own; a 429
carries a Retry-After only when the fault asks for one (Snowflake documents none). Needs PyJWT
and cryptography (the ``snowflake`` extra), imported only when a key is made or a JWT checked.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from actors.testing.faults import Fault, error
from actors.testing.upstream import FakeUpstream

__all__ = ("SNOWFLAKE_ERRORS", "FakeSnowflake")

#: HTTP status -> (message, code) an error without its own message answers with.
SNOWFLAKE_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid options object", None),
    401: ("JWT token is invalid.", "390144"),
    402: ("budget exceeded", None),
    403: ("Not Authorized: the account is not enabled for the Cortex REST API, or the user's "
          "default role lacks SNOWFLAKE.CORTEX_USER.", None),
    404: ("unknown model", None),
    429: ("too many requests: the request was rejected because the usage quota has been exceeded. "
          "Please try your request later.", None),
    500: ("Internal Server Error.", None),
    503: ("inference timed out", None),
    504: ("Gateway Timeout.", None),
}
_PATHS = ("/api/v2/cortex/models", "/api/v2/cortex/v1/models")


class FakeSnowflake(FakeUpstream):
    """A fake Snowflake account serving Cortex chat completions, signing in PATs and key-pair JWTs."""

    def __init__(self, name: str = "snowflake", *, account: str = "MYORG-MYACCOUNT", pat: str | None = None,
                 now: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.account = account.partition(".")[0].upper()
        self.pat = pat
        self.now = now  # the clock JWTs are checked on
        self.jwt_claims: list[dict[str, Any]] = []  # the claims of every JWT it accepted, in order
        self._users: dict[str, tuple[Any, str]] = {}  # USER -> (public key, its fingerprint)

    @property
    def base_url(self) -> str:
        """The account URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def key_pair(self, user: str, path: Path, *, passphrase: str | None = None) -> Path:
        """Write a new RSA private key (PKCS#8 PEM, encrypted with ``passphrase`` if given) for
        ``user`` and register its public key, as ``ALTER USER ... SET RSA_PUBLIC_KEY`` would."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        encryption: Any = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                           else serialization.NoEncryption())
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           encryption))
        public = key.public_key()
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()
        self._users[user.upper()] = (public, fingerprint)
        return path

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/cortex/v1/chat/completions", self._on_completion)
        for path in _PATHS:
            app.router.add_get(path, self._on_health)

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        token = auth.removeprefix("Bearer ")
        kind = request.headers.get("X-Snowflake-Authorization-Token-Type", "")
        if kind == "KEYPAIR_JWT":
            return self._jwt_ok(token)
        return kind in ("", "PROGRAMMATIC_ACCESS_TOKEN") and self.pat is not None and token == self.pat

    def _jwt_ok(self, token: str) -> bool:
        import jwt

        try:
            sub = str(jwt.decode(token, options={"verify_signature": False}).get("sub", ""))
            account, _, user = sub.partition(".")
            if account != self.account or user not in self._users:
                return False
            public, fingerprint = self._users[user]
            claims: dict[str, Any] = jwt.decode(
                token, public, algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["iss", "sub", "iat", "exp"]})
        except jwt.PyJWTError:
            return False
        now, iat, exp = self.now(), claims["iat"], claims["exp"]
        if claims["iss"] != f"{sub}.{fingerprint}" or iat > now + 60 or now >= exp or exp - iat > 3600:
            return False
        self.jwt_claims.append(claims)
        return True

    def _error_body(self, fault: Fault) -> Any:
        wording, code = SNOWFLAKE_ERRORS.get(fault.status, (fault.message, None))
        plain = error(fault.status)  # what the fault says when it says nothing of its own
        body: dict[str, Any] = {"message": wording if fault.message == plain.message else fault.message}
        if fault.code != plain.code:
            code = fault.code
        if code is not None:
            body["code"] = code
        body["request_id"] = str(uuid.uuid4())
        return body
