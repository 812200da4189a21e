"""``scoring-gateway replay``: parse the options, find the pipeline, run the replay, report how it ended.

Exit status: 0 the end was reached, 1 a runtime failure (unreachable broker, missing topic: one line
on stderr naming it), 2 unusable options or config, 130 interrupted (after a summary of what was done).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console

from gateway.commands.check import scrub
from gateway.commands.replay.options import ReplayOptions, UsageError, replay_group
from gateway.commands.replay.progress import Summary, UnreadableWarnings, progress_view
from gateway.commands.replay.run import describe_window, replay
from gateway.commands.replay.topics import ReplayError
from gateway.config import Config, ConfigError, PipelineConfig, load_config
from gateway.runtime.logs import configure_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

T = TypeVar("T")


def main(args: argparse.Namespace) -> int:
    try:
        options = ReplayOptions.from_args(args)
        config = load_config(options.config)
        pipeline = find_pipeline(config, options.pipeline)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_INVALID
    except UsageError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_INVALID
    secrets = config.secret_values()
    configure_logging("text", "WARNING", secrets=secrets)
    # The client's own complaints (a refused connection, a rebalance under way) would repeat, less
    # clearly, what the one line of a failure or the summary says.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console(highlight=False)
    print(heading(config, pipeline, options), flush=True)
    try:
        with progress_view(console, replay_group(config.kafka.group_id, pipeline.name)) as view:
            summary = _run_loop(_replay(config, pipeline, options, view.show))
    except ReplayError as exc:
        print(f"replay: {scrub(str(exc), secrets)}", file=sys.stderr)
        return EXIT_FAILED
    except asyncio.CancelledError:
        print("replay: interrupted twice: stopped at once; the next run goes on from the last commit",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        print(f"replay: unexpected failure: {type(exc).__name__}: {scrub(str(exc), secrets)}", file=sys.stderr)
        return EXIT_FAILED
    summary.print(sys.stdout)
    return EXIT_OK if summary.finished else EXIT_INTERRUPTED


def find_pipeline(config: Config, name: str) -> PipelineConfig:
    for pipeline in config.pipelines:
        if pipeline.name == name:
            return pipeline
    known = ", ".join(p.name for p in config.pipelines)
    raise UsageError(f"--pipeline {name}: no such pipeline in the config (its pipelines: {known})")


def heading(config: Config, pipeline: PipelineConfig, options: ReplayOptions) -> str:
    window = describe_window(options.since_ms, options.until_ms)
    return (f"replay: pipeline {pipeline.name}, stage {options.stage}{', written ' + window if window else ''}: "
            f"{pipeline.outputs.dead_letter} → {pipeline.input_topic}, consumer group "
            f"{replay_group(config.kafka.group_id, pipeline.name)}"
            + (" (dry run: nothing is published or committed)" if options.dry_run else ""))


async def _replay(config: Config, pipeline: PipelineConfig, options: ReplayOptions, show: Any) -> Summary:
    """The first SIGINT/SIGTERM ends the run after the step under way (published and committed);
    a second one cancels at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await replay(config, pipeline, options, show=show, on_unreadable=UnreadableWarnings(sys.stderr),
                            stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.run(coro)
    return uvloop.run(coro)
