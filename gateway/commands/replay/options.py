"""The replay command's options, its fixed names (header, consumer group) and time parsing."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.errors import CommandError
from gateway.stream.records import STAGE_DECODE, STAGE_NOT_PREDICTED, STAGE_SCORE, STAGE_VALIDATE

# Names users see: documented in the README ("Replaying dead letters").
PROVENANCE_HEADER = "scoring-gateway-replayed-from"
STAGES = (STAGE_SCORE, STAGE_NOT_PREDICTED, STAGE_VALIDATE, STAGE_DECODE)
ALL_STAGES = "all"
DEFAULT_STAGE = STAGE_SCORE

WARN_LIMIT = 10  # unreadable dead-letter records shown one per line; the rest only counted
PLAIN_EVERY_S = 1.0  # a progress line a second when stdout is not a terminal
CONNECT_TIMEOUT_S = 30.0
END_OFFSETS_TIMEOUT_S = 30.0
FETCH_TIMEOUT_S = 0.2  # one poll; also how often progress and the stop flag are looked at
BURSTS_PER_S = 4  # with --rate, at most rate/4 records are published at once

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIGITS = re.compile(r"\d+")


class UsageError(CommandError, ValueError):
    """Options or config that cannot be used; its text is the line printed after ``replay: `` (exit 2)."""


def replay_group(group_id: str, pipeline: str) -> str:
    """The replay's own consumer group on the dead-letter topic: never the pipeline's."""
    return f"{group_id}.replay.{pipeline}"


def parse_time(text: str) -> int:
    """ISO-8601 (UTC when no zone is given) or epoch milliseconds, as epoch milliseconds."""
    text = text.strip()
    if _DIGITS.fullmatch(text):
        if 9 <= len(text) <= 10:
            raise argparse.ArgumentTypeError(
                f"{text} looks like epoch seconds; give epoch milliseconds ({text}000) or an ISO-8601 time")
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO-8601 time (e.g. 2025-11-22T08:30:00Z) nor epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def format_time(epoch_ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _positive_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of records per second, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="the YAML config file")
    parser.add_argument("--pipeline", required=True, metavar="NAME", help="the pipeline whose dead letters to replay")
    parser.add_argument("--stage", choices=(*STAGES, ALL_STAGES), default=DEFAULT_STAGE,
                        help=f"replay dead letters of this stage only (default {DEFAULT_STAGE})")
    parser.add_argument("--since", type=parse_time, metavar="TIME",
                        help="only dead letters written at or after TIME (ISO-8601, UTC if no zone; or epoch ms)")
    parser.add_argument("--until", type=parse_time, metavar="TIME",
                        help="only dead letters written before TIME (same forms as --since)")
    parser.add_argument("--dry-run", action="store_true",
                        help="count what would be re-published; publish nothing, commit nothing")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start over: read the dead-letter topic from its oldest record, not from where "
                             "the last replay stopped")
    parser.add_argument("--rate", type=_positive_rate, metavar="R",
                        help="re-publish at most R records per second (default: as fast as the broker acknowledges)")


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    config: Path
    pipeline: str
    stage: str
    since_ms: int | None
    until_ms: int | None
    dry_run: bool
    from_beginning: bool
    rate: float | None

    @property
    def stages(self) -> frozenset[str]:
        return frozenset(STAGES) if self.stage == ALL_STAGES else frozenset({self.stage})

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReplayOptions:
        since, until = args.since, args.until
        if since is not None and until is not None and since >= until:
            raise UsageError(f"--since ({format_time(since)}) must be before --until ({format_time(until)})")
        return cls(config=args.config, pipeline=args.pipeline, stage=args.stage, since_ms=since, until_ms=until,
                   dry_run=args.dry_run, from_beginning=args.from_beginning, rate=args.rate)
