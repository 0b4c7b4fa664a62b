"""riskrank's core: domain, persistence, API and policy."""

__version__ = "0.1.0"
