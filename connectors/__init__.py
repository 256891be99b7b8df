"""Sources (webhooks, replay, generator) and sinks (Redis board, webhooks)."""
