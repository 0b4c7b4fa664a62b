"""What can be wrong with a delivery, with the HTTP status that says so."""

from __future__ import annotations

from scheduler.errors import ClientError


class IngestError(ClientError):
    """A delivery or report riskrank refuses."""


class MalformedPayload(IngestError):
    status_code = 400


class MissingHeader(IngestError):
    status_code = 400


class BadSignature(IngestError):
    """A signature or token that does not verify; also the answer for an
    unknown repository or one without a secret, so that nobody without the
    secret learns which repositories are registered."""

    status_code = 401


class BodyTooLarge(IngestError):
    status_code = 413


class Unstorable(MalformedPayload):
    """A value the database cannot hold (too long, a NUL, out of range),
    refused before anything is acknowledged (scheduler.limits)."""

    status_code = 422
