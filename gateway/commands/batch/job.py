"""One batch job from start to end, whatever scores it: the command line's dispatcher over HTTP, or
the emulator's batch-prediction jobs scoring in process.

In order: the writeback folder and the run's state (resume, start over, or refuse a folder that
holds another run's files); the input's first pass, which checks it; then the scoring loop and
the final files. Everything that can make the input unusable is found before the first request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gateway.commands.batch.layout import Layout, ModelFacts
from gateway.commands.batch.options import NOT_PREDICTED, PREDICTIONS, BatchInputError
from gateway.commands.batch.progress import Counters, Progress, Summary
from gateway.commands.batch.scorer import Scorer
from gateway.commands.batch.scoring_loop import BatchStopped, ScoringLoop, StopRequest
from gateway.commands.batch.segments import BatchInput
from gateway.commands.batch.state import RunState
from gateway.commands.batch.writeback import existing, remove


@dataclass
class JobSpec:
    writeback: Path
    names: dict[str, str]  # file kind -> file name
    fmt: str
    layout: str
    backend: str
    index_name: str
    index_given: bool
    identity: dict[str, object]
    max_rows: int
    segment_rows: int
    in_flight_segments: int = 2
    overwrite: bool = False
    target: str | None = None
    input_fingerprint: dict[str, object] = field(default_factory=dict)  # a file's size and mtime


def open_state(spec: JobSpec) -> RunState:
    """The run's state; raises BatchInputError when the folder cannot be used for this run."""
    try:
        spec.writeback.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchInputError(f"cannot create the writeback folder {str(spec.writeback)!r}: "
                              f"{exc.strerror or exc}") from None
    if not spec.writeback.is_dir():
        raise BatchInputError(f"--writeback {str(spec.writeback)!r} is not a folder")
    state = RunState.open(spec.writeback, spec.names[PREDICTIONS], spec.identity, spec.segment_rows) \
        if not spec.overwrite else RunState(spec.writeback / f".{spec.names[PREDICTIONS]}.batch.json",
                                            spec.writeback / f".{spec.names[PREDICTIONS]}.parts",
                                            spec.identity, spec.segment_rows)
    if spec.overwrite:
        state.remove()
        remove(spec.writeback, spec.names.values())
    elif not state.path.exists():
        found = existing(spec.writeback, spec.names)
        if found:
            raise BatchInputError(f"{spec.writeback / found[0]} already exists: use --overwrite to replace it")
    return state


async def run_job(spec: JobSpec, source: BatchInput, scorer: Scorer,
                  check_row: Callable[[Mapping[str, object]], str | None], facts: ModelFacts,
                  stop: StopRequest, *, counters: Counters | None = None, stream: IO[str] | None = None,
                  terminal: bool | None = None, feature_order: list[str] | None = None) -> Summary:
    """Run the job to its end; raises BatchInputError (nothing sent) or BatchStopped (resumable)."""
    started = time.monotonic(), time.process_time()
    state = open_state(spec)
    if state.complete:
        missing = [name for name in state.files if not (spec.writeback / name).exists()]
        if missing:
            raise BatchInputError(f"this run completed earlier but {missing[0]} is gone: use --overwrite "
                                  "to score again")
        return _summary(state, Summary(status="already complete", files=list(state.files)), started)
    try:
        info = await source.inspect()
        stored = state.extra.get("fingerprint")
        if state.done and stored is not None and stored != spec.input_fingerprint:
            raise BatchInputError("the input file changed since this run began: use --overwrite to start over")
        if not state.done:
            state.extra = {**info.extra, "fingerprint": spec.input_fingerprint}
        if state.target is not None:
            facts.target = state.target
        state.save()
        layout = Layout(spec.layout, spec.backend, spec.index_name, spec.index_given,
                        feature_order=feature_order or list(info.send or info.columns),
                        target_override=spec.target, facts=facts)
        progress = Progress(info.rows, state.rows_done, stream=stream, terminal=terminal)
        resumed = state.rows_done
        loop = ScoringLoop(source, info, scorer, check_row, layout, state, spec.writeback, spec.names,
                           spec.fmt, spec.max_rows, progress, spec.in_flight_segments)
        try:
            files = await loop.run(stop)
        except BatchStopped as stopped:
            stopped.rows_done, stopped.rows_total = state.rows_done, info.rows
            stopped.totals = state.totals()
            raise
        finally:
            progress.close()
    finally:
        await source.close()
    summary = Summary(files=files, resumed_rows=resumed, input=info.description)
    if counters is not None:
        summary.requests, summary.retries = counters.requests, counters.retries
    return _summary(state, summary, started)


def _summary(state: RunState, summary: Summary, started: tuple[float, float]) -> Summary:
    totals = state.totals()
    summary.rows = totals.get("rows", 0)
    summary.predicted = totals.get("predicted", 0)
    summary.not_predicted = totals.get(NOT_PREDICTED, 0)
    summary.elapsed_s = time.monotonic() - started[0]
    summary.cpu_s = time.process_time() - started[1]
    return summary
