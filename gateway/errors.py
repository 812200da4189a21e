"""The root of the gateway's own exceptions, grouped by cause.

Every error the gateway raises on purpose derives from :class:`GatewayError`, so a caller (the
command line, a test, an embedding program) can tell the gateway's own failures from a bug. The
groups say what will fix it: a setting (:class:`SettingsError`), the scoring API
(``gateway.backends.errors.ScoringError``), a broker or the Kafka seam (:class:`KafkaError`), the
input data (:class:`InputError`), or a command's own use (:class:`CommandError`). Control-flow
signals that never leave their module need not derive from it.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error the gateway raises on purpose, with a message meant for the user."""


class SettingsError(GatewayError):
    """A setting is wrong or missing: the message names the key or option that fixes it."""


class KafkaError(GatewayError):
    """The broker, or the gateway's use of it, failed: unreachable, refused, fenced, unsupported."""


class InputError(GatewayError):
    """An input (a record, a file, a row) cannot be read as the gateway needs it."""


class CommandError(GatewayError):
    """A sub-command cannot go on: its message is the one line it prints before exiting non-zero."""
