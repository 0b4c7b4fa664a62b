"""riskrank-client's tests run its commands as subprocesses against the real
riskrank server (where it is installed), a stand-in riskrank on a local port,
and a dead port. The fixtures are the clients' shared ones, in ../../testing."""

from __future__ import annotations

pytest_plugins = ["riskrank_fixtures"]
