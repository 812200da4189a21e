"""The scoring lanes built from a pipeline's settings, over a fake HTTP session: which lanes there
are, how each is configured, and what each one sends."""

from __future__ import annotations

import copy
from typing import Any, cast

import aiohttp
import orjson

from gateway.backends.codec import ScoredRow
from gateway.config import PipelineConfig, parse_config
from gateway.scoring.breaker import State, Transition
from gateway.scoring.lanes import Lanes, breaker_settings, make_lanes, request_limit, scoring_session
from gateway.scoring.ratelimit import RateLimiter
from tests.unit.scoring.fakes import FakeSession, RecordingMetrics, qlik_answer

QLIK_URL = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/dep-42/realtime-predictions/actions/run"
DATAROBOT_URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/0123456789abcdef01234567/predictions"
PIPELINE: dict[str, Any] = {
    "name": "churn",
    "input_topic": "churn-features",
    "backend": {"type": "qlik", "url": QLIK_URL, "token": "tok-1"},
    "outputs": {"predictions": "churn-predictions", "explanations": "churn-explanations",
                "dead_letter": "churn-dead-letter"},
}
DEFERRED = {"explanations": {"mode": "deferred", "max_in_flight_requests": 3, "max_rows": 2, "sample_rate": 0.5}}
ROWS = [{"PlanType": "A", "BaseFee": float(i)} for i in range(5)]


def pipeline(**sections: Any) -> PipelineConfig:
    raw = copy.deepcopy(PIPELINE)
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    config = parse_config({"kafka": {"bootstrap_servers": "broker:9092"}, "pipelines": [raw]}, {})
    return config.pipelines[0]


def lanes(config: PipelineConfig) -> tuple[Lanes, FakeSession, RecordingMetrics, list[Transition]]:
    session = FakeSession(qlik_answer)
    metrics = RecordingMetrics()
    transitions: list[Transition] = []
    built = make_lanes(config, cast(aiohttp.ClientSession, session), metrics=metrics,
                       on_circuit=transitions.append)
    return built, session, metrics, transitions


async def test_inline_explanations_make_one_lane_that_asks_for_them() -> None:
    built, session, metrics, _ = lanes(pipeline())
    assert built.explain is None
    predict = built.predict
    outcomes, _ = await predict.score([dict(row) for row in ROWS])
    assert all(isinstance(o, ScoredRow) and o.explanation_kind == "shap" for o in outcomes)
    [sent] = session.sent
    assert sent.url == QLIK_URL + "?includeShap=true&includeNotPredictedReason=true"  # the config's defaults
    assert sent.headers["Authorization"] == "Bearer tok-1"
    assert predict.client.slots.limit == 4 and metrics.limits == [4]  # the default is auto, which starts at 4
    assert predict.limiter is None  # no rate_limit_per_minute
    assert metrics.requests == [("qlik", "shap", "200")]


async def test_the_lane_takes_retry_breaker_and_rate_settings_from_the_pipeline() -> None:
    config = pipeline(retry={"max_attempts": 4, "initial_backoff_ms": 50, "max_backoff_ms": 800,
                             "max_retry_after_s": 7, "on_backend_outage": "dead_letter"},
                      circuit_breaker={"failure_threshold": 5, "close_after_successes": 2},
                      backend={"rate_limit_per_minute": 100}, features=["BaseFee", "PlanType"])
    predict = lanes(config)[0].predict
    policy = predict.policy
    assert (policy.max_attempts, policy.initial_backoff_s, policy.max_backoff_s, policy.max_retry_after_s) == (
        4, 0.05, 0.8, 7.0)
    settings = predict.breaker.settings
    assert (settings.failure_threshold, settings.close_after_successes, settings.holds) == (5, 2, False)
    assert (settings.initial_backoff_s, settings.max_backoff_s, settings.max_in_flight) == (0.05, 0.8, 64)
    assert settings == breaker_settings(config, 64)  # auto's ceiling, max_in_flight_requests_limit
    assert isinstance(predict.limiter, RateLimiter) and predict.limiter.per_minute == 100
    assert predict.features == ["BaseFee", "PlanType"]


