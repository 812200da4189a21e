"""The batch command's run: the pipeline's dispatcher as the scorer, the job, the summary.

The dispatcher and its HTTP session are built exactly as a streaming pipeline builds them, from
the same settings (batching.max_rows, concurrency, retry, rate limit, TLS). Segments hold
``max_rows × max_in_flight_requests`` rows (at most half of ``max_in_flight_records``, at least
one batch), two in flight, so the requests in flight stay full while a finished segment is being
written, and memory stays within ``max_in_flight_records`` rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import orjson

from gateway.commands.batch.file_input import FileInput
from gateway.commands.batch.job import JobSpec, run_job
from gateway.commands.batch.layout import ModelFacts
from gateway.commands.batch.options import BatchInputError, BatchOptions
from gateway.commands.batch.progress import Counters, Summary, summary_text
from gateway.commands.batch.scorer import TargetCapture, batch_codec
from gateway.commands.batch.scoring_loop import BatchStopped, StopRequest
from gateway.commands.batch.segments import BatchInput
from gateway.commands.batch.topic_input import TopicInput
from gateway.config import Config, PipelineConfig
from gateway.scoring.lanes import request_limit

# Backend settings that change what the API answers: a resumed run must have the same.
_BACKEND_KEYS = ("type", "url", "include_shap", "include_not_predicted_reason", "stringify_values",
                 "response_format", "body_format", "max_explanations", "explanation_algorithm",
                 "threshold_low", "threshold_high")


def segment_rows(pipeline: PipelineConfig) -> int:
    """Rows per segment; under ``auto`` concurrency, sized for its ceiling (``max_in_flight_requests_limit``)."""
    max_rows = int(pipeline.batching.max_rows)
    wanted = max_rows * request_limit(pipeline)
    return max(max_rows, min(wanted, int(pipeline.concurrency.max_in_flight_records) // 2))


def identity(options: BatchOptions, pipeline: PipelineConfig) -> dict[str, object]:
    """What a resumed run must share with the run it resumes (a key the backend's vendor lacks is None)."""
    settings = pipeline.backend.model_dump(include=set(_BACKEND_KEYS))
    backend = {key: settings.get(key) for key in _BACKEND_KEYS}
    features = list(pipeline.features) if pipeline.features is not None else None
    return {**options.identity(), "backend": backend, "features": features}


def make_input(config: Config, pipeline: PipelineConfig, options: BatchOptions,
               resolved: dict[str, object]) -> BatchInput:
    features = list(pipeline.features) if pipeline.features is not None else None
    if options.input_path is not None:
        assert options.input_format is not None
        return FileInput(options.input_path, options.input_format, index_column=options.index_column,
                         features=features)
    assert options.topic is not None
    return TopicInput(config.kafka, pipeline.input_topic, options.topic, index_column=options.index_column,
                      features=features, resolved=resolved)


def fingerprint(options: BatchOptions) -> dict[str, object]:
    path = options.input_path
    if path is None or not path.is_file():
        return {}
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


async def run_command(config: Config, pipeline: PipelineConfig, options: BatchOptions,
                      install_signals: Callable[[StopRequest], None]) -> int:
    from gateway.scoring.breaker import State, Transition
    from gateway.scoring.lanes import make_dispatcher, scoring_session

    stop = StopRequest()
    install_signals(stop)
    spec = JobSpec(options.writeback, options.names, options.format, options.layout, pipeline.backend.type,
                   options.index_name, options.index_column is not None, identity(options, pipeline),
                   int(pipeline.batching.max_rows), segment_rows(pipeline), overwrite=options.overwrite,
                   target=options.target, input_fingerprint=fingerprint(options))
    facts = ModelFacts()
    counters = Counters()

    def on_circuit(change: Transition) -> None:
        """A refused configuration stops the run (no retry heals it); an outage is waited out."""
        if change.after is State.OPEN and change.refused:
            stop.set(f"{change.reason}; fix it and run the same command again to continue")

    try:
        codec = TargetCapture(batch_codec(pipeline), facts)
        resolved = _resolved_range(spec)
        source = make_input(config, pipeline, options, resolved)
        async with scoring_session(pipeline) as session:
            dispatcher = make_dispatcher(pipeline, codec, session, metrics=counters, on_circuit=on_circuit)
            summary = await run_job(spec, source, dispatcher, codec.check_row, facts, stop, counters=counters)
    except BatchInputError as exc:
        print(f"scoring-gateway batch: {exc}", file=sys.stderr)
        return 2
    except BatchStopped as stopped:
        print(f"scoring-gateway batch: stopped: {stopped.reason}; {stopped.rows_done:,} of "
              f"{stopped.rows_total:,} rows are done and kept, the same command continues", file=sys.stderr)
        partial = Summary(rows=stopped.rows_done, predicted=stopped.totals.get("predicted", 0),
                          not_predicted=stopped.totals.get("not_predicted", 0), requests=counters.requests,
                          retries=counters.retries, status="stopped", reason=stopped.reason)
        print(f"summary: {orjson.dumps(partial.as_dict()).decode()}", flush=True)
        return 128 + stopped.signal if stopped.signal else 1
    except (OSError, ValueError) as exc:
        print(f"scoring-gateway batch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(summary_text(summary, str(options.writeback)), flush=True)
    print(f"summary: {orjson.dumps(summary.as_dict()).decode()}", flush=True)
    return 0


def _resolved_range(spec: JobSpec) -> dict[str, object]:
    """A topic range resolved by the run this one resumes (its state), else nothing yet."""
    from gateway.commands.batch.state import RunState

    if spec.overwrite:
        return {}
    try:
        state = RunState.open(spec.writeback, spec.names["predictions"], spec.identity, spec.segment_rows)
    except BatchInputError:
        return {}  # reported by the job itself, with the same message
    return state.extra if state.done else {}
