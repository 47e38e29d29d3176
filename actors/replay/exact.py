"""The exact schedule: each replayed decision placed where the log has the recorded one.

Every actor gets its messages in the order the live system delivered them,
which the log records. A replayed decision waits (``pending``) until the log
reaches the recorded one, is compared with it, and only then is delivered to
the actors downstream, as it was live. Timers fire when the log says they
fired (``timer_fired``, schema 4 on; older logs: at their deadlines).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from actors.core.messages import (
    ActorRestarted,
    LoggedMessage,
    Message,
    StateSnapshot,
    SupervisorStarted,
)
from actors.replay.engine import DECISIONS, Run

__all__ = ("exact",)


def exact(run: Run, messages: Iterable[tuple[int, LoggedMessage]] | None = None,
           stop: Callable[[Message], bool] | None = None) -> list[Message]:
    """Place each replayed decision where the log has the recorded one; return the recorded.

    ``messages`` (numbered lines) default to the log's. With ``stop``, the pass
    ends after the first message for which ``stop`` is true while no replayed
    decision waits for its recorded line: a cut with nothing in flight between
    the actors (``run.cut`` is that message), where the actors' state is the
    whole state of the run (:func:`state_at`).
    """
    pending: deque[tuple[Message, list[Message]]] = deque()
    recorded: list[Message] = []
    count = 0
    high = -float("inf")  # the latest input time seen: the live clock was at least this

    def hold(batch: list[Message]) -> None:
        # An unlogged message (a routing snapshot) was published right after the
        # logged decision before it in the same batch: it travels with it.
        carrier: list[Message] | None = None
        for m in batch:
            if type(m) in DECISIONS:
                carrier = []
                pending.append((m, carrier))
            elif carrier is not None:
                carrier.append(m)
            else:
                hold(run.current().deliver(m))

    def place(m: Message, follow: list[Message]) -> None:
        run.decided(m)
        hold(run.current().deliver(m))
        for extra in follow:
            hold(run.current().deliver(extra))

    def fire(until: float) -> None:
        if run.timers_logged:
            return  # each firing is a timer_fired line, delivered at its recorded time
        engine = run.current()
        while (deadline := engine.due(until)) is not None:
            hold(engine.tick(deadline))

    def extra() -> None:
        while pending:
            m, follow = pending.popleft()
            run.diverge(count, 0, None, m)
            place(m, follow)

    for line, message in messages if messages is not None else enumerate(run.log.messages, start=2):
        if stop is not None and run.engine is not None and not pending and stop(message):
            run.cut = message  # not handled: the excerpt starts with it
            return recorded
        if run.engine is None and isinstance(message, StateSnapshot):
            run.begin(message)  # an excerpt (export --since) starts from a checkpoint
            run.fed(message)
            high = max(high, message.at)
            continue
        if isinstance(message, SupervisorStarted):
            if run.engine is not None:
                fire(high)
                extra()
            run.begin(message)
            run.fed(message)
            high = max(high, message.at)
        elif type(message) in DECISIONS:
            high = max(high, message.at)  # a decision's time was reached too
            fire(high)
            index = count
            count += 1
            if run.keep:
                recorded.append(message)
            subject = (type(message), getattr(message, "provider", None))
            found = next((i for i, (m, _) in enumerate(pending)
                          if (type(m), getattr(m, "provider", None)) == subject), None)
            if found is None:
                run.diverge(index, line, message, pending[0][0] if pending else None)
                continue
            got, follow = pending[found]
            del pending[found]
            if not run.same(message, got):
                run.diverge(index, line, message, got)
            place(got, follow)
        elif isinstance(message, ActorRestarted):
            run.decided(message)  # its lost message is skipped when delivered
        else:
            high = max(high, message.at)
            fire(high)
            engine = run.current()
            engine.at(message.at)
            run.fed(message)
            hold(engine.deliver(message))
    fire(high)
    extra()
    return recorded
