"""Backtests: what riskrank would have done on a real CI history, replayed
build by build through the production code, beside simple baselines."""
