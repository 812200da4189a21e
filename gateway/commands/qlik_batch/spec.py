"""What one ``qlik-batch`` run asks Qlik for: the batch-prediction configuration, as the seed's create
body spells it, and the JSON-patch that brings an existing configuration of the same name to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.json_types import JsonObject, JsonValue

FORMATS = ("parquet", "csv")
# Qlik's writeback fields for the four optional files, in the seed's order.
OPTIONAL_FILES = ("dstShapName", "dstSourceName", "dstCoordShapName", "dstNotPredictedName")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """The configuration to create or update. ``files`` holds the optional writeback names given
    (field → name); ``dstName`` is always set. Names are sent as given: Qlik adds the extension."""

    name: str
    dataset_id: str
    space_id: str
    dst_name: str
    format: str = "parquet"
    index_column: str | None = None
    description: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def writeback(self) -> JsonObject:
        body: JsonObject = {"format": self.format, "dstName": self.dst_name, "spaceId": self.space_id}
        body.update((name, self.files[name]) for name in OPTIONAL_FILES if name in self.files)
        return body

    def create_body(self, deployment_id: str) -> JsonObject:
        """The seed's create body; ``schedule`` null: the job runs when started, not on a schedule."""
        return {"data": {"type": "batch-prediction", "attributes": {
            "name": self.name, "deploymentId": deployment_id, "description": self.description,
            "dataSetId": self.dataset_id, "indexColumn": self.index_column, "schedule": None,
            "writeback": self.writeback()}}}

    def patch(self, existing: Mapping[str, JsonValue]) -> list[JsonValue]:
        """``replace`` operations for what differs from ``existing`` (the resource's attributes);
        an optional file the command line does not name is cleared (``""``), so the configuration
        is the command line's and nothing of an earlier run lingers."""
        wanted: dict[str, JsonValue] = {"/dataSetId": self.dataset_id, "/indexColumn": self.index_column,
                                  "/description": self.description}
        old_writeback = _writeback(existing)
        for key, value in self.writeback().items():
            wanted[f"/writeback/{key}"] = value
        for key in OPTIONAL_FILES:
            if key not in self.files and old_writeback.get(key):
                wanted[f"/writeback/{key}"] = ""
        operations: list[JsonValue] = []  # JSON-patch operations
        for path, value in wanted.items():
            parts = path.strip("/").split("/")
            current = old_writeback.get(parts[1]) if parts[0] == "writeback" else existing.get(parts[0])
            if path == "/description" and current is None and value == "":
                continue  # Qlik does not echo an empty description
            if current != value:
                operations.append({"op": "replace", "path": path, "value": value})
        return operations

    def output_files(self, attributes: Mapping[str, JsonValue]) -> list[dict[str, str]]:
        """The files a ``ready`` configuration wrote, as its own writeback names them (with the
        extension Qlik gave them)."""
        writeback = _writeback(attributes)
        space = str(writeback.get("spaceId", self.space_id))
        return [{"field": key, "fileName": str(writeback[key]), "spaceId": space}
                for key in ("dstName", *OPTIONAL_FILES) if writeback.get(key)]


def _writeback(attributes: Mapping[str, JsonValue]) -> JsonObject:
    """A configuration's writeback object (empty when it has none)."""
    found = attributes.get("writeback")
    return found if isinstance(found, dict) else {}
