"""``scoring-gateway qlik-batch``: create or update a Qlik Predict deployment's batch-prediction
configuration from a pipeline's Qlik backend and the options, run it, follow it to ``ready``.

Exit status: 0 the job is ``ready`` (its files are in the space); 1 the job failed (its
``errorMessage`` on stderr) or was cancelled by someone else; 2 unusable options or config (nothing
sent); 3 the wait ran out (``--timeout-s``; the job was cancelled); 4 an API call failed for good
(the vendor's message on stderr); 130 / 143 after SIGINT / SIGTERM (the job was cancelled).
The report (the configuration, the output files and the job's details) is one JSON document on
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from gateway.commands.qlik_batch.spec import FORMATS, JobSpec

if TYPE_CHECKING:  # the configuration models load only when the command runs
    from gateway.config import Config, PipelineConfig

EXIT_READY = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_TIMEOUT = 3
EXIT_API = 4
SIGNAL_EXITS = {signal.SIGINT: 130, signal.SIGTERM: 143}
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_POLL_S = 5.0
FILE_OPTIONS = {"dstShapName": "dst_shap_name", "dstSourceName": "dst_source_name",
                "dstCoordShapName": "dst_coord_shap_name", "dstNotPredictedName": "dst_not_predicted_name"}


class UsageError(ValueError):
    """Unusable options or config: one line, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway's YAML configuration")
    parser.add_argument("--pipeline", required=True, metavar="NAME",
                        help="the pipeline whose Qlik backend (deployment, token, CA, retries) runs the job")
    parser.add_argument("--dataset-id", required=True, metavar="ID", help="the apply dataset (Qlik catalog id)")
    parser.add_argument("--space-id", required=True, metavar="ID",
                        help='the space the files are written to ("" = your personal space)')
    parser.add_argument("--name", metavar="N",
                        help="the batch-prediction configuration's name, created or updated "
                             "(default: the pipeline's name); also the default --dst-name")
    parser.add_argument("--description", default="", help="the configuration's description")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="the files' format (default parquet)")
    parser.add_argument("--index-column", metavar="COL",
                        help="a unique column of the dataset identifying each row (default: Qlik generates one)")
    parser.add_argument("--dst-name", help="the predictions file (default: N)")
    parser.add_argument("--dst-shap-name", help="the SHAP file (not written unless named)")
    parser.add_argument("--dst-source-name", help="the source rows file (not written unless named)")
    parser.add_argument("--dst-coord-shap-name", help="the coordinate SHAP file (not written unless named)")
    parser.add_argument("--dst-not-predicted-name", help="the rows not predicted (not written unless named)")
    parser.add_argument("--timeout-s", type=_positive, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"give up (and cancel the job) after S seconds (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--poll-interval-s", type=_positive, default=DEFAULT_POLL_S, metavar="S",
                        help=f"read the job's status every S seconds (default {DEFAULT_POLL_S:g})")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    name = args.name or args.pipeline
    for option, value in (("--dataset-id", args.dataset_id), ("--name", name)):
        if not value or not value.strip():
            raise UsageError(f"{option} must not be empty")
    files = {key: getattr(args, attribute) for key, attribute in FILE_OPTIONS.items() if getattr(args, attribute)}
    return JobSpec(name=name, dataset_id=args.dataset_id, space_id=args.space_id, dst_name=args.dst_name or name,
                   format=args.format, index_column=args.index_column or None, description=args.description,
                   files=files)


def main(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_INVALID
    try:
        spec = spec_from_args(args)
        pipeline = _qlik_pipeline(config, args.pipeline)
    except UsageError as exc:
        print(f"scoring-gateway qlik-batch: {exc}", file=sys.stderr)
        return EXIT_INVALID
    from gateway.commands.qlik_batch.run import run_command

    return asyncio.run(run_command(pipeline, spec, timeout_s=args.timeout_s, poll_s=args.poll_interval_s,
                                   secrets=config.secret_values()))


def _qlik_pipeline(config: Config, name: str) -> PipelineConfig:
    for pipeline in config.pipelines:
        if pipeline.name == name:
            if pipeline.backend.type != "qlik":
                raise UsageError(f"pipeline {name!r} has a {pipeline.backend.type} backend: qlik-batch runs "
                                 "Qlik Predict's own batch predictions (use `scoring-gateway batch` for DataRobot)")
            return pipeline
    known = ", ".join(p.name for p in config.pipelines)
    raise UsageError(f"unknown pipeline {name!r} (the config has: {known})")
