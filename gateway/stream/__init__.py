"""The stream: one pipeline's records from the input topic to their output records.

Where a record goes next, in order:
    intake.Intake           fetch from the source (paused under backpressure), decode, check
    batcher.Batcher         rows into a ``Batch`` by max_rows / max_bytes / linger_ms
    ordering.KeyOrder       which earlier batches a batch must publish after
    (gateway.scoring)       the batch is scored: encode, HTTP, decode
    outputs.Outputs         the output records (``records``), addressed to their topics
    (gateway.delivery)      published, settled, then its input offsets committed

``pipeline.Pipeline`` builds a pipeline's collaborators in one place; ``flow.Flow`` runs them: it
owns the tasks that move a batch along and drains them on stop and revoke.
"""
