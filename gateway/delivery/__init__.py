"""Delivery: how a scored batch's outputs are published and its input offsets committed.

``at_least_once`` publishes, waits for the broker's acks, then releases the offsets to the commit
loop; ``exactly_once`` puts each input partition's outputs and offsets in one Kafka transaction
(``partition_transaction``). ``offsets.OffsetTracker`` decides which offsets may be committed:
only a contiguous, acknowledged prefix. Every commit the gateway makes happens in this package.
"""
