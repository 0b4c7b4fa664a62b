"""The `riskrank` command: a thin tree over services and processes."""
