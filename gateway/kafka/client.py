"""The Kafka seam: what the stream and delivery need of a Kafka client library, and nothing more.

``stream/`` and ``delivery/`` speak only these types; ``aiokafka_client`` implements them with
aiokafka, and another library plugs in by implementing :class:`KafkaClients` (and the three
clients it makes) without a change outside this package.

The hot path passes through untouched: the records a :class:`Consumer` fetches are the library's
own objects, read through the structural :class:`InputRecord`; a :class:`ProducerBatch` is the
library's own batch, filled record by record without a wrapper.

Failures: a request the broker refused or did not answer raises :class:`BrokerRequestError` (the
operation may be retried, or the transaction redone); a transactional producer that another one
with the same id replaced raises :class:`ProducerFencedError`; a client that cannot start raises
``gateway.kafka.connection.KafkaStartError`` with the one line to show.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from gateway.errors import KafkaError


class TopicPartition(NamedTuple):
    """A topic's partition. A plain tuple, so it equals (and hashes as) any client's named tuple of
    the same two fields: the partitions a client hands back are used as keys without conversion."""

    topic: str
    partition: int


class InputRecord(Protocol):
    """What the gateway reads of a consumed record (aiokafka's ``ConsumerRecord`` has it as is)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


# An output record: (topic, key, value, headers); a None value is a tombstone (replay re-publishes those).
Message = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]

# Called with the partitions taken from (before) or given to (after) this member; the consumer
# waits for it, so a revocation can finish in-flight work and commit before the partitions go.
PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None]]


class BrokerRequestError(KafkaError):
    """A request to the broker failed or went unanswered: retry it, or abort and redo the transaction."""


class ProducerFencedError(BrokerRequestError):
    """A transactional producer with the same id started elsewhere: this one can never commit again."""


class Consumer(Protocol):
    """A consumer-group member with manual commits."""

    async def start(self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        """Join the group for ``topic``; raises ``KafkaStartError`` (one line) when it cannot."""

    async def stop(self) -> None:
        """Leave the group and close the connections (also after a failed start)."""

    async def fetch(self, timeout_s: float, max_records: int) -> Mapping[TopicPartition, Sequence[InputRecord]]:
        """The next records of unpaused partitions, in offset order per partition (may be empty)."""

    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, partitions: Iterable[TopicPartition]) -> None: ...
    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` at the next fetch (an assigned partition)."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the group's offsets (the next offset to read); raises :class:`BrokerRequestError`."""

    def partitions_for(self, topic: str) -> set[int] | None:
        """The topic's partitions from the consumer's metadata; None before it knows."""

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp``; None when it has none."""

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as of the last fetch; None before one."""


class ProducerBatch(Protocol):
    """The client's own batch of records for one partition."""

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None,
               headers: Sequence[tuple[str, bytes]]) -> object | None:
        """Add a record; None when the batch is full (the record was not added)."""


class Producer(Protocol):
    """Publishes batches of records to chosen partitions and reports the broker's acknowledgement."""

    async def start(self) -> None:
        """Connect; raises ``KafkaStartError`` (one line) when it cannot."""

    async def stop(self) -> None:
        """Flush and close (also after a failed start)."""

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> ProducerBatch: ...

    async def send(self, batch: ProducerBatch, topic: str, partition: int) -> None:
        """Returns once the broker acknowledged the batch; raises :class:`BrokerRequestError` when it
        failed (the batch may be sent again). Batches for one partition are written in call order."""


class TransactionalProducer(Producer, Protocol):
    """A producer with one transactional id: what it sends between ``begin`` and ``commit`` is
    visible to ``read_committed`` readers all at once, with the consumer offsets sent alongside.
    ``start()`` fences every earlier producer with the same id; any step raises
    :class:`ProducerFencedError` once this one is fenced, :class:`BrokerRequestError` otherwise."""

    async def begin_transaction(self) -> None: ...
    async def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], group_id: str) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...


class KafkaClients(Protocol):
    """Makes a pipeline's clients from the ``kafka`` settings it was built with."""

    def consumer(self, *, read_committed: bool) -> Consumer:
        """A group member; ``read_committed`` skips the records of open and aborted transactions."""

    def producer(self) -> Producer: ...

    def transactional_producer(self, transactional_id: str) -> TransactionalProducer: ...