async def test_deferred_explanations_add_a_lane_sharing_the_breaker_and_rate_limiter() -> None:
    built, session, metrics, _ = lanes(pipeline(backend={"rate_limit_per_minute": 60_000}, **DEFERRED))
    predict, explain = built.predict, built.explain
    assert explain is not None
    assert explain.dispatcher.breaker is predict.breaker  # an outage is the deployment's, whichever lane sees it
    assert explain.dispatcher.limiter is predict.limiter  # the quota is per deployment
    assert explain.dispatcher.client is not predict.client
    assert explain.dispatcher.client.slots.limit == 3  # explanations.max_in_flight_requests
    assert metrics.limits == [4]  # only the prediction lane reports the pipeline's limit
    assert (explain.max_rows, explain.sample_rate) == (2, 0.5)
    # The prediction lane asks for no explanations; the explanation lane does, in requests of max_rows.
    await predict.score([dict(row) for row in ROWS])
    assert [s.url for s in session.sent] == [QLIK_URL + "?includeNotPredictedReason=true"]
    session.sent.clear()
    explained = await explain.explain([dict(row) for row in ROWS])
    assert [o.prediction for o in explained if isinstance(o, ScoredRow)] == [0.5, 1.5, 0.5, 1.5, 0.5]
    assert all(isinstance(o, ScoredRow) and o.explanation_kind == "shap" for o in explained)
    assert [s.url for s in session.sent] == [QLIK_URL + "?includeShap=true&includeNotPredictedReason=true"] * 3
    assert sorted(len(orjson.loads(s.body)["rows"]) for s in session.sent) == [1, 2, 2]  # 5 rows, max_rows 2
    # One breaker: a refusal seen by the prediction lane holds the explanation lane too.
    permit = predict.breaker.admit(0.0)
    assert permit is not None and not explain.dispatcher.holding
    predict.breaker.refused_configuration(0.0, permit, "qlik refused the request (HTTP 401)")
    assert predict.breaker.state is State.OPEN and explain.dispatcher.holding


async def test_an_adaptive_limit_starts_low_under_its_ceiling() -> None:
    config = pipeline(concurrency={"max_in_flight_requests": "auto", "max_in_flight_requests_limit": 32})
    assert request_limit(config) == 32
    built, _, metrics, _ = lanes(config)
    client = built.predict.client
    assert client.adaptive is not None and client.adaptive.maximum == 32
    assert client.slots.limit == 4 and metrics.limits == [4]
    assert built.predict.breaker.settings.max_in_flight == 32


async def test_a_datarobot_explanation_lane_asks_for_explanations_the_prediction_lane_does_not() -> None:
    backend = {"type": "datarobot", "url": DATAROBOT_URL, "token": "tok-2", "datarobot_key": "key-3",
               "max_explanations": 3, "body_format": "json"}
    built = lanes(pipeline(backend=backend, **DEFERRED))[0]
    assert built.explain is not None
    predicts = built.predict.codec.encode(None, ROWS)
    explains = built.explain.dispatcher.codec.encode(None, ROWS)
    assert "maxExplanations" not in predicts.url and predicts.explanations is None
    assert "maxExplanations=3" in explains.url
    assert predicts.headers["DataRobot-Key"] == explains.headers["DataRobot-Key"] == "key-3"


async def test_the_session_pools_a_connection_for_every_request_either_lane_may_have_in_flight() -> None:
    config = pipeline(retry={"request_timeout_s": 12}, **DEFERRED)
    session = scoring_session(config)
    try:
        assert session.connector is not None and session.connector.limit == 64 + 3  # auto's ceiling and the lane's
        assert session.timeout.total == 12
    finally:
        await session.close()
