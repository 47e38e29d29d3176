"""LangChain over provider-fallback: :class:`FallbackChatModel`, a ``BaseChatModel`` with failover.

Needs the ``langchain`` extra (``pip install 'provider-fallback[langchain]'``)::

    from actors.langchain import FallbackChatModel

    with FallbackChatModel(config_path="config.toml", model="chat") as llm:
        llm.invoke("hi").response_metadata["provider"]      # who answered
        llm.bind_tools([get_weather]).invoke("weather in Paris?").tool_calls
        llm.profile                                          # true for every provider in the chain

No HTTP hop: requests go straight to an embedded
:class:`~actors.Supervisor`. (With no code at all, point LangChain's
``ChatOpenAI(base_url="http://127.0.0.1:8080/v1", model="chat")`` at
``python run.py`` instead; see the README.)

Event loops. A Supervisor is bound to the event loop it was entered in: its
task group, aiohttp session and anyio events all live there. So:

- A model built from a config (``config_path=`` or ``config=``) owns its
  Supervisor and runs it on a **private event loop in a daemon thread**,
  started on first use. Every call reaches it there: ``invoke``/``stream``/
  ``batch`` from sync code block on a future; ``ainvoke``/``astream``/
  ``abatch`` from any event loop await one, so one model serves sync code, a
  running loop, and several ``asyncio.run`` calls in a row alike, and a
  request never ties the Supervisor to a loop that later closes. ``close()``
  (or ``with``/``async with``, or interpreter exit) leaves the Supervisor:
  in-flight requests finish and the state file is flushed.
- A model built over ``supervisor=`` uses the loop that supervisor runs in
  (the running loop at construction, or ``loop=``): async calls on that loop
  go straight to it; sync calls from other threads and async calls from other
  loops hop onto it. A sync call on that loop's own thread would block it
  and is refused with a RuntimeError naming the async method to use. The
  supervisor is the caller's to close.

A stream is owned, open to close, by one task on the Supervisor's loop; its
payloads reach the consumer through a bounded queue.

Errors reach the caller as the library raises them (re-exported here), from
sync and async calls and streams alike: :class:`AllProvidersFailedError`
(``attempts``: each provider, status, category, message),
:class:`UpstreamRejectedError` (a 400 any provider would give: ``provider``,
``status``, ``body``), :class:`StreamInterruptedError` (after the first chunk:
``provider``, ``partial_text``, ``attempt``), :class:`UnknownModelError`,
:class:`InvalidRequestError` (a ValueError), :class:`SupervisorClosedError`;
all are :class:`FallbackError`, an ``Exception``, so ``with_fallbacks`` and
``with_retry`` handle them.
"""

from actors.core.errors import (
    AllProvidersFailedError,
    FallbackError,
    InvalidRequestError,
    StreamInterruptedError,
    SupervisorClosedError,
    UnknownModelError,
    UpstreamRejectedError,
)
from actors.langchain.chat_model import FallbackChatModel

__all__ = (
    "AllProvidersFailedError",
    "FallbackChatModel",
    "FallbackError",
    "InvalidRequestError",
    "StreamInterruptedError",
    "SupervisorClosedError",
    "UnknownModelError",
    "UpstreamRejectedError",
)
