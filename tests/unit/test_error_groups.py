"""Every error the gateway raises on purpose sits in one GatewayError group, and keeps the base its
callers already catch it by (ValueError, RuntimeError, LookupError)."""

from __future__ import annotations

import pytest

from gateway.backends.codec import BodyTooLarge
from gateway.backends.csvcodec import CsvError, read_csv
from gateway.backends.errors import BackendSettingsError, ScoringError
from gateway.backends.factory import make_ssl_context
from gateway.commands.batch.options import BatchInputError
from gateway.commands.batch.scoring_loop import BatchStopped
from gateway.commands.demo.options import DemoError, Interrupted
from gateway.commands.replay.options import UsageError
from gateway.commands.replay.topics import ReplayError
from gateway.config import ConfigError, UnknownPipeline, parse_config
from gateway.config.substitution import Unresolved
from gateway.emulator.settings import OptionError
from gateway.errors import CommandError, GatewayError, InputError, SettingsError

GROUPS: list[tuple[type[Exception], type[GatewayError], tuple[type[Exception], ...]]] = [
    (ConfigError, SettingsError, (ValueError,)),
    (UnknownPipeline, SettingsError, (LookupError,)),
    (Unresolved, SettingsError, ()),
    (BackendSettingsError, SettingsError, (ValueError,)),
    (OptionError, SettingsError, (ValueError,)),
    (ScoringError, GatewayError, ()),
    (CsvError, InputError, (ValueError,)),
    (BodyTooLarge, InputError, ()),
    (BatchInputError, CommandError, (ValueError,)),
    (BatchStopped, CommandError, ()),
    (UsageError, CommandError, (ValueError,)),
    (ReplayError, CommandError, (RuntimeError,)),
    (DemoError, CommandError, ()),
    (Interrupted, CommandError, ()),
]


@pytest.mark.parametrize(("error", "group", "kept"), GROUPS, ids=[e.__name__ for e, _, _ in GROUPS])
def test_each_error_is_in_its_group_and_keeps_its_old_base(error: type[Exception], group: type[GatewayError],
                                                           kept: tuple[type[Exception], ...]) -> None:
    assert issubclass(error, group) and issubclass(error, GatewayError)
    for base in kept:
        assert issubclass(error, base)


def test_raised_errors_are_caught_by_group_and_by_their_old_base() -> None:
    with pytest.raises(SettingsError):
        make_ssl_context("/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="ca_file"):
        make_ssl_context("/nonexistent/ca.pem")
    with pytest.raises(InputError):
        read_csv(b"")
    config = parse_config({"kafka": {"bootstrap_servers": "b:9092"}, "pipelines": [{
        "name": "churn", "input_topic": "in", "outputs": {"predictions": "out", "dead_letter": "dlq"},
        "backend": {"type": "qlik", "url": "https://t.example/api/v1/ml/deployments/d/realtime-predictions/"
                                           "actions/run"}}]}, {})
    assert config.pipeline("churn").name == "churn"
    with pytest.raises(UnknownPipeline, match=r"unknown pipeline 'fraud' \(the config has: churn\)"):
        config.pipeline("fraud")
    with pytest.raises(SettingsError):
        parse_config("kafka: [", {})
