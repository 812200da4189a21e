"""The Kafka seam: everything that speaks to a broker, and nothing else does.

``connection`` turns ``kafka.*`` into client settings and diagnoses start-up failures; ``source``
is the consumer-group member the intake fetches from; ``sink`` publishes a batch's output records
and waits for the acks, placing keyed records with ``partitioner`` (Kafka's default partitioner);
``embedded`` runs the embedded broker that ``demo`` and the tests use.
"""
