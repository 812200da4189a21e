"""scoring-gateway: Kafka feature records → micro-batched real-time scoring → Kafka predictions.

One package per role; a record passes through them in this order:
    kafka/       the Kafka seam: the source a pipeline fetches from, the sink it publishes to
    stream/      one pipeline: intake, batching, key order, output records (``stream.pipeline``)
    scoring/     a batch's lanes and requests: breaker, concurrency, rate limit, retries, HTTP
    backends/    the vendors' wire formats: Qlik Predict and DataRobot encoders and decoders
    delivery/    outputs published and input offsets committed, at least once or exactly once
    runtime/     admin server, health, metrics, logs, memory settings
    config/      YAML in, typed settings out: the single source of every key and default
    commands/    the sub-commands besides ``run`` (``app``): check, schema, batch, replay, demo
    emulator/    the local Qlik/DataRobot scoring server for the demo and the tests
"""

__version__ = "0.1.0"
