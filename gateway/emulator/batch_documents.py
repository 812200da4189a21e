"""The job document of the emulator's batch-prediction API: its shape, and a new job as
``actions/predict`` answers it (status ``pending``, no output files yet)."""

from __future__ import annotations

import uuid
from typing import TypedDict

from gateway.emulator.models import Deployment
from gateway.json_types import JsonValue

OWNER = "emulator-user"
TENANT = "emulator-tenant"


class OutputFile(TypedDict):
    key: str
    path: str
    spaceId: str
    fileName: str
    fileType: str


class JobDetails(TypedDict):
    isScheduled: bool
    outputFiles: list[OutputFile]
    lineageSchemaUpdated: bool


class Job(TypedDict):
    id: str
    name: JsonValue  # the batch prediction's name, as given
    corrId: str
    corrType: str
    jobType: str
    status: str
    success: bool | None
    details: JobDetails
    trigger: str
    tenantId: str
    createdAt: str
    createdBy: str
    deletedAt: None
    updatedAt: str
    parentName: str
    parentJobId: None
    deploymentId: str
    modelId: str
    rowsPredicted: int
    experimentVersionNumber: str
    spaceId: str


def new_job(prediction_id: str, name: JsonValue, deployment: Deployment, space_id: str, now: str) -> Job:
    """A pending job of the batch prediction ``prediction_id``."""
    return {
        "id": str(uuid.uuid4()), "name": name, "corrId": prediction_id,
        "corrType": "batch-prediction", "jobType": "prediction", "status": "pending", "success": None,
        "details": {"isScheduled": False, "outputFiles": [], "lineageSchemaUpdated": False},
        "trigger": "manual", "tenantId": TENANT, "createdAt": now, "createdBy": OWNER, "deletedAt": None,
        "updatedAt": now, "parentName": deployment.name, "parentJobId": None,
        "deploymentId": deployment.qlik_id, "modelId": deployment.qlik_id,
        "rowsPredicted": 0, "experimentVersionNumber": "1", "spaceId": space_id}
