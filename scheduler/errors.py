"""The base of every error a client is told about, with its HTTP status.

One rule decides between 400 and 422, on every endpoint:

- **422**: riskrank read the request, but a value in it is past a bound of
  `scheduler.limits`: too long (characters, UTF-8 bytes, an id past its
  column), too many items in a list, nested too deep, a character no database
  column holds (a NUL, a lone surrogate), a number or a time out of range (an
  integer past its column, a number that is not finite, a time with no UTC
  equivalent). Nothing the database could not hold is ever acknowledged.
  (`scheduler.ingest.errors.Unstorable`, and pydantic's bound errors,
  `limits.BOUND_ERRORS`.)
- **400**: riskrank cannot read the request as what the endpoint takes: bad
  syntax (not JSON, not XML), a wrong type, a missing or unknown field or
  header, a value of the wrong form (a commit id that is not 40 or 64 hex
  digits, a time that is not ISO 8601, a mode that is not one of the
  modes), or parameters that make no sense together.

Where both apply, 400 wins: the form is fixed first. Every message names the
field (`commits[0].id`, `query.plan_id`, `X-GitHub-Delivery`). The other
statuses say who may ask (401, 403, 404), how much may be sent (413 for a
body, 414 for a URL, 431 for headers: `limits.URL_BYTES`,
`limits.HEADER_BYTES`), and when to come back (429, 503)."""

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
