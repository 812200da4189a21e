"""The campaign's report reads every scenario's notes it prints: the API outages' table takes the
four API outages' figures and ignores the auth outage's (a full run has both)."""

from __future__ import annotations

from benchmarks.chaos import outage_table
from benchmarks.chaos_campaign import ScenarioResult
from benchmarks.chaos_scenarios import _judge_outage


def test_the_outage_table_has_a_row_per_api_outage_and_none_for_the_auth_outage() -> None:
    api = ScenarioResult("api-503", "503 to every request")
    api.notes["outage"] = {"seconds": 60.0, "open_reported_after_s": 1.1, "requests_per_s": 0.8,
                           "counted_s": 57.0, "emulator_requests_counted": 46,
                           "probe_interval_s": {"n": 45, "min": 1.0, "median": 1.3, "max": 2.0},
                           "ready_again_after_s": 0.3, "all_predicted_after_s": 0.5, "goal_s": 4.0}
    auth = ScenarioResult("auth-outage", "401 outage, then healed")
    _judge_outage([(10.2, 503, "circuit open: 401 invalid API key", 1.0), (10.4, 503, "circuit open: 401", 1.0)],
                  10.0, auth)  # the auth outage's own judgement writes its notes
    assert auth.passed and auth.notes
    found = outage_table([auth, api])
    assert found is not None
    rows = found.splitlines()[2:]
    assert rows == ["| api-503 | 60.0 | 1.1 | 0.8 | 57.0 | 46 | 1.3 | 0.3 | 0.5 | 4.0 |"]
