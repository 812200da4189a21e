"""The brokers the integration tests, the benchmarks and the chaos campaign run on.

``runtime`` finds Java and fills the jar cache with Maven (Apache Kafka from Maven Central),
``cluster`` starts one Apache Kafka node or three in KRaft mode, ``admin`` asks them questions, and
``choice`` picks Apache Kafka or the embedded tansu broker (``SG_TEST_BROKER``) and says what a test
may expect of the one chosen.
"""
