"""What ``qlik-batch`` asks Qlik for: the seed's create body, the JSON-patch that brings an existing
configuration to the command line (and only what differs), the endpoints from a real-time URL, and
the options refused before anything is sent."""

from __future__ import annotations

import argparse

import pytest

from gateway.commands.qlik_batch.api import Endpoints, resource
from gateway.commands.qlik_batch.cli import UsageError, add_arguments, spec_from_args
from gateway.commands.qlik_batch.spec import JobSpec

SPEC = JobSpec(name="Churn_predictions", dataset_id="6749ddb8bf86ce46d48fe0a3", space_id="6745f737f536738170dfe82f",
               dst_name="customer_predictions", files={"dstShapName": "customer_predictions_shap"})


def test_the_create_body_is_the_seeds() -> None:
    assert SPEC.create_body("f822f467-6a81-4cb7-bb90-ebe3b4224c30") == {"data": {
        "type": "batch-prediction",
        "attributes": {"name": "Churn_predictions", "deploymentId": "f822f467-6a81-4cb7-bb90-ebe3b4224c30",
                       "description": "", "dataSetId": "6749ddb8bf86ce46d48fe0a3", "indexColumn": None,
                       "schedule": None,
                       "writeback": {"format": "parquet", "dstName": "customer_predictions",
                                     "spaceId": "6745f737f536738170dfe82f",
                                     "dstShapName": "customer_predictions_shap"}}}}


def test_the_patch_replaces_what_differs_and_clears_files_not_named() -> None:
    existing = {"name": "Churn_predictions", "dataSetId": "6749ddb8bf86ce46d48fe0a3", "indexColumn": None,
                "writeback": {"format": "parquet", "dstName": "customer_predictions.parquet",
                              "spaceId": "6745f737f536738170dfe82f", "dstShapName": "customer_predictions_shap",
                              "dstSourceName": "old_source.parquet"}}
    assert SPEC.patch(existing) == [
        {"op": "replace", "path": "/writeback/dstName", "value": "customer_predictions"},
        {"op": "replace", "path": "/writeback/dstSourceName", "value": ""}]
    same = {**existing, "description": None,
            "writeback": {"format": "parquet", "dstName": "customer_predictions", "spaceId": SPEC.space_id,
                          "dstShapName": "customer_predictions_shap"}}
    assert SPEC.patch(same) == []


def test_output_files_are_the_configurations_writeback_names() -> None:
    attributes = {"writeback": {"format": "csv", "spaceId": "", "dstName": "a.csv", "dstShapName": "",
                                "dstNotPredictedName": "b.csv"}}
    assert SPEC.output_files(attributes) == [{"field": "dstName", "fileName": "a.csv", "spaceId": ""},
                                             {"field": "dstNotPredictedName", "fileName": "b.csv", "spaceId": ""}]


def test_endpoints_come_from_the_real_time_url() -> None:
    found = Endpoints.from_realtime_url(
        "https://t.eu.qlikcloud.com/api/v1/ml/deployments/d-1/aliases/prod/realtime-predictions/actions/run")
    assert found.collection == "https://t.eu.qlikcloud.com/api/v1/ml/deployments/d-1/batch-predictions"
    assert found.predict("bp") == found.collection + "/bp/actions/predict"
    assert found.cancel("bp") == "https://t.eu.qlikcloud.com/api/v1/ml/jobs/batch-prediction/bp/actions/cancel"
    with pytest.raises(ValueError):
        Endpoints.from_realtime_url("https://t/predApi/v1.0/deployments/x/predictions")


def test_a_resource_with_or_without_its_envelope() -> None:
    item = {"id": "x", "type": "batch-prediction", "attributes": {"status": "ready"}}
    assert resource({"data": item}) == item == resource(item)
    with pytest.raises(ValueError):
        resource({"data": []})


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--config", "c.yaml", "--pipeline", "churn", *argv])


def test_options_become_the_spec_and_bad_ones_are_refused() -> None:
    spec = spec_from_args(parse("--dataset-id", "ds", "--space-id", "", "--format", "csv", "--index-column", "id",
                                "--dst-not-predicted-name", "refused"))
    assert (spec.name, spec.dst_name, spec.space_id, spec.format, spec.index_column) == ("churn", "churn", "", "csv",
                                                                                         "id")
    assert spec.files == {"dstNotPredictedName": "refused"}
    with pytest.raises(UsageError, match="--dataset-id must not be empty"):
        spec_from_args(parse("--dataset-id", "", "--space-id", "s"))
    for bad in (["--format", "qvd"], ["--timeout-s", "-1"], ["--poll-interval-s", "inf"]):
        with pytest.raises(SystemExit):
            parse("--dataset-id", "d", "--space-id", "s", *bad)
