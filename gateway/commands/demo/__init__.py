"""``scoring-gateway demo``: the whole product on one machine, in one command, with no outside services.

It starts the embedded tansu broker and the scoring emulator (each its own process, on free loopback
ports, stopped by PID), creates the topics, writes a gateway config into the work directory (so it
can be read, and reused with ``scoring-gateway run --config``), runs the gateway in-process with it
on uvloop, produces sample churn records, shows live progress read from the gateway's own metrics
registry (a rich progress bar, or a plain line a second when stdout is not a terminal), and ends with a summary
computed from the topics themselves: every produced record is matched by ``id`` to exactly one
prediction or dead-letter record, and latency is measured from each input record's timestamp to its
prediction record's timestamp.

Every wait has a deadline, so a run never hangs: a failure ends it with one line on stderr naming
the cause (``demo: cannot start the broker: ...``); logs of the gateway, broker and emulator stay in
the work directory. Exit status: 0 done and every record accounted
for, 1 failed, 2 unusable options, 130 interrupted. The last line on stdout is machine-readable:
``summary: {...}`` (JSON).
"""

from gateway.commands.demo.cli import main
from gateway.commands.demo.embedded import EmbeddedGateway, demo_config, write_config
from gateway.commands.demo.options import DemoError, DemoOptions, add_arguments
from gateway.commands.demo.summary import percentile

__all__ = ["DemoError", "DemoOptions", "EmbeddedGateway", "add_arguments", "demo_config", "main", "percentile",
           "write_config"]
