"""The base of every error a client is told about, with its HTTP status."""

from __future__ import annotations


class ClientError(Exception):
    """Something the caller sent or asked for that riskrank refuses."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer carries (Retry-After, say)."""
        return {}
