"""The plugin's tests run pytest inside pytest (pytester) against a stand-in
riskrank on a local port, and against the real server where it is installed.
The fixtures (a clean environment, `fake_riskrank`, `real_server`) are the
clients' shared ones, in ../../testing."""

from __future__ import annotations

pytest_plugins = ["pytester", "riskrank_fixtures"]
