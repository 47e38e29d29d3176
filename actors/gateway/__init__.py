"""The HTTP gateway: an OpenAI-compatible service in front of a :class:`~actors.Supervisor`."""

from actors.gateway.app import SUPERVISOR, GatewayError, create_app, serve

__all__ = ("SUPERVISOR", "GatewayError", "create_app", "serve")
