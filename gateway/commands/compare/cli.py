"""``scoring-gateway compare --config FILE --pipeline NAME [--since TIME] [--output FILE.png]``.

Reads the pipeline's ``outputs.comparisons`` topic once (from ``--since``, or its beginning, to its
end as it was when the command started) and prints the summary of :mod:`.summary`. Exit 0 with a
summary, 2 for a usage or config mistake, 1 when the topic cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.commands.compare.plot import draw
from gateway.commands.compare.summary import Summary
from gateway.commands.replay.options import UsageError, parse_time
from gateway.config import Config, ConfigError, UnknownPipeline, load_config
from gateway.errors import CommandError, KafkaError
from gateway.kafka.connection import KafkaStartError
from gateway.kafka.topic_reader import read_topic
from gateway.runtime.loop import run_loop

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the gateway's YAML config")
    parser.add_argument("--pipeline", required=True, help="the pipeline whose comparisons to summarise")
    parser.add_argument("--since", type=parse_time, metavar="TIME",
                        help="only comparisons written at or after TIME (ISO-8601, UTC if no zone; or epoch ms)")
    parser.add_argument("--output", type=Path, metavar="FILE.png",
                        help="also draw the distribution of differences into this PNG (needs matplotlib)")


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        pipeline = config.pipeline(args.pipeline)
        topic = pipeline.outputs.comparisons
        if pipeline.challenger is None or topic is None:
            raise UsageError(f"--pipeline {pipeline.name}: it has no challenger (pipelines[].challenger and "
                             "outputs.comparisons)")
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_USAGE
    except (UnknownPipeline, UsageError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summary = Summary(pipeline.name)
    try:
        run_loop(_read(config, topic, args.since, summary))
    except (KafkaError, KafkaStartError) as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in summary.lines():
        print(line)
    if args.output is not None:
        try:
            draw(summary, args.output)
        except (CommandError, OSError) as exc:
            print(f"compare: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"plot: {args.output}")
    return EXIT_OK


async def _read(config: Config, topic: str, since_ms: int | None, summary: Summary) -> None:
    async for values in read_topic(config.kafka, topic, since_ms=since_ms):
        summary.add_values(values)
