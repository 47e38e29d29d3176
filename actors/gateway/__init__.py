"""The HTTP gateway: an OpenAI-compatible service in front of a :class:`~actors.Supervisor`."""

from actors.gateway.app import SUPERVISOR, create_app, serve
from actors.gateway.http import GatewayError

__all__ = ("SUPERVISOR", "GatewayError", "create_app", "serve")
