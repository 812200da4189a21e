"""The process around the pipelines: admin server, health, metrics, logs and memory settings."""
