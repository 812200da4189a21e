"""``scoring-gateway replay``: the command line (``add_arguments``, ``main``): parse the options, find
the pipeline, run the replay, report how it ended.

Exit status: 0 the end was reached, 1 a runtime failure (unreachable broker, missing topic: one line
on stderr naming it), 2 unusable options or config, 130 interrupted (after a summary of what was done).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from rich.console import Console

from gateway.commands.replay.options import ReplayOptions, UsageError, add_arguments, replay_group
from gateway.commands.replay.progress import Summary, UnreadableWarnings, progress_view
from gateway.commands.replay.replayer import ProgressSink
from gateway.commands.replay.run import describe_window, replay
from gateway.commands.replay.topics import ReplayError
from gateway.config import Config, ConfigError, PipelineConfig, UnknownPipeline, load_config
from gateway.runtime.logs import configure_logging
from gateway.runtime.loop import run_loop
from gateway.runtime.redaction import Redactor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

__all__ = ["add_arguments", "main"]


def main(args: argparse.Namespace) -> int:
    try:
        options = ReplayOptions.from_args(args)
        config = load_config(options.config)
        pipeline = config.pipeline(options.pipeline)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_INVALID
    except (UsageError, UnknownPipeline) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_INVALID
    secrets = config.secret_values()
    redactor = Redactor(secrets)
    configure_logging("text", "WARNING", secrets=secrets)
    # The client's own complaints (a refused connection, a rebalance under way) would repeat, less
    # clearly, what the one line of a failure or the summary says.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    console = Console(highlight=False)
    print(heading(config, pipeline, options), flush=True)
    try:
        with progress_view(console, replay_group(config.kafka.group_id, pipeline.name)) as view:
            summary = run_loop(_replay(config, pipeline, options, view.show))
    except ReplayError as exc:
        print(f"replay: {redactor.text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except asyncio.CancelledError:
        print("replay: interrupted twice: stopped at once; the next run goes on from the last commit",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        print(f"replay: unexpected failure: {type(exc).__name__}: {redactor.text(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    summary.print(sys.stdout)
    return EXIT_OK if summary.finished else EXIT_INTERRUPTED


def heading(config: Config, pipeline: PipelineConfig, options: ReplayOptions) -> str:
    window = describe_window(options.since_ms, options.until_ms)
    return (f"replay: pipeline {pipeline.name}, stage {options.stage}{', written ' + window if window else ''}: "
            f"{pipeline.outputs.dead_letter} → {pipeline.input_topic}, consumer group "
            f"{replay_group(config.kafka.group_id, pipeline.name)}"
            + (" (dry run: nothing is published or committed)" if options.dry_run else ""))


async def _replay(config: Config, pipeline: PipelineConfig, options: ReplayOptions, show: ProgressSink) -> Summary:
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

