"""The four DataRobot query keys in the config: each bad value is a configuration error naming the
key (as the prediction server would refuse it, but before anything is sent), and ``check`` exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[3]
URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/0123456789abcdef01234567/predictions"


def document(**backend: Any) -> dict[str, Any]:
    return {"kafka": {"bootstrap_servers": "localhost:9092"},
            "pipelines": [{"name": "churn", "input_topic": "in",
                           "backend": {"type": "datarobot", "url": URL, "token": "t", **backend},
                           "outputs": {"predictions": "out", "dead_letter": "dlq"}}]}


def errors(**backend: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document(**backend), {})
    return list(caught.value.errors)


def test_good_values_are_kept_and_absent_ones_are_null() -> None:
    backend = parse_config(document(), {}).pipelines[0].backend
    assert (backend.explanation_num_top_classes, backend.explanation_class_names,  # type: ignore[union-attr]
            backend.exclude_adjusted_predictions, backend.prediction_warning_enabled) == (None, (), None, None)  # type: ignore[union-attr]
    backend = parse_config(document(explanation_class_names=["a b", "ü"], exclude_adjusted_predictions=False,
                                    prediction_warning_enabled=True), {}).pipelines[0].backend
    assert backend.explanation_class_names == ("a b", "ü")  # type: ignore[union-attr]
    assert (backend.exclude_adjusted_predictions, backend.prediction_warning_enabled) == (False, True)  # type: ignore[union-attr]
    backend = parse_config(document(explanation_num_top_classes=10), {}).pipelines[0].backend
    assert backend.explanation_num_top_classes == 10  # type: ignore[union-attr]


@pytest.mark.parametrize(("backend", "message"), [
    ({"explanation_num_top_classes": 0}, "pipelines[0].backend.explanation_num_top_classes: must be >= 1"),
    ({"explanation_num_top_classes": 11}, "pipelines[0].backend.explanation_num_top_classes: must be <= 10"),
    ({"explanation_num_top_classes": "3"},
     "pipelines[0].backend.explanation_num_top_classes: expected an integer, got '3'"),
    ({"explanation_num_top_classes": 2.5},
     "pipelines[0].backend.explanation_num_top_classes: expected an integer, got 2.5"),
    ({"explanation_class_names": ["a", " "]}, "pipelines[0].backend.explanation_class_names[1]: must not be empty"),
    ({"explanation_class_names": ["a", "a"]},
     "pipelines[0].backend.explanation_class_names[1]: duplicate name 'a'"),
    ({"explanation_class_names": "a"}, "pipelines[0].backend.explanation_class_names: "),
    ({"explanation_num_top_classes": 2, "explanation_class_names": ["a"]},
     "pipelines[0].backend.explanation_class_names: mutually exclusive with explanation_num_top_classes"),
    ({"exclude_adjusted_predictions": "yes"},
     "pipelines[0].backend.exclude_adjusted_predictions: expected true or false, got 'yes'"),
    ({"exclude_adjusted_predictions": 1},
     "pipelines[0].backend.exclude_adjusted_predictions: expected true or false, got 1"),
    ({"prediction_warning_enabled": "True!"},
     "pipelines[0].backend.prediction_warning_enabled: expected true or false, got 'True!'"),
])
def test_bad_values_are_errors_naming_the_key(backend: dict[str, Any], message: str) -> None:
    found = errors(**backend)
    assert any(line.startswith(message) for line in found), found


def test_the_keys_belong_to_datarobot_only() -> None:
    raw = document()
    raw["pipelines"][0]["backend"] = {"type": "qlik", "token": "t", "prediction_warning_enabled": True,
                                      "url": "https://t.eu.qlikcloud.com/api/v1/ml/deployments/d/realtime-predictions/"
                                             "actions/run"}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    assert caught.value.errors == ("pipelines[0].backend.prediction_warning_enabled: only valid for type datarobot "
                                   "(this backend is qlik)",)


def test_a_boolean_from_the_environment_is_converted_and_a_bad_one_named() -> None:
    raw = document(prediction_warning_enabled="${WARN}")
    assert parse_config(raw, {"WARN": "true"}).pipelines[0].backend.prediction_warning_enabled is True  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {"WARN": "sometimes"})
    assert caught.value.errors[0].startswith("pipelines[0].backend.prediction_warning_enabled")


def test_check_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document(explanation_num_top_classes=3, explanation_class_names=["x"])))
    done = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pipelines[0].backend.explanation_class_names: mutually exclusive" in done.stderr
