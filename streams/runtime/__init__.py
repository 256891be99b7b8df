"""The stream runtime: the consume-process-commit loop, its stores, restore and checkpoints, the
processor between Kafka messages and the core, the topics, settings and runtime metrics."""
