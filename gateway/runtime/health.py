"""Liveness and readiness of the gateway, per pipeline, as ``/healthz`` and ``/readyz`` report them.

A pipeline is **ready** when all four hold:

1. **assigned**: its consumer has completed a group join. An empty assignment counts: when a group
   has more members than partitions, the spare members legitimately own nothing, and holding them
   not-ready would block rolling updates forever while they stand by to take over. Between a
   revocation and the next assignment (a rebalance in progress) the pipeline is not ready.
2. **backend available**: its circuit breaker is closed. While it is open (the backend is failing)
   or half-open (traffic ramping back after a successful probe) the pipeline is not ready. An idle
   pipeline that has not sent a request yet is ready.
3. **not stopped**: no authentication or routing failure (401/403/404) has stopped consumption.
4. **outputs acknowledged**: no output batch has waited longer than the sink's stall threshold for
   the broker's acknowledgement (a partition without a leader, a broker down). Measured only while
   there is something to publish: an idle pipeline cannot tell, and stays ready.

The process is ready when every pipeline is. The process is **alive** until :meth:`Health.set_failed`
records a failure no retry can heal (an owned task died unexpectedly), so the orchestrator restarts it.
Reasons appear on the admin port: pass short causes, never secrets or record contents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.runtime.metrics import Metrics

_MAX_DETAIL = 200  # keeps /readyz small whatever a vendor's error text holds


def _short(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


@dataclass
class PipelineHealth:
    """What readiness knows of one pipeline."""

    assigned: bool = False
    partitions: int | None = None
    circuit_reason: str | None = None
    stopped_reason: str | None = None
    broker_reason: str | None = None

    def reasons(self) -> list[str]:
        """Why the pipeline is not ready; empty when it is."""
        found = []
        if not self.assigned:
            found.append("waiting for a partition assignment")
        if self.circuit_reason is not None:
            found.append(self.circuit_reason)
        if self.stopped_reason is not None:
            found.append(f"stopped: {self.stopped_reason}")
        if self.broker_reason is not None:
            found.append(f"broker: {self.broker_reason}")
        return found


class Health:
    """Readiness per pipeline; keeps ``scoring_gateway_pipeline_ready`` in step when given metrics."""

    def __init__(self, pipelines: Iterable[str], metrics: Metrics | None = None) -> None:
        self._pipelines = {name: PipelineHealth() for name in pipelines}
        self._metrics = metrics
        self._failed_reason: str | None = None
        for name in self._pipelines:
            self._publish(name)

    def set_assigned(self, pipeline: str, assigned: bool, partitions: int | None = None) -> None:
        """``True`` once a group join completes, even with zero partitions; ``False`` on revocation."""
        state = self._state(pipeline)
        state.assigned = assigned
        state.partitions = partitions if assigned else None
        self._publish(pipeline)

    def set_circuit(self, pipeline: str, reason: str | None) -> None:
        """Why the backend's circuit is not closed (``circuit open: …``); ``None`` once it is."""
        self._state(pipeline).circuit_reason = None if reason is None else _short(reason)
        self._publish(pipeline)

    def set_broker_ok(self, pipeline: str, ok: bool, reason: str | None = None) -> None:
        """``False`` while outputs wait on the broker past the stall threshold; ``True`` once acknowledged."""
        self._state(pipeline).broker_reason = None if ok else _short(reason or "outputs not acknowledged")
        self._publish(pipeline)

    def set_stopped(self, pipeline: str, reason: str | None) -> None:
        """A reason stops the pipeline (auth/routing failure); ``None`` clears it after a fix."""
        self._state(pipeline).stopped_reason = None if reason is None else _short(reason)
        self._publish(pipeline)

    def set_failed(self, reason: str) -> None:
        """The process cannot heal itself; ``/healthz`` starts failing so it gets restarted."""
        self._failed_reason = _short(reason)

    def alive(self) -> bool:
        return self._failed_reason is None

    @property
    def failed_reason(self) -> str | None:
        return self._failed_reason

    def ready(self) -> tuple[bool, dict[str, dict[str, object]]]:
        """``(ready, {pipeline: {"ready", "reasons", "partitions"}})``; no pipelines means not ready."""
        report: dict[str, dict[str, object]] = {}
        for name, state in self._pipelines.items():
            reasons = state.reasons()
            report[name] = {"ready": not reasons, "reasons": reasons, "partitions": state.partitions}
        return bool(report) and all(entry["ready"] for entry in report.values()), report

    def _state(self, pipeline: str) -> PipelineHealth:
        try:
            return self._pipelines[pipeline]
        except KeyError:
            raise KeyError(f"unknown pipeline {pipeline!r}") from None

    def _publish(self, pipeline: str) -> None:
        if self._metrics is not None:
            reasons = self._pipelines[pipeline].reasons()
            self._metrics.pipeline(pipeline).not_ready(reasons[0] if reasons else None)
