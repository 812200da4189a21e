"""scoring-gateway: Kafka feature records → micro-batched real-time scoring → Kafka predictions.

The data flow, one module per step:
``source`` (Kafka in) → ``batcher`` → ``backends`` (encode) → ``dispatcher`` (concurrency, retries,
rate limit) → ``backends`` (decode) → ``sink`` (Kafka out), with ``offsets`` releasing the source's
position once the sink has acknowledged every output. ``pipeline`` wires one pipeline; ``app`` runs
them all with the admin server.
"""

__version__ = "0.1.0"
