"""The Kafka seam: everything that speaks to a broker, and nothing else does.

``client`` declares what the stream and delivery need of a Kafka client (a consumer, a producer,
a transactional producer, and the factory that makes them); ``aiokafka_client`` implements it with
aiokafka, the only module on the pipeline's path that imports aiokafka, and ``library`` says which
implementation the gateway runs on. ``connection`` turns ``kafka.*`` into client settings and
diagnoses start-up failures; ``source`` is the consumer-group member the intake fetches from;
``sink`` publishes a batch's output records and waits for the acks, placing keyed records with
``partitioner`` (Kafka's default partitioner); ``embedded`` runs the embedded broker that ``demo``
and the tests use.
"""
