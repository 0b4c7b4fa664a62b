"""Turning what providers and runners send into riskrank's own terms."""
