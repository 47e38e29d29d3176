"""Rate-limit admission (actors.runtime.admission): what it lets through, and when it says a slot frees."""

from __future__ import annotations

from typing import Any

from actors.core.clock import VirtualClock
from actors.core.config import parse_config
from actors.runtime.admission import Admission, Need, estimate

T0 = 1_800_000_000.0


def _admission(**provider: Any) -> tuple[Admission, VirtualClock]:
    config = parse_config({"providers": [{"name": "groq", "base_url": "http://127.0.0.1:9/v1",
                                          "models": {"chat": "llama"}, **provider}]}, env={})
    clock = VirtualClock(T0)
    return Admission(config, clock), clock


NOTHING = Need()


def _free(admission: Admission, clock: VirtualClock, need: Need = NOTHING) -> bool:
    return admission.until("groq", "llama", need, clock.now()) <= clock.now()


def test_a_wave_sent_after_a_report_is_discounted_from_it() -> None:
    """Headers said 5 left; 10 requests go out before any other answer: only the first 5 are let through."""
    admission, clock = _admission()
    admission.admit("groq", "llama", Need()).seen({"x-ratelimit-remaining-requests": "5",
                                                   "x-ratelimit-reset-requests": "30s"})
    let_through = 0
    for _ in range(10):
        if _free(admission, clock):
            admission.admit("groq", "llama", Need())
            let_through += 1
    assert let_through == 5
    assert admission.until("groq", "llama", Need(), clock.now()) == T0 + 30


def test_an_older_answer_does_not_overwrite_a_newer_report() -> None:
    admission, clock = _admission()
    first = admission.admit("groq", "llama", Need())
    second = admission.admit("groq", "llama", Need())
    second.seen({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "10s"})
    first.seen({"x-ratelimit-remaining-requests": "7", "x-ratelimit-reset-requests": "10s"})  # late, stale
    assert not _free(admission, clock)


def test_a_report_is_forgotten_once_it_has_reset() -> None:
    admission, clock = _admission()
    admission.admit("groq", "llama", Need()).seen({"x-ratelimit-remaining-requests": "0",
                                                   "x-ratelimit-reset-requests": "2.5s"})
    assert not _free(admission, clock)
    clock.move_to(T0 + 2.5)
    assert _free(admission, clock)


def test_tokens_count_against_the_reported_token_budget() -> None:
    """1,000 tokens left: a request estimated at 600 passes, the next 600 does not (600 + 600 > 1000)."""
    admission, clock = _admission()
    admission.admit("groq", "llama", Need()).seen({"x-ratelimit-remaining-tokens": "1000",
                                                   "x-ratelimit-reset-tokens": "7.66s"})
    need = Need(input=100, output=500)
    assert _free(admission, clock, need)
    admission.admit("groq", "llama", need)
    assert not _free(admission, clock, need)
    assert _free(admission, clock, Need(input=100, output=200))  # a smaller one still fits


def test_a_configured_rpm_frees_a_slot_a_minute_after_the_oldest() -> None:
    admission, clock = _admission(rpm=2)
    admission.admit("groq", "llama", Need())
    clock.move_to(T0 + 10)
    admission.admit("groq", "llama", Need())
    assert admission.until("groq", "llama", Need(), clock.now()) == T0 + 60
    clock.move_to(T0 + 60)
    assert _free(admission, clock)


def test_headers_are_ignored_when_turned_off() -> None:
    config = parse_config({"routing": {"rate_limit_headers": False},
                           "providers": [{"name": "groq", "base_url": "http://127.0.0.1:9/v1",
                                          "models": {"chat": "llama"}}]}, env={})
    clock = VirtualClock(T0)
    admission = Admission(config, clock)
    admission.admit("groq", "llama", Need()).seen({"x-ratelimit-remaining-requests": "0"})
    assert _free(admission, clock)


def test_the_estimate_is_a_quarter_of_the_messages_plus_max_tokens() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 396}], "max_tokens": 50}
    need = estimate(body)
    assert need.output == 50 and 100 <= need.input <= 110
    assert estimate({"messages": "not a list", "max_tokens": True}).output == 0  # garbage: no crash


def test_peers_usage_fills_the_window_with_the_local_count() -> None:
    """rpm = 6, 2 sent here and 4 by peers: full, asked again after the next sync; peers unknown
    (Redis down, 2 instances seen): this instance's part is 6 // 2 = 3."""
    admission, clock = _admission(rpm=6)
    admitted: list[tuple[str, int]] = []
    admission.on_admit = lambda key, tokens: admitted.append((key, tokens))
    admission.peer_recheck_s = 0.5
    for _ in range(2):
        admission.admit("groq", "llama", Need(input=3))
    assert admitted == [("groq/llama", 3)] * 2
    admission.peer_usage("groq/llama", 3.5, 0)
    assert _free(admission, clock)
    admission.peer_usage("groq/llama", 4, 0)
    assert admission.until("groq", "llama", NOTHING, clock.now()) == T0 + 0.5
    admission.peers_unknown(2)
    assert _free(admission, clock)  # 2 of its 3
    admission.admit("groq", "llama", NOTHING)
    assert admission.until("groq", "llama", NOTHING, clock.now()) == T0 + 60
    admission.peers_unknown(1)  # alone: the local count against the whole limit
    assert _free(admission, clock)


def test_an_exhausted_report_is_told_once_and_a_peers_is_honoured() -> None:
    admission, clock = _admission()
    told: list[tuple[str, float]] = []
    admission.on_exhausted = lambda key, until: told.append((key, until))
    for _ in range(2):  # the same reset twice: told once
        admission.admit("groq", "llama", NOTHING).seen({"x-ratelimit-remaining-requests": "0",
                                                        "x-ratelimit-reset-requests": "30s"})
    admission.admit("groq", "llama", NOTHING).seen({"x-ratelimit-remaining-requests": "3",
                                                    "x-ratelimit-reset-requests": "30s"})
    assert told == [("groq/llama", T0 + 30)]

    peer, clock = _admission()
    peer.on_exhausted = lambda key, until: told.append((key, until))
    peer.peer_exhausted("groq/llama", T0 + 20)
    assert peer.until("groq", "llama", NOTHING, clock.now()) == T0 + 20
    peer.peer_exhausted("groq/llama", T0 - 1)  # already over: nothing
    peer.peer_exhausted("other/model", T0 + 20)  # not a deployment of ours: nothing
    clock.move_to(T0 + 20)
    assert _free(peer, clock)
    assert len(told) == 1  # a peer's word is not told again
