"""Snowflake Cortex's OpenAI-compatible Chat Completions (``kind = "snowflake"``).

The wire is OpenAI's (:class:`~actors.edges.providers.openai.OpenAIAdapter`) at
``{account URL}/api/v2/cortex/v1/chat/completions``
(https://docs.snowflake.com/en/user-guide/snowflake-cortex/cortex-rest-api); ``base_url`` is the
account URL, ``https://<account_identifier>.snowflakecomputing.com`` (a base URL that already ends
in ``/api/v2/cortex/v1``, as OpenAI SDK examples write it, works too). Sign-in, per
https://docs.snowflake.com/en/developer-guide/snowflake-rest-api/authentication:

- a programmatic access token (PAT) in the variable ``api_key_env`` names, sent as
  ``Authorization: Bearer <PAT>`` with ``X-Snowflake-Authorization-Token-Type:
  PROGRAMMATIC_ACCESS_TOKEN``; or
- key-pair auth (``user``, ``account``, ``private_key_file``, ``private_key_passphrase_env``): a
  JWT signed RS256 with the user's private key, ``iss = ACCOUNT.USER.SHA256:<fingerprint>`` (the
  base64 SHA-256 of the public key's DER), ``sub = ACCOUNT.USER``, ``iat``, and ``exp`` at most an
  hour later, sent with ``X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT``. The account is
  upper-cased and loses any ``.region`` suffix of a locator (``xy12345.us-east-1`` -> ``XY12345``).

:class:`KeypairJwt` reads the key file once, off the event loop, and signs a new JWT (59 minutes)
when the current one has less than :data:`REFRESH_MARGIN_S` left on the adapter's clock, or after
Snowflake refused it with a 401. A key that can't be used is an ``UpstreamFailure`` 401 naming the
file (or the unset passphrase variable), never its content; JWTs are never logged.

Checks: ``ping`` is the OpenAI one (any HTTP answer on ``health_path`` under the Cortex base);
``check`` is an authenticated ``GET /api/v2/cortex/models`` ("Returns the LLMs available for the
current session", snowflakedb/snowflake-rest-api-specs ``cortex-inference.yaml``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from actors.core.clock import Clock
from actors.core.config import ProviderConfig
from actors.edges.providers.base import UpstreamFailure
from actors.edges.providers.openai import OpenAIAdapter

__all__ = ("CORTEX_PATH", "JWT_LIFETIME_S", "REFRESH_MARGIN_S", "KeypairJwt", "SnowflakeAdapter",
           "fingerprint", "jwt_names")

#: Where the OpenAI-compatible API lives on the account URL.
CORTEX_PATH = "/api/v2/cortex/v1"
#: A JWT's life: Snowflake accepts at most an hour.
JWT_LIFETIME_S = 59 * 60
#: A JWT with less than this left is replaced before a call uses it.
REFRESH_MARGIN_S = 300.0


def fingerprint(key: rsa.RSAPublicKey) -> str:
    """``SHA256:<base64>`` of the public key's DER, as Snowflake's RSA_PUBLIC_KEY_FP shows it."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def jwt_names(account: str, user: str) -> tuple[str, str]:
    """(account, user) as a JWT's claims spell them: upper case, the locator without its region."""
    return account.partition(".")[0].upper(), user.upper()


class KeypairJwt:
    """One Snowflake user's key-pair JWT, signed again before it expires."""

    def __init__(self, *, account: str, user: str, key_file: str, passphrase: str | None,
                 passphrase_env: str, clock: Clock) -> None:
        self.account, self.user = jwt_names(account, user)
        self._file = key_file
        self._passphrase = passphrase
        self._passphrase_env = passphrase_env
        self._clock = clock
        self._private: rsa.RSAPrivateKey | None = None
        self._issuer = ""
        self._token: str | None = None
        self._expires = 0.0
        self._lock = anyio.Lock()
        self.signed = 0  # how many JWTs it has signed (for tests and the curious)

    def invalidate(self) -> None:
        """Drop the JWT (Snowflake refused it): the next call signs a new one."""
        self._token = None

    def _fresh(self) -> bool:
        return self._token is not None and self._clock.now() < self._expires - REFRESH_MARGIN_S

    async def token(self) -> str:
        """A JWT with at least REFRESH_MARGIN_S to live."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    if self._private is None:
                        self._private = await anyio.to_thread.run_sync(self._load)
                        self._issuer = f"{self.account}.{self.user}.{fingerprint(self._private.public_key())}"
                    now = int(self._clock.now())
                    claims = {"iss": self._issuer, "sub": f"{self.account}.{self.user}",
                              "iat": now, "exp": now + JWT_LIFETIME_S}
                    self._token = jwt.encode(claims, self._private, algorithm="RS256")
                    self._expires = now + JWT_LIFETIME_S
                    self.signed += 1
        assert self._token is not None
        return self._token

    def _load(self) -> rsa.RSAPrivateKey:
        """In a worker thread: the private key, or an UpstreamFailure naming what is wrong with it."""
        where = f"private_key_file {self._file}"

        def refused(why: str) -> UpstreamFailure:
            return UpstreamFailure("http", f"{where}: {why}", status=401)

        try:
            data = Path(self._file).expanduser().read_bytes()
        except OSError as exc:
            raise refused(f"cannot read it ({exc.strerror or type(exc).__name__})") from None
        password = self._passphrase.encode() if self._passphrase is not None else None
        try:
            key: Any = (serialization.load_pem_private_key(data, password) if b"-----BEGIN" in data
                        else serialization.load_der_private_key(data, password))
        except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
            if password is None and self._passphrase_env:
                raise refused(f"it is encrypted and {self._passphrase_env} is not set") from None
            if password is None:
                raise refused("it is encrypted: set private_key_passphrase_env to the variable "
                              "that holds its passphrase") from None
            raise refused("it is not encrypted: remove private_key_passphrase_env") from None
        except (ValueError, UnsupportedAlgorithm):  # their text must never carry key material: dropped
            raise refused("not a PKCS#8 private key, or the wrong passphrase") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise refused("expected an RSA private key (Snowflake key-pair auth is RSA)")
        return key


class SnowflakeAdapter(OpenAIAdapter):
    """Speaks OpenAI's /chat/completions to Snowflake Cortex with a PAT or a key-pair JWT."""

    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession, clock: Clock) -> None:
        super().__init__(config, session, clock)
        self._root = self._base.removesuffix(CORTEX_PATH)
        self._base = self._root + CORTEX_PATH
        self.jwt: KeypairJwt | None = None
        if config.private_key_file:
            phrase = config.private_key_passphrase
            self.jwt = KeypairJwt(account=config.account, user=config.user, key_file=config.private_key_file,
                                  passphrase=phrase.reveal() if phrase is not None else None,
                                  passphrase_env=config.private_key_passphrase_env, clock=clock)
        else:
            self._headers["X-Snowflake-Authorization-Token-Type"] = "PROGRAMMATIC_ACCESS_TOKEN"

    async def _auth(self) -> Mapping[str, str]:
        if self.jwt is None:
            return self._headers
        token = await self.jwt.token()
        self._key = token  # what every failure message and error body is redacted of
        return {**self._headers, "Authorization": f"Bearer {token}",
                "X-Snowflake-Authorization-Token-Type": "KEYPAIR_JWT"}

    def _models_url(self) -> str:
        return self._root + "/api/v2/cortex/models"

    async def _http_failure(self, resp: aiohttp.ClientResponse) -> UpstreamFailure:
        if resp.status == 401 and self.jwt is not None and "Authorization" in resp.request_info.headers:
            self.jwt.invalidate()
        return await super()._http_failure(resp)
