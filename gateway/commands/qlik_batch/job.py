"""One batch-prediction run, step by step:

1. **configure**: find the deployment's batch-prediction configuration named ``spec.name`` (the
   list route, page by page); PATCH it to the spec when found, else POST the seed's create body;
2. **start**: ``POST …/actions/predict`` (202 and the job object);
3. **follow**: read the configuration every ``poll_s`` until its status is ``ready``, ``error`` or
   ``cancelled``, showing progress, within ``timeout_s`` from the start;
4. **cancel** when a stop is asked (SIGTERM/SIGINT) or the wait runs out: ``POST
   /jobs/batch-prediction/{corrId}/actions/cancel``, then read the status once more.

Every step's call is retried as :mod:`.api` says; a step that fails for good ends the run with the
vendor's message. The stop request and the deadline are watched during calls too, not only between
them: a call in flight is abandoned (cancelled and awaited) when either comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.commands.qlik_batch.api import PAGE, BatchApi, attributes_of, json_object, resource
from gateway.commands.qlik_batch.spec import JobSpec
from gateway.json_types import JsonObject

TERMINAL = frozenset({"ready", "error", "cancelled"})
CANCEL_WAIT_S = 30.0  # the cancel call and the read after it, together
T = TypeVar("T")
Progress = Callable[[str, float], None]  # (status, seconds since the start)


class Interrupted(Exception):
    """The stop request or the deadline came first; ``why`` is "stopped" or "timeout"."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class RunResult:
    outcome: str  # "ready" | "error" | "cancelled" | "timeout" | "stopped"
    batch_prediction_id: str
    created: bool
    attributes: JsonObject = field(default_factory=dict)  # the configuration as last read
    job: JsonObject = field(default_factory=dict)  # the job object the start returned
    seconds: float = 0.0
    cancelled: bool = False  # the cancel route was called

    @property
    def error_message(self) -> str | None:
        message = self.attributes.get("errorMessage")
        return str(message) if message else None


class BatchRun:
    def __init__(self, api: BatchApi, spec: JobSpec, *, stop: asyncio.Event, timeout_s: float, poll_s: float,
                 progress: Progress) -> None:
        self.api = api
        self.spec = spec
        self.stop = stop
        self.poll_s = poll_s
        self.progress = progress
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s

    async def run(self) -> RunResult:
        try:
            identifier, created = await self._guarded(self.configure())
        except Interrupted as interrupted:  # nothing started: nothing to cancel
            return RunResult(interrupted.why, "", False, seconds=self._elapsed())
        result = RunResult("stopped", identifier, created)
        try:
            _, doc = await self._guarded(self.api.call(
                "start the batch prediction", "POST", self.api.endpoints.predict(identifier)))
            result.job = dict(attributes_of(doc)) if doc else {}
            result.job.setdefault("id", resource(doc).get("id") if doc else None)
            self.progress(str(result.job.get("status") or "started"), self._elapsed())
            result.attributes = await self.follow(identifier)
            result.outcome = str(result.attributes.get("status"))
        except Interrupted as interrupted:
            result.outcome = interrupted.why
            if result.job or interrupted.why == "timeout":
                await self.cancel(result)
        result.seconds = self._elapsed()
        return result

    async def configure(self) -> tuple[str, bool]:
        existing = await self.find()
        if existing is None:
            _, doc = await self.api.call("create the batch prediction", "POST", self.api.endpoints.collection,
                                         self.spec.create_body(self.api.endpoints.deployment))
            return str(resource(doc)["id"]), True
        identifier = str(existing["id"])
        operations = self.spec.patch(json_object(existing["attributes"]))
        if operations:
            await self.api.call("update the batch prediction", "PATCH", self.api.endpoints.one(identifier),
                                operations)
        return identifier, False

    async def find(self) -> JsonObject | None:
        """The first configuration of the deployment named ``spec.name``, or None."""
        offset = 0
        while True:
            url = f"{self.api.endpoints.collection}?limit={PAGE}&offset={offset}"
            _, doc = await self.api.call("list the batch predictions", "GET", url)
            page = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(page, list):
                raise ValueError(f"the list answer has no data array: {str(doc)[:200]!r}")
            for item in page:
                if isinstance(item, dict) and json_object(item.get("attributes")).get("name") == self.spec.name:
                    return item
            count = json_object(doc.get("meta")).get("count") if isinstance(doc, dict) else None
            offset += len(page)
            if not page or len(page) < PAGE or (isinstance(count, int) and offset >= count):
                return None

    async def follow(self, identifier: str) -> JsonObject:
        while True:
            attributes = await self.read(identifier)
            status = str(attributes.get("status"))
            self.progress(status, self._elapsed())
            if status in TERMINAL:
                return attributes
            await self._guarded(asyncio.sleep(min(self.poll_s, max(0.0, self.deadline - time.monotonic()))))

    async def read(self, identifier: str) -> JsonObject:
        _, doc = await self._guarded(self.api.call("read the batch prediction", "GET",
                                                   self.api.endpoints.one(identifier)))
        return dict(attributes_of(doc))

    async def cancel(self, result: RunResult) -> None:
        """Cancel through Qlik's route, bounded; the status read afterwards is the run's last word."""
        corr_id = str(result.job.get("corrId") or result.batch_prediction_id)
        try:
            async with asyncio.timeout(CANCEL_WAIT_S):
                await self.api.call("cancel the job", "POST", self.api.endpoints.cancel(corr_id))
                result.cancelled = True
                self.progress("cancelling", self._elapsed())
                result.attributes = await self.api_read(result.batch_prediction_id)
                self.progress(str(result.attributes.get("status")), self._elapsed())
        except TimeoutError:
            self.progress("cancel not confirmed", self._elapsed())

    async def api_read(self, identifier: str) -> JsonObject:
        _, doc = await self.api.call("read the batch prediction", "GET", self.api.endpoints.one(identifier))
        return dict(attributes_of(doc))

    async def _guarded(self, work: Awaitable[T]) -> T:
        """``work``, unless the stop request or the deadline comes first (then Interrupted)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait({task, stopper}, timeout=max(0.0, self.deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stopper):
                if not pending.done():
                    pending.cancel()
            await asyncio.gather(task, stopper, return_exceptions=True)
        if task in done:
            return task.result()
        raise Interrupted("stopped" if stopper in done else "timeout")

    def _elapsed(self) -> float:
        return time.monotonic() - self.started
