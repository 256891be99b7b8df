"""Pure, deterministic SLA core: (state, input, now) -> (state, actions). No Kafka, Faust, Redis or clock."""
