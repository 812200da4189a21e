"""The circuit breaker's state machine, fed samples with a clock the test controls."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.scoring.breaker import BreakerSettings, CircuitBreaker, Permit, State

SETTINGS = BreakerSettings(failure_threshold=3, failure_ratio=0.5, window_s=10.0, min_requests=6,
                           close_after_successes=3, initial_backoff_s=1.0, max_backoff_s=8.0, max_in_flight=8)


def breaker(**changes: object) -> CircuitBreaker:
    fields = {name: getattr(SETTINGS, name) for name in SETTINGS.__slots__}
    fields.update(changes)
    return CircuitBreaker(BreakerSettings(**fields), random.Random(1))  # type: ignore[arg-type]


def permit(b: CircuitBreaker, now: float) -> Permit:
    granted = b.admit(now)
    assert granted is not None
    return granted


def fail(b: CircuitBreaker, now: float, n: int = 1, retry_after: float = 0.0) -> None:
    for _ in range(n):
        b.failed(now, permit(b, now), "qlik: HTTP 503: Service Unavailable", retry_after)


def test_consecutive_outage_failures_open_it_and_a_success_resets_the_count() -> None:
    b = breaker()
    fail(b, 0.0, 2)
    b.succeeded(0.0, permit(b, 0.0))
    fail(b, 0.0, 2)
    assert b.state is State.CLOSED and not b.holding()
    t = b.failed(0.0, permit(b, 0.0), "qlik: HTTP 503: down")
    assert t is not None and (t.before, t.after) == (State.CLOSED, State.OPEN)
    assert b.state is State.OPEN and b.holding() and b.reason == "qlik: HTTP 503: down"


def test_a_failure_ratio_over_the_window_opens_it() -> None:
    b = breaker(failure_threshold=100)
    for i in range(6):  # ok, fail, ok, fail, ok, fail: never 3 in a row, half of 6 failed
        now = float(i)
        assert b.state is State.CLOSED
        if i % 2 == 1:
            fail(b, now)
        else:
            b.succeeded(now, permit(b, now))
    assert b.state is State.OPEN


def test_old_samples_leave_the_window() -> None:
    b = breaker(failure_threshold=100)
    fail(b, 0.0, 3)
    for i in range(3):
        b.succeeded(20.0 + i, permit(b, 20.0 + i))  # the failures are 20 s old: out of a 10 s window
    assert b.state is State.CLOSED


def test_open_lets_one_probe_through_at_a_time_not_before_its_time() -> None:
    b = breaker()
    fail(b, 0.0, 3)
    assert 0.5 <= b.probe_at <= 1.0  # equal jitter on the first backoff step (1 s)
    assert b.admit(0.1) is None
    probe = permit(b, b.probe_at)
    assert probe.probe
    assert b.admit(b.probe_at + 100) is None  # the probe is still out
    b.failed(b.probe_at, probe, "still down")
    assert b.state is State.OPEN


def test_probe_backoff_grows_up_to_the_cap_and_honours_retry_after() -> None:
    b = breaker()
    fail(b, 0.0, 3)
    now, gaps = 0.0, []
    for _ in range(8):
        now = b.probe_at
        b.failed(now, permit(b, now), "down")
        gaps.append(b.probe_at - now)
    assert gaps[0] >= 1.0 and max(gaps) <= 8.0 and gaps[-1] >= 4.0  # 2, 4, 8, 8 … with jitter in [½, 1]
    now = b.probe_at
    b.failed(now, permit(b, now), "slow down", retry_after_s=30.0)
    assert b.probe_at - now == pytest.approx(30.0)


def test_answers_to_requests_sent_before_it_opened_do_not_move_the_probe() -> None:
    b = breaker()
    early = [permit(b, 0.0) for _ in range(5)]
    for p in early[:3]:
        b.failed(0.0, p, "down")
    scheduled = b.probe_at
    for p in early[3:]:
        b.failed(0.5, p, "down")
    assert b.probe_at == scheduled


def test_a_successful_probe_half_opens_it_and_traffic_ramps_back_then_closes() -> None:
    b = breaker()
    fail(b, 0.0, 3)
    t = b.succeeded(b.probe_at, permit(b, b.probe_at))
    assert t is not None and t.after is State.HALF_OPEN and not b.holding()
    now = b.probe_at + 1
    first = permit(b, now)
    assert b.admit(now) is None  # ramp: one at a time at first
    b.succeeded(now, first)
    two = [permit(b, now), permit(b, now)]
    assert b.admit(now) is None
    b.succeeded(now, two[0])
    t = b.succeeded(now, two[1])
    assert t is not None and t.after is State.CLOSED and b.reason is None


def test_an_outage_failure_while_half_open_reopens_it() -> None:
    b = breaker()
    fail(b, 0.0, 3)
    b.succeeded(b.probe_at, permit(b, b.probe_at))
    t = b.failed(5.0, permit(b, 5.0), "down again")
    assert t is not None and (t.before, t.after) == (State.HALF_OPEN, State.OPEN)


def test_a_configuration_refusal_opens_it_with_a_fixed_probe_interval_until_answered_otherwise() -> None:
    b = breaker()
    t = b.refused_configuration(0.0, permit(b, 0.0), "qlik refused the request (HTTP 401): bad key")
    assert t is not None and t.refused and b.holding() and b.probe_at == 8.0
    for now in (8.0, 16.0):
        b.refused_configuration(now, permit(b, now), "qlik refused the request (HTTP 401): bad key")
        assert b.probe_at == now + 8.0  # max_backoff every time: a person must fix it
    t = b.succeeded(24.0, permit(b, 24.0))
    assert t is not None and t.after is State.HALF_OPEN and not b.refused


def test_a_refusal_that_turns_into_an_outage_is_an_outage() -> None:
    b = breaker()
    b.refused_configuration(0.0, permit(b, 0.0), "HTTP 401")
    t = b.failed(8.0, permit(b, 8.0), "HTTP 503")
    assert t is not None and t.after is State.OPEN and not t.refused and b.reason == "HTTP 503"


def test_when_it_does_not_hold_requests_still_go_out_while_it_reports_open() -> None:
    b = breaker(holds=False)
    fail(b, 0.0, 3)
    assert b.state is State.OPEN and not b.holding()
    assert all(b.admit(0.0) is not None for _ in range(20))
    b.refused_configuration(0.0, permit(b, 0.0), "HTTP 403")
    assert b.holding()  # refusals always hold


def test_samples_without_a_permit_are_counted_but_hold_nothing() -> None:
    b = breaker()
    for _ in range(3):
        b.failed(0.0, None, "canary failed")
    assert b.state is State.OPEN
    assert b.succeeded(b.probe_at, None) is not None and b.state is State.HALF_OPEN


OPERATIONS = st.lists(st.tuples(st.sampled_from(["admit", "ok", "fail", "refuse", "abandon", "tick"]),
                                st.floats(0.0, 3.0)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_invariants_hold_whatever_happens(operations: list[tuple[str, float]]) -> None:
    b = breaker()
    now, out = 0.0, []
    for op, dt in operations:
        now += dt
        if op == "admit":
            granted = b.admit(now)
            if granted is not None:
                out.append(granted)
        elif op == "tick":
            continue
        elif out:
            p = out.pop(random.Random(len(out)).randrange(len(out)))
            if op == "ok":
                b.succeeded(now, p)
            elif op == "fail":
                b.failed(now, p, "down")
            elif op == "refuse":
                b.refused_configuration(now, p, "refused")
            else:
                b.abandoned(p)
        assert sum(1 for p in out if p.probe) <= 1  # an open breaker lets one probe out at a time
        assert b._in_flight == len(out)
        if b.state is State.CLOSED:
            assert b.reason is None and not b.holding()
    for p in out:
        b.abandoned(p)
    assert b._in_flight == 0
