"""What the tests and the benchmarks both run the gateway with; not part of the product.

``processes`` (the emulator and the gateway in their own processes, or the gateway in the caller's
loop), ``brokers`` (Apache Kafka from Maven Central, one node or three, or the embedded tansu
broker), ``topics`` (one run's topics, the records fed to them, gateway configs on them),
``ledger`` (every input id against the output topics), ``stream`` (records at a steady rate),
``scale`` (end-to-end latency around each join or leave of the group), ``stage`` (a chaos scenario's world:
broker, topics, emulator and gateways with secrets), ``measure`` (/proc and /metrics readings) and
``waits`` (polling with a deadline). The package is imported from the repository root and never
installed: the wheel holds ``gateway`` alone. ``tests`` and ``benchmarks`` both import it and
never each other.
"""
