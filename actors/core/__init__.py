"""The ground floor: messages, states, config, clock, errors and the actor runtime.

Everything above imports from here; nothing here imports anything else of ours.
"""

__all__ = ()
