"""Delivery: how a scored batch's outputs are published and its input offsets committed.

``contract.Delivery`` is the one promise the pipeline relies on: ``publish`` places a batch's
outputs, ``settle`` returns once they are delivered (or abandoned, and then not counted).
``at_least_once`` keeps it by waiting for the broker's acks and committing behind;
``exactly_once`` by putting each input partition's outputs and offsets in one Kafka transaction
(``partition_transaction``). ``offsets.OffsetTracker`` decides which offsets may be committed:
only a contiguous, settled prefix. Every commit the gateway makes happens in this package.
"""
