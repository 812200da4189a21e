"""``scoring-gateway replay`` as a user runs it (a subprocess), against a real broker and the emulator."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from gateway.commands.replay import PROVENANCE_HEADER
from gateway.kafka.embedded import create_topics, free_port
from testkit.processes import GatewayProcess
from testkit.topics import Topics, churn_features, values_of
from testkit.waits import async_wait_until
from tests.integration.replay_support import (
    HOUR_MS,
    Written,
    committed_offsets,
    config_for,
    document,
    finish,
    position_of,
    provenance_of,
    run_replay,
    scored,
    start_replay,
    write_dead_letters,
)

pytestmark = pytest.mark.integration


# ---- 1. the scenario ------------------------------------------------------------------

async def test_a_422_phase_is_replayed_into_predictions_exactly_once(tmp_path, topics, emu):
    n = 2000
    path = config_for(tmp_path, topics, {"type": "qlik", "url": emu.qlik_url(), "token": "test-token"},
                      batching={"max_rows": 100, "linger_ms": 5})
    emu.configure(error_rate={"422": 1.0})  # a bad model deploy: every request refused
    gateway = GatewayProcess(path, tmp_path / "gateway.log").start()
    try:
        await topics.produce([orjson.dumps(churn_features(i)) for i in range(n)],
                             [f"c{i % 97}".encode() for i in range(n)])
        dead = await topics.read(topics.dead_letter, lambda r: len(r) >= n, timeout_s=180)
        assert {(d["stage"], d["status"]) for d in values_of(dead)} == {("score", 422)}
        emu.configure(error_rate={})  # the backend is fixed

        first = run_replay(path)
        assert first.status == 0, first.stderr
        assert (first.summary["selected"], first.summary["republished"], first.summary["read"]) == (n, n, n)

        predictions = await topics.read(topics.predictions, lambda r: len(r) >= n, timeout_s=180, settle_s=2.0)
        by_dead_letter = Counter(provenance_of(r) for r in predictions)
        assert by_dead_letter == Counter({f"{topics.dead_letter}/{r.partition}/{r.offset}": 1 for r in dead})
        ids = [p["id"] for p in values_of(predictions)]
        assert len(ids) == len(set(ids)) == n  # each re-published record predicted exactly once
        republished = [r for r in await topics.read_all(topics.input) if provenance_of(r)]
        assert {f"{r.topic}/{r.partition}/{r.offset}" for r in republished} == set(ids)
        original = {f"{topics.dead_letter}/{r.partition}/{r.offset}": orjson.loads(r.value)["raw"] for r in dead}
        assert all(r.value.decode() == original[provenance_of(r)] for r in republished)

        second = run_replay(path)
        assert second.status == 0, second.stderr
        assert (second.summary["read"], second.summary["republished"]) == (0, 0)
        assert len(await topics.read_all(topics.input)) == 2 * n
    finally:
        gateway.stop()


# ---- 2. stage and time filters ----------------------------------------------------------------

async def test_stage_and_time_select_exactly_and_values_keys_headers_come_back(tmp_path, topics):
    now = int(time.time() * 1000)
    windows = {"old": now - 3 * HOUR_MS, "mid": now - 2 * HOUR_MS, "new": now - HOUR_MS}
    items: list[Written] = []
    for w, ts in windows.items():
        for stage in ("score", "not_predicted", "validate", "decode"):
            for j in range(2):
                items.append(Written(stage, f'{{"w": "{w}", "stage": "{stage}", "j": {j}}}'.encode(),
                                     f"{w}-{stage}-{j}".encode(), [("h", f"{w}{j}".encode()), ("h2", b"\x00\xff")],
                                     ts + j))
    items.append(Written("decode", b"\xff\xfe not utf-8 \x00", b"binary", [("h", b"b")], windows["mid"] + 5))
    items.append(Written("decode", None, b"tombstone", [], windows["new"] + 5))
    await write_dead_letters(topics, items)
    path = config_for(tmp_path, topics)

    def expect(stages: set[str], since: int, until: int | None) -> list[Written]:
        return [i for i in items if i.stage in stages and i.timestamp_ms >= since
                and (until is None or i.timestamp_ms < until)]

    # score only, in the middle window: epoch ms for --since, ISO-8601 without zone (UTC) for --until
    until_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(windows["new"] / 1000))
    until_ms = (windows["new"] // 1000) * 1000
    first = run_replay(path, "--stage", "score", "--since", str(windows["mid"]), "--until", until_iso)
    assert first.status == 0, first.stderr
    selected = expect({"score"}, windows["mid"], until_ms)
    readable_by_stage = sum(1 for i in items if i.stage != "score")
    assert first.summary | {"duration_s": 0} == first.summary | {
        "read": len(items), "selected": len(selected), "republished": len(selected),
        "skipped_stage": readable_by_stage, "skipped_time": len(items) - len(selected) - readable_by_stage,
        "unreadable": 0, "finished": True, "duration_s": 0}
    after_first = await topics.read_all(topics.input)
    assert_republished(after_first, selected, topics)

    # every stage from the middle window on, starting over (ISO-8601 with a zone)
    since_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(windows["mid"] / 1000))
    second = run_replay(path, "--stage", "all", "--from-beginning", "--since", since_iso)
    assert second.status == 0, second.stderr
    again = expect({"score", "not_predicted", "validate", "decode"}, (windows["mid"] // 1000) * 1000, None)
    assert (second.summary["read"], second.summary["republished"], second.summary["skipped_stage"]) == \
        (len(items), len(again), 0)
    everything = await topics.read_all(topics.input)
    assert_republished([r for r in everything if r not in after_first], again, topics)
    tombstone = [r for r in everything if r.key == b"tombstone"]
    assert len(tombstone) == 1 and tombstone[0].value is None
    assert [r.value for r in everything if r.key == b"binary"] == [b"\xff\xfe not utf-8 \x00"]


def assert_republished(records: list[Any], expected: list[Written], topics: Topics) -> None:
    by_position = {w.position: w for w in expected}
    got = {position_of(provenance_of(r) or "", topics): r for r in records}
    assert len(got) == len(records) == len(expected)
    assert got.keys() == by_position.keys()
    for position, record in got.items():
        written = by_position[position]
        assert (record.value, record.key) == (written.original, written.key)
        assert list(record.headers)[:-1] == written.headers
        assert list(record.headers)[-1] == (PROVENANCE_HEADER, f"{topics.dead_letter}/{position}".encode())


# ---- 3. dry run -------------------------------------------------------------------------------

async def test_a_dry_run_publishes_and_commits_nothing(tmp_path, topics):
    items = [scored(i, "score" if i % 4 else "not_predicted") for i in range(40)]
    await write_dead_letters(topics, items)
    path = config_for(tmp_path, topics)
    dry = run_replay(path, "--dry-run")
    assert dry.status == 0, dry.stderr
    score = sum(1 for i in items if i.stage == "score")
    assert (dry.summary["selected"], dry.summary["republished"], dry.summary["dry_run"]) == (score, 0, True)
    assert await topics.read_all(topics.input) == []
    assert await committed_offsets(topics) == dict.fromkeys(range(topics.partitions))

    real = run_replay(path)
    assert real.status == 0, real.stderr
    assert (real.summary["selected"], real.summary["republished"]) == (score, score)
    assert len(await topics.read_all(topics.input)) == score


# ---- 4. resumability --------------------------------------------------------------------------

async def test_kill_dash_nine_then_rerun_covers_everything_duplicating_only_after_the_last_commit(tmp_path, topics):
    n = 8000
    items = [scored(i) for i in range(n)]
    await write_dead_letters(topics, items)
    path = config_for(tmp_path, topics)
    first = start_replay(path, "--rate", "2000")
    try:
        async def some_committed() -> bool:
            assert first.poll() is None, "the first run ended before it could be interrupted"
            return sum(o or 0 for o in (await committed_offsets(topics)).values()) >= n // 5
        await async_wait_until(some_committed, 90, "a fifth of the dead letters committed", interval_s=0.1)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    at_kill = {p: o or 0 for p, o in (await committed_offsets(topics)).items()}
    assert n // 5 <= sum(at_kill.values()) < n  # interrupted midway

    second = run_replay(path)
    assert second.status == 0, second.stderr
    assert second.summary["read"] == n - sum(at_kill.values())  # resumed at the last commit
    counts = Counter(position_of(provenance_of(r) or "", topics) for r in await topics.read_all(topics.input))
    assert set(counts) == {w.position for w in items}  # every selected dead letter re-published
    for w in items:
        if w.offset < at_kill[w.partition]:
            assert counts[w.position] == 1, w.position  # committed before the kill: never twice
    third = run_replay(path)
    assert (third.status, third.summary["read"], third.summary["republished"]) == (0, 0, 0)


async def test_ctrl_c_commits_what_it_published_so_the_rerun_duplicates_nothing(tmp_path, topics):
    n = 6000
    items = [scored(i) for i in range(n)]
    await write_dead_letters(topics, items)
    path = config_for(tmp_path, topics)
    first = start_replay(path, "--rate", "1500", capture=True)
    try:
        async def some_committed() -> bool:
            assert first.poll() is None, "the first run ended before it could be interrupted"
            return sum(o or 0 for o in (await committed_offsets(topics)).values()) >= n // 5
        await async_wait_until(some_committed, 90, "a fifth of the dead letters committed", interval_s=0.1)
        first.send_signal(signal.SIGINT)
        interrupted = finish(first)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert interrupted.status == 130, interrupted.stderr
    assert interrupted.summary["finished"] is False
    committed = sum(o or 0 for o in (await committed_offsets(topics)).values())
    assert n // 5 <= interrupted.summary["republished"] == committed < n  # published = committed: the step ended
    second = run_replay(path)
    assert (second.status, second.summary["read"], second.summary["republished"]) == (0, n - committed, n - committed)
    counts = Counter(position_of(provenance_of(r) or "", topics) for r in await topics.read_all(topics.input))
    assert counts == Counter({w.position: 1 for w in items})


async def test_two_replays_at_once_share_the_partitions_and_publish_each_record_once(tmp_path, topics):
    n = 8000  # 20 s at --rate 400: long enough for the second run to join while the first works
    items = [scored(i) for i in range(n)]
    await write_dead_letters(topics, items)
    path = config_for(tmp_path, topics)
    procs = [start_replay(path, "--rate", "400", capture=True)]
    try:
        async def started() -> bool:
            assert procs[0].poll() is None, "the first run ended before the second joined"
            return sum(o or 0 for o in (await committed_offsets(topics)).values()) > 0
        await async_wait_until(started, 90, "the first run under way", interval_s=0.1)
        procs.append(start_replay(path, "--rate", "400", capture=True))
        runs = [finish(proc, 120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert [r.status for r in runs] == [0, 0], [r.stderr for r in runs]
    assert sum(r.summary["republished"] for r in runs) == n
    assert all(r.summary["republished"] > 0 for r in runs)  # the second run did take partitions over
    assert all(r.summary["commit_failures"] == 0 for r in runs)
    counts = Counter(position_of(provenance_of(r) or "", topics) for r in await topics.read_all(topics.input))
    assert counts == Counter({w.position: 1 for w in items})


# ---- 5. unreadable dead-letter records -------------------------------------------------------

async def test_unreadable_dead_letter_records_are_counted_and_skipped(tmp_path, topics):
    good = [scored(i) for i in range(30)]
    bad_values = [b"not json", b"[1, 2, 3]", b'{"id": "x"}', b'"a string"', b"{\"id\": 1"] * 2
    bad_values += [document(scored(i), pipeline="fraud") for i in range(5)]
    bad = [scored(100 + i) for i in range(len(bad_values))]
    await write_dead_letters(topics, good + bad, [document(w, n=i) for i, w in enumerate(good)] + bad_values)
    ran = run_replay(config_for(tmp_path, topics))
    assert ran.status == 0, ran.stderr
    assert (ran.summary["unreadable"], ran.summary["republished"], ran.summary["read"]) == \
        (len(bad), len(good), len(good) + len(bad))
    warnings = [line for line in ran.stderr.splitlines() if line.startswith("replay: unreadable")]
    assert len(warnings) == 10 and "replay: more than 10 unreadable" in ran.stderr
    assert all(f"{topics.dead_letter}/" in w for w in warnings)
    republished = await topics.read_all(topics.input)
    assert {position_of(provenance_of(r) or "", topics) for r in republished} == {w.position for w in good}


# ---- errors: one line, the right exit status --------------------------------------------------

async def test_an_unknown_pipeline_is_exit_2_naming_it(tmp_path, topics):
    ran = run_replay(config_for(tmp_path, topics), pipeline="fraud")
    assert ran.status == 2
    assert ran.stderr.strip().splitlines() == [
        "replay: unknown pipeline 'fraud' (the config has: churn)"]


async def test_a_missing_dead_letter_topic_is_exit_1_naming_it(tmp_path, broker):
    topics = Topics(broker.bootstrap)
    await create_topics(broker.bootstrap, {topics.input: 1})
    ran = run_replay(config_for(tmp_path, topics))
    assert ran.status == 1
    assert ran.stderr.strip().splitlines() == [
        f"replay: pipeline churn's dead-letter topic (outputs.dead_letter) {topics.dead_letter!r} does not exist "
        "(or these credentials may not read it)"]


async def test_an_unreachable_broker_is_exit_1_naming_it(tmp_path):
    topics = Topics(f"127.0.0.1:{free_port()}")
    ran = run_replay(config_for(tmp_path, topics), timeout_s=90)
    assert ran.status == 1
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"replay: kafka {topics.bootstrap}: unreachable"), lines
