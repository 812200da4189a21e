"""The run of ``qlik-batch``: the HTTP session, the signals, progress on stderr, the report on stdout."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

import aiohttp
import orjson

from gateway.backends.factory import make_codec, make_ssl_context
from gateway.commands.qlik_batch.api import BatchApi, BatchApiError, Endpoints
from gateway.commands.qlik_batch.cli import (
    EXIT_API,
    EXIT_FAILED,
    EXIT_READY,
    EXIT_TIMEOUT,
    SIGNAL_EXITS,
)
from gateway.commands.qlik_batch.job import BatchRun, RunResult
from gateway.commands.qlik_batch.spec import JobSpec
from gateway.config import PipelineConfig
from gateway.runtime.redaction import Redactor
from gateway.scoring.retry import RetryPolicy

HEARTBEAT_S = 30.0  # without a terminal: a line at least this often while the status stays the same


class Progress:
    """The job's status as it goes: one rewritten line on a terminal, else a line per change (and a
    heartbeat), so a CronJob's log shows the run without flooding it."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name
        self.stream = stream
        self.live = stream.isatty()
        self.last: tuple[str, float] | None = None

    def __call__(self, status: str, seconds: float) -> None:
        text = f"qlik-batch {self.name}: {status} ({seconds:.1f} s)"
        if self.live:
            self.stream.write("\r\x1b[K" + text)
            if status in ("ready", "error", "cancelled"):
                self.stream.write("\n")
        elif self.last is None or self.last[0] != status or seconds - self.last[1] >= HEARTBEAT_S:
            self.stream.write(text + "\n")
            self.last = (status, seconds)
        self.stream.flush()


def policy_of(pipeline: PipelineConfig) -> RetryPolicy:
    retry = pipeline.retry
    return RetryPolicy(retry.max_attempts, retry.initial_backoff_ms / 1000.0, retry.max_backoff_ms / 1000.0,
                       retry.max_retry_after_s)


async def run_command(pipeline: PipelineConfig, spec: JobSpec, *, timeout_s: float, poll_s: float,
                      secrets: Iterable[str] = ()) -> int:
    secrets = [s for s in secrets if s]
    codec = make_codec(pipeline, explain=False)
    authorization = {k: v for k, v in codec.headers.items() if k == "Authorization"}
    endpoints = Endpoints.from_realtime_url(pipeline.backend.url)
    stop = asyncio.Event()
    caught: list[signal.Signals] = []
    loop = asyncio.get_running_loop()
    for signum in SIGNAL_EXITS:
        loop.add_signal_handler(signum, _stopper(stop, caught, signum))
    try:
        async with aiohttp.ClientSession() as session:
            api = BatchApi(session, endpoints, authorization, policy=policy_of(pipeline),
                           request_timeout_s=pipeline.retry.request_timeout_s,
                           ssl_context=make_ssl_context(pipeline.backend.ca_file))
            run = BatchRun(api, spec, stop=stop, timeout_s=timeout_s, poll_s=poll_s,
                           progress=Progress(spec.name, sys.stderr))
            result = await run.run()
    except (BatchApiError, ValueError) as exc:
        print(f"scoring-gateway qlik-batch: {Redactor(secrets).text(str(exc))}", file=sys.stderr)
        return EXIT_API
    finally:
        for signum in SIGNAL_EXITS:
            loop.remove_signal_handler(signum)
    sys.stdout.write(orjson.dumps(report(result, spec, endpoints), option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    return _exit_status(result, caught, secrets)


def _stopper(stop: asyncio.Event, caught: list[signal.Signals], signum: signal.Signals) -> Callable[[], None]:
    def handle() -> None:
        caught.append(signum)
        stop.set()
    return handle


def _exit_status(result: RunResult, caught: list[signal.Signals], secrets: list[str]) -> int:
    if result.outcome == "ready":
        return EXIT_READY
    if result.outcome == "stopped":
        print(f"scoring-gateway qlik-batch: stopped by {caught[0].name if caught else 'a signal'}"
              f"{'; the job was cancelled' if result.cancelled else ''}", file=sys.stderr)
        return SIGNAL_EXITS.get(caught[0], 143) if caught else 143
    if result.outcome == "timeout":
        print(f"scoring-gateway qlik-batch: not ready within {result.seconds:.0f} s"
              f"{'; the job was cancelled' if result.cancelled else ''}", file=sys.stderr)
        return EXIT_TIMEOUT
    message = result.error_message or f"the job ended with status {result.outcome}"
    print(f"scoring-gateway qlik-batch: job failed: {Redactor(secrets).text(message)}", file=sys.stderr)
    return EXIT_FAILED


def report(result: RunResult, spec: JobSpec, endpoints: Endpoints) -> dict[str, object]:
    """What ran and what it produced: the configuration, its files (when ready), the job's details."""
    attributes = result.attributes
    return {
        "outcome": result.outcome,
        "seconds": round(result.seconds, 3),
        "deploymentId": endpoints.deployment,
        "batchPrediction": {"id": result.batch_prediction_id, "name": spec.name,
                            "action": "created" if result.created else "updated",
                            "status": attributes.get("status"), "errorMessage": attributes.get("errorMessage"),
                            "dataSetId": attributes.get("dataSetId", spec.dataset_id),
                            "indexColumn": attributes.get("indexColumn", spec.index_column),
                            "writeback": attributes.get("writeback", spec.writeback()),
                            "updatedAt": attributes.get("updatedAt")},
        "outputFiles": spec.output_files(attributes) if result.outcome == "ready" else [],
        "cancelled": result.cancelled,
        "job": result.job,
    }
