"""Operator tools around the core: backtest, explain, replay and tail, generate, the demo and
the board page."""
