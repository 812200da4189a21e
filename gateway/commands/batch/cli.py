"""``scoring-gateway batch``: score a bounded input (a CSV or Parquet file, or a range of the
pipeline's input topic) through a pipeline's backend and write the results as files.

Exit status: 0 when every input row is in the predictions or the not-predicted file; 2 for
unusable input or options (one line naming the problem, nothing sent); 1 when the run stopped
(the backend refused the credentials or the URL, or kept failing): what was finished is kept and
the same command continues; 130 / 143 after SIGINT / SIGTERM, likewise resumable.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.commands.batch.options import (
    COORD_SHAP,
    FORMATS,
    LAYOUTS,
    NOT_PREDICTED,
    PREDICTIONS,
    SHAP,
    SOURCE,
    BatchInputError,
    BatchOptions,
    TopicRange,
    file_names,
    input_format,
)

if TYPE_CHECKING:  # imported when the command runs, so that ``--help`` stays quick
    from gateway.commands.batch.scoring_loop import StopRequest
    from gateway.config import Config, PipelineConfig

NAME_OPTIONS = {PREDICTIONS: "dst_name", SHAP: "dst_shap_name", SOURCE: "dst_source_name",
                COORD_SHAP: "dst_coord_shap_name", NOT_PREDICTED: "dst_not_predicted_name"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the gateway's YAML configuration")
    parser.add_argument("--pipeline", required=True, help="the pipeline whose backend and settings score the rows")
    parser.add_argument("--input", help="a CSV or Parquet file to score")
    parser.add_argument("--input-format", choices=("csv", "parquet"),
                        help="the input's format (default: its extension)")
    parser.add_argument("--start", help="topic mode: earliest, latest, an offset or an ISO-8601 time")
    parser.add_argument("--end", help="topic mode: end of the range (exclusive), same forms as --start")
    parser.add_argument("--writeback", required=True, help="the folder the output files are written to")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="output format (default parquet)")
    parser.add_argument("--name", help="base name of the output files (default: the pipeline's name)")
    parser.add_argument("--dst-name", help="predictions file (default N)")
    parser.add_argument("--dst-shap-name", help="SHAP file (default N_shap)")
    parser.add_argument("--dst-source-name", help="source rows file (default N_source)")
    parser.add_argument("--dst-coord-shap-name", help="coordinate SHAP file (default N_coord_shap)")
    parser.add_argument("--dst-not-predicted-name", help="rows not predicted (default N_not_predicted)")
    parser.add_argument("--index-column", help="a unique input column identifying each row "
                                               "(default: automl_row_index, the 0-based input position)")
    parser.add_argument("--layout", choices=LAYOUTS, default="qlik",
                        help="qlik (default): Qlik's writeback files; datarobot: DataRobot's batch-scoring columns")
    parser.add_argument("--target", help="the model's target, for column names when the API does not name it")
    parser.add_argument("--overwrite", action="store_true", help="start over, replacing earlier output")
    parser.add_argument("--log-level", default="WARNING", help="log level for the run's own log lines")


def options_from_args(args: argparse.Namespace) -> BatchOptions:
    if args.input is not None and (args.start is not None or args.end is not None):
        raise BatchInputError("give either --input or --start/--end (a range of the input topic), not both")
    if args.input is None and (args.start is None or args.end is None):
        raise BatchInputError("give --input FILE, or both --start and --end for a range of the input topic")
    path = Path(args.input) if args.input is not None else None
    fmt = input_format(path, args.input_format) if path is not None else None
    given = {kind: getattr(args, attribute) for kind, attribute in NAME_OPTIONS.items()}
    return BatchOptions(
        pipeline=args.pipeline, writeback=Path(args.writeback), format=args.format, input_path=path,
        input_format=fmt, topic=TopicRange(args.start, args.end) if path is None else None,
        names=file_names(args.format, args.name or args.pipeline, given), index_column=args.index_column,
        layout=args.layout, overwrite=args.overwrite, target=args.target)


def main(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, UnknownPipeline, load_config
    from gateway.runtime.memory import tune_for_batches

    tune_for_batches()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return 2
    try:
        options = options_from_args(args)
        pipeline = config.pipeline(options.pipeline)
    except (BatchInputError, UnknownPipeline) as exc:
        return _refuse(str(exc))
    from gateway.runtime.logs import configure_logging

    configure_logging("text", args.log_level, secrets=config.secret_values())
    return _event_loop_run(config, pipeline, options)


def _refuse(message: str) -> int:
    print(f"scoring-gateway batch: {message}", file=sys.stderr)
    return 2


def _event_loop_run(config: Config, pipeline: PipelineConfig, options: BatchOptions) -> int:
    from gateway.commands.batch.run import run_command
    from gateway.runtime.loop import run_loop

    return run_loop(run_command(config, pipeline, options, _signals))


def _signals(stop: StopRequest) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set, "interrupted (SIGINT)", signal.SIGINT)
    loop.add_signal_handler(signal.SIGTERM, stop.set, "terminated (SIGTERM)", signal.SIGTERM)
