"""pytest-riskrank: reports each test's outcome to a riskrank server at the
end of the session. Inert until a riskrank URL is configured."""

from __future__ import annotations

__version__ = "0.1.0"
