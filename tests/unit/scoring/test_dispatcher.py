"""The dispatcher's accounting of one batch, over a fake backend client and codec: retries and
Retry-After, refusals of the data and the bisection that isolates the rows refused, bodies over
``max_bytes``, and the metrics of each branch (the breaker's part: test_dispatcher_breaker.py)."""

from __future__ import annotations

import asyncio
from itertools import pairwise

from gateway.backends.codec import ScoredRow
from gateway.backends.errors import RetryableError
from gateway.scoring.breaker import BreakerSettings, State
from gateway.stream.records import STAGE_NOT_PREDICTED, STAGE_SCORE, STAGE_VALIDATE, Rejected
from tests.unit.scoring.dispatch_rig import poisoned, predictions, rig, rows, unavailable
from tests.unit.scoring.fakes import RecordingLimiter, Script, until

# ---- success and retries -------------------------------------------------------------------------

async def test_a_batch_the_backend_scores_gets_one_prediction_per_row_in_order() -> None:
    r = rig(Script())
    sends = 0

    def sending() -> None:
        nonlocal sends
        sends += 1

    outcomes, _ = await r.dispatcher.score(rows(4), sending)
    assert predictions(outcomes) == [0, 1, 2, 3]
    assert r.backend.requests == [[0, 1, 2, 3]] and sends == 1
    assert r.metrics.retries == [] and r.metrics.circuits == [] and r.breaker.state is State.CLOSED


async def test_a_batch_waiting_for_a_request_slot_is_not_yet_sent() -> None:
    # Until its request has a slot, no backend works on a batch: a drain may abandon it at no cost.
    r = rig(Script(), limit=1)
    r.backend.gate = asyncio.Event()
    sent: list[str] = []
    first = asyncio.create_task(r.dispatcher.score(rows(1), lambda: sent.append("first")))
    second = asyncio.create_task(r.dispatcher.score(rows(1), lambda: sent.append("second")))
    await until(lambda: r.backend.slots.waiting == 1)
    assert sent == ["first"]
    r.backend.gate.set()
    await asyncio.gather(first, second)
    assert sent == ["first", "second"]


async def test_a_row_the_model_did_not_predict_is_rejected_with_the_vendors_reason() -> None:
    r = rig(Script())
    outcomes = await r.score(rows(3, **{"1": {"not_predicted": "missing value for PlanType"}}))
    assert predictions(outcomes)[0::2] == [0, 2]
    assert outcomes[1] == Rejected(STAGE_NOT_PREDICTED, "missing value for PlanType", 200, 1)


async def test_retryable_failures_are_retried_and_a_later_success_counts_its_attempts() -> None:
    r = rig(Script(unavailable(), unavailable()), max_attempts=3)
    outcomes = await r.score(rows(2, **{"0": {"not_predicted": "no model"}}))
    assert outcomes == [Rejected(STAGE_NOT_PREDICTED, "no model", 200, 3), ScoredRow(prediction=1)]
    assert r.backend.requests == [[0, 1]] * 3  # the whole batch each time: a 503 is not the data's
    assert r.metrics.retries == ["503", "503"]
    assert [attempt for attempt, _ in r.policy.asked] == [1, 2]


async def test_retries_run_out_after_max_attempts_and_every_row_is_rejected_at_stage_score() -> None:
    r = rig(Script(*[unavailable()] * 10), max_attempts=3)
    sends = 0

    def sending() -> None:
        nonlocal sends
        sends += 1

    outcomes, _ = await r.dispatcher.score(rows(2), sending)
    gave_up = Rejected(STAGE_SCORE, "gave up after 3 attempts: Service Unavailable", 503, 3)
    assert outcomes == [gave_up, gave_up]
    assert len(r.backend.requests) == 3 and sends == 3  # ``sending`` before every request, retries too
    assert r.metrics.retries == ["503", "503"]  # the last attempt is not a retry
    assert r.breaker.state is State.CLOSED  # under the threshold: this batch's failure, not an outage


