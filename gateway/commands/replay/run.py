"""One replay from config to summary: check both topics exist, take the dead-letter topic's end
offsets, then re-publish as a member of the replay's own consumer group, or only count (a dry run,
which joins no group and commits nothing)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.commands.replay.options import BURSTS_PER_S, CONNECT_TIMEOUT_S, ReplayOptions, format_time, replay_group
from gateway.commands.replay.progress import Summary
from gateway.commands.replay.replayer import Plan, ProgressSink, Replayer, UnreadableSink
from gateway.commands.replay.selection import Selection
from gateway.commands.replay.topics import ReplayError, read_layout, require_topics
from gateway.config import Config, KafkaConfig, PipelineConfig
from gateway.kafka.aiokafka_client import AiokafkaClients
from gateway.kafka.connection import ClientOptions, KafkaStartError, consumer_options, start_client
from gateway.kafka.sink import KafkaSink


async def replay(config: Config, pipeline: PipelineConfig, options: ReplayOptions, *, show: ProgressSink,
                 on_unreadable: UnreadableSink, stop: asyncio.Event) -> Summary:
    kafka = config.kafka
    group = replay_group(kafka.group_id, pipeline.name)
    dead_letter, input_topic = pipeline.outputs.dead_letter, pipeline.input_topic
    began = time.monotonic()
    settings = _consumer_settings(kafka, group)
    inspector = AIOKafkaConsumer(**settings)
    try:
        await _connect(inspector.start, kafka)
        await require_topics(inspector, {dead_letter: f"pipeline {pipeline.name}'s dead-letter topic "
                                                      "(outputs.dead_letter)",
                                         input_topic: f"pipeline {pipeline.name}'s input topic (input_topic)"})
        layout = await read_layout(inspector, dead_letter)
        plan = Plan(Selection(pipeline.name, options.stages, options.since_ms, options.until_ms), input_topic,
                    layout, _max_records(kafka, options.rate), options.rate)
        if options.dry_run:
            replayer = await _counting(inspector, plan, options.from_beginning, on_unreadable)
            finished = await replayer.run(stop, show, join_timeout_s=0)
            return _summary(pipeline, options, group, replayer, finished, began)
    finally:
        await inspector.stop()
    replayer, finished = await _republish(kafka, settings, plan, dead_letter, options.from_beginning,
                                          on_unreadable, show, stop)
    return _summary(pipeline, options, group, replayer, finished, began)


def _summary(pipeline: PipelineConfig, options: ReplayOptions, group: str, replayer: Replayer, finished: bool,
             began: float) -> Summary:
    return Summary(pipeline=pipeline.name, stage=options.stage, dead_letter_topic=pipeline.outputs.dead_letter,
                   input_topic=pipeline.input_topic, group=group,
                   window=describe_window(options.since_ms, options.until_ms), dry_run=options.dry_run,
                   finished=finished, tally=replayer.tally, duration_s=time.monotonic() - began)


def describe_window(since_ms: int | None, until_ms: int | None) -> str:
    parts = []
    if since_ms is not None:
        parts.append(f"from {format_time(since_ms)}")
    if until_ms is not None:
        parts.append(f"before {format_time(until_ms)}")
    return " ".join(parts)


def _consumer_settings(kafka: KafkaConfig, group: str) -> ClientOptions:
    try:
        settings = consumer_options(kafka)
    except (OSError, ssl.SSLError) as exc:
        raise ReplayError(f"kafka {kafka.bootstrap_servers}: cannot load the TLS files: {exc}") from None
    # A new replay group starts at the oldest dead letter whatever the pipeline's auto_offset_reset;
    # records of transactions that were aborted are not dead letters.
    settings.update(group_id=group, auto_offset_reset="earliest", isolation_level="read_committed")
    return settings


def _max_records(kafka: KafkaConfig, rate: float | None) -> int:
    limit = int(kafka.max_poll_records)
    return limit if rate is None else max(1, min(limit, int(rate / BURSTS_PER_S)))


def _join_timeout_s(settings: ClientOptions) -> float:
    """A member of an interrupted run holds its partitions until its session expires; the join may
    also wait for the other members' rebalance timeout."""
    session, rebalance = settings["session_timeout_ms"], settings["rebalance_timeout_ms"]
    assert isinstance(session, int) and isinstance(rebalance, int)  # consumer_options sets both as ints
    return (session + rebalance) / 1000.0 + 30.0


async def _connect(start: Callable[[], Awaitable[None]], kafka: KafkaConfig) -> None:
    try:
        await asyncio.wait_for(start_client(start(), kafka), CONNECT_TIMEOUT_S)
    except KafkaStartError as exc:
        raise ReplayError(str(exc)) from None
    except TimeoutError:
        raise ReplayError(f"kafka {kafka.bootstrap_servers}: no answer within {CONNECT_TIMEOUT_S:.0f}s") from None


async def _counting(consumer: AIOKafkaConsumer, plan: Plan, from_beginning: bool,
                    on_unreadable: UnreadableSink) -> Replayer:
    """A dry run reads where a real run would start (the group's committed offsets), as a plain
    consumer: it neither joins the group nor takes partitions from a replay under way."""
    starts: dict[TopicPartition, int] = {}
    for tp in plan.layout.partitions():
        committed = None if from_beginning else await consumer.committed(tp)
        starts[tp] = plan.layout.start_of(tp, committed)
        consumer.seek(tp, starts[tp])
    replayer = Replayer(consumer, plan, sink=None, commit=False, on_unreadable=on_unreadable, starts=starts)
    replayer.assigned(set(starts))
    return replayer


async def _republish(kafka: KafkaConfig, settings: ClientOptions, plan: Plan, dead_letter: str,
                     from_beginning: bool, on_unreadable: UnreadableSink, show: ProgressSink,
                     stop: asyncio.Event) -> tuple[Replayer, bool]:
    producer = AiokafkaClients(kafka).producer()
    consumer = AIOKafkaConsumer(**settings)
    try:  # stop() also after a failed start(): each owns connections and tasks either way
        await _connect(producer.start, kafka)
        sink = KafkaSink(producer)
        await sink.prepare([plan.input_topic])
        replayer = Replayer(consumer, plan, sink=sink, commit=True, on_unreadable=on_unreadable,
                            rewind=from_beginning)
        await _connect(consumer.start, kafka)
        # Subscribed after start(), which would otherwise wait for the first assignment itself.
        consumer.subscribe([dead_letter], listener=replayer.listener())
        finished = await replayer.run(stop, show, _join_timeout_s(settings))
    finally:
        await consumer.stop()
        await producer.stop()
    return replayer, finished
