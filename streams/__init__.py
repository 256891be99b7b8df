"""Escalator: SLA escalation pipeline on Kafka."""