async def test_retry_after_is_honoured_up_to_its_cap_between_attempts_and_holds_the_rate_limiter() -> None:
    too_many = RetryableError("fake", "rate limit", 429, reason="429", retry_after=30.0)
    limiter = RecordingLimiter()
    r = rig(Script(too_many, too_many), max_attempts=3, limiter=limiter, max_retry_after_s=0.03)
    outcomes = await r.score(rows(1))
    assert predictions(outcomes) == [0]
    assert r.policy.asked == [(1, 30.0), (2, 30.0)]  # the vendor's value reaches the policy ...
    gaps = [b - a for a, b in pairwise(r.backend.sent_at)]
    assert all(0.03 <= gap < 5.0 for gap in gaps), gaps  # ... which waits the capped 0.03 s, not 30 s
    assert limiter.holds == [0.03, 0.03]  # and no request of the lane starts before then
    assert limiter.acquired == 3
    assert r.metrics.retries == ["429", "429"]


# ---- data errors and bisection -------------------------------------------------------------------

async def test_one_rejected_row_among_eight_is_isolated_by_bisection_in_seven_requests() -> None:
    r = rig(poisoned())
    outcomes = await r.score(rows(8, **{"5": {"bad": True}}))
    assert predictions(outcomes[:5]) == [0, 1, 2, 3, 4] and predictions(outcomes[6:]) == [6, 7]
    assert outcomes[5] == Rejected(STAGE_SCORE, "row 5: unknown category", 422, 1)
    # 1 + 2 per halving (log2 8 = 3): each half must be sent anyway, since its good rows need scoring.
    assert sorted(r.backend.requests) == sorted([
        [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [6, 7], [4], [5]])
    assert r.metrics.retries == []  # a refusal of the data is never retried as it was


async def test_two_rejected_rows_are_isolated_each_with_its_own_reason() -> None:
    r = rig(poisoned())
    outcomes = await r.score(rows(8, **{"2": {"bad": True}, "5": {"bad": True}}))
    assert outcomes[2] == Rejected(STAGE_SCORE, "row 2: unknown category", 422, 1)
    assert outcomes[5] == Rejected(STAGE_SCORE, "row 5: unknown category", 422, 1)
    assert predictions([o for i, o in enumerate(outcomes) if i not in (2, 5)]) == [0, 1, 3, 4, 6, 7]
    assert len(r.backend.requests) == 11  # 1 + 2 + 4 + 4: the halves holding no bad row stop early
    assert r.metrics.retries == [] and r.metrics.circuits == []


async def test_data_errors_do_not_trip_the_breaker() -> None:
    r = rig(poisoned(), breaker=BreakerSettings(failure_threshold=1, initial_backoff_s=0.004, max_backoff_s=0.02))
    for _ in range(5):
        assert await r.score(rows(1, **{"0": {"bad": True}})) == [
            Rejected(STAGE_SCORE, "row 0: unknown category", 422, 1)]
    assert r.breaker.state is State.CLOSED and not r.dispatcher.holding
    assert r.metrics.circuits == [] and r.transitions == [] and r.metrics.retries == []
    assert len(r.backend.requests) == 5  # one request each: a data error is not retried


async def test_a_413_splits_the_batch_like_any_refusal_of_the_data() -> None:
    r = rig(poisoned(413))
    outcomes = await r.score(rows(2, **{"1": {"bad": True}}))
    assert outcomes == [ScoredRow(prediction=0), Rejected(STAGE_SCORE, "row 1: unknown category", 413, 1)]


# ---- bodies over max_bytes -----------------------------------------------------------------------

async def test_a_body_over_max_bytes_is_split_before_sending_and_a_lone_oversized_row_is_rejected() -> None:
    batch = rows(4, **{"1": {"pad": "p" * 200}})
    r = rig(Script(), max_bytes=90)  # two plain rows fit (about 40 bytes each), the padded one alone does not
    sends = 0

    def sending() -> None:
        nonlocal sends
        sends += 1

    outcomes, _ = await r.dispatcher.score(batch, sending)
    assert predictions([outcomes[0], *outcomes[2:]]) == [0, 2, 3]
    rejected = outcomes[1]
    assert isinstance(rejected, Rejected) and rejected.stage == STAGE_VALIDATE
    assert rejected.reason.startswith("encoded row is ") and rejected.reason.endswith("over batching.max_bytes 90")
    assert rejected.status is None and rejected.attempts == 0
    assert sorted(r.backend.requests) == [[0], [2, 3]] and sends == 2  # nothing too large ever goes out
    assert r.metrics.retries == [] and r.metrics.circuits == []
