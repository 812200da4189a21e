"""``scoring-gateway replay``: a pipeline's dead letters back into its input topic, in one command.

It reads the pipeline's dead-letter topic (``outputs.dead_letter``) up to its end offsets taken at
start, and re-publishes each selected record's original value, key and headers to the pipeline's
input topic with a ``scoring-gateway-replayed-from: <topic>/<partition>/<offset>`` header. It is a
member of its own consumer group (``<kafka.group_id>.replay.<pipeline>``) and commits a dead-letter
offset only after the broker acknowledged the re-publish of that record and of every earlier one of
its partition, so a run that is interrupted goes on where it stopped and a run after a complete
one re-publishes nothing. The modules, in the order a run uses them: ``options`` (the command line,
fixed names), ``topics`` (the dead-letter topic's end offsets), ``selection`` (which records, and
what is published for them), ``replayer`` (the fetch → publish → commit loop), ``progress`` (what
the operator sees), ``run`` (one replay, wired) and ``cli`` (the command line).
"""

from gateway.commands.replay.cli import main
from gateway.commands.replay.options import PROVENANCE_HEADER, ReplayOptions, add_arguments, parse_time, replay_group

__all__ = ["PROVENANCE_HEADER", "ReplayOptions", "add_arguments", "main", "parse_time", "replay_group"]
