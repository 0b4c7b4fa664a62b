"""`python -m riskrank_client`: the same as the `riskrank-client` command."""

from __future__ import annotations

from riskrank_client.cli import main

raise SystemExit(main())
