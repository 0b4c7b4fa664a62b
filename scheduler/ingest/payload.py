"""Decoding webhook bodies and checking HMAC signatures (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

from scheduler.ingest.errors import BadSignature, MalformedPayload, MissingHeader

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def verify_hmac_sha256(secret: str, body: bytes, header_value: str | None, *, header: str) -> None:
    """Check a `sha256=<hex>` signature of the raw body, in constant time."""
    if not header_value:
        raise MissingHeader(f"{header} header is required")
    scheme, _, signature = header_value.strip().partition("=")
    if scheme != "sha256" or not signature:
        raise BadSignature(f"{header} must look like sha256=<hex digest>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise BadSignature(f"{header} does not match the body signed with the repository's secret")


def sign_hmac_sha256(secret: str, body: bytes) -> str:
    """The header value a sender would put: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def decode_json_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON object of a webhook body, sent as JSON or as GitHub's
    `application/x-www-form-urlencoded` form with one `payload` field."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    text: str | bytes = body
    if media_type == FORM_CONTENT_TYPE:
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as error:
            raise MalformedPayload(f"form body could not be decoded: {error}") from None
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise MalformedPayload("form body must have exactly one 'payload' field")
        text = values[0]
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedPayload(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedPayload("body must be a JSON object")
    return document
