"""The real Apache Kafka broker the integration tests and benchmarks run on (test tooling, not product
code): ``runtime`` finds Java and fills the jar cache with Maven, ``cluster`` starts one node or three
in KRaft mode, ``admin`` asks them questions, ``choice`` picks Apache Kafka or tansu."""
