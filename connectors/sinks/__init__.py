"""Sinks: what reads the output topics and writes elsewhere (the Redis board, webhooks, the
help desk)."""
