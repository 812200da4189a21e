"""Benchmarks of the gateway: ``python -m benchmarks.run`` for the end-to-end suite."""
