"""Pure, deterministic SLA core: (state, input, now) -> (state, actions).

No Kafka, Faust, Redis or clock imports: the live worker and the backtest share it.
"""
