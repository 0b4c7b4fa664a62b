"""riskrank-client: what a CI step needs of riskrank (upload test reports,
ask for a plan, send the commit event), on requests alone.

Importing the package imports nothing else: `--help` must stay fast, and
requests is imported only when a request is made."""

from __future__ import annotations

__version__ = "0.1.0"
