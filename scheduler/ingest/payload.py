"""Decoding webhook bodies and checking HMAC signatures (pure functions)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import zlib
from typing import Any
from urllib.parse import parse_qs

import pydantic_core

from scheduler import limits
from scheduler.ingest.errors import (
    BadSignature,
    BodyTooLarge,
    MalformedPayload,
    MissingHeader,
    Unstorable,
)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def verify_hmac_sha256(secret: str, body: bytes, header_value: str | None, *, header: str) -> None:
    """Check a `sha256=<hex>` signature of the raw body, in constant time."""
    if not header_value:
        raise MissingHeader(f"{header} header is required")
    scheme, _, signature = header_value.strip().partition("=")
    # compare_digest refuses non-ASCII text: such a header is no hex digest.
    if scheme != "sha256" or not signature or not signature.isascii():
        raise BadSignature(f"{header} must look like sha256=<hex digest>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise BadSignature(mismatch(header))


def mismatch(header: str) -> str:
    """The one message for a signature or token that does not verify, whatever
    the reason: a caller without the secret must not learn which repositories
    are registered (the server logs the reason for its operator)."""
    return (
        f"{header} does not match: the repository is not registered here, has no "
        "webhook secret, or its secret is not the one used"
    )


# A stored secret hash: "sha256$<salt hex>$<hex of SHA-256(salt:secret)>".
SECRET_HASH_SCHEME = "sha256"  # noqa: S105 (the name of a hash scheme, not a secret)


def hash_secret(secret: str, *, salt: str | None = None) -> str:
    """The form a secret that is only ever compared (GitLab's X-Gitlab-Token)
    is stored in. One salted SHA-256, not a slow KDF: it runs on every
    delivery (a KDF's tens of milliseconds would cap a process at a few dozen
    webhooks a second), and riskrank's own secrets are 256 random bits, out of
    reach of guessing at any speed; the salt keeps equal secrets apart and
    precomputed tables useless for the weaker ones an operator may choose."""
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
    return f"{SECRET_HASH_SCHEME}${salt}${digest}"


def secret_matches(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` (hash_secret) was made of, in
    constant time for a given stored hash."""
    scheme, _, rest = stored.partition("$")
    salt, _, digest = rest.partition("$")
    if scheme != SECRET_HASH_SCHEME or not digest:
        return False
    computed = hash_secret(secret, salt=salt).rpartition("$")[2]
    return hmac.compare_digest(computed, digest)


def sign_hmac_sha256(secret: str, body: bytes) -> str:
    """The header value a sender would put: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def media_type(content_type: str | None) -> str:
    """`application/json` of `application/json; charset=utf-8`, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _refusal(text: str | bytes, error: ValueError, field: str) -> MalformedPayload:
    """Why the parser refused `text`: nested past JSON_DEPTH and a lone
    surrogate are bounds (422, the second named where it is: Python's own
    parser, which reads lone surrogates, finds it); the rest is not JSON
    (400)."""
    if "recursion limit" in str(error):
        return Unstorable(f"{field or 'body'}: nested more than {limits.JSON_DEPTH} levels deep")
    escapes = b"\\u" in text if isinstance(text, bytes) else "\\u" in text
    if escapes:
        try:
            document = json.loads(text, parse_constant=_no_constant)
            limits.json_document(document, field)
        except Unstorable as unstorable:
            return unstorable
        except (ValueError, RecursionError):
            pass
    return MalformedPayload(f"{field or 'body'} is not valid JSON: {error}")


def parse_json(text: str | bytes, field: str = "body") -> Any:
    """The JSON document `text` holds, bounded while it is read: nesting
    past the parser's limit is refused (422), not a RecursionError; a lone
    surrogate is refused (422, naming its place); NaN, Infinity and any other
    syntax error are not JSON (400). `field` names the document in messages
    ("" for places named from the root: `results[1].test`)."""
    try:
        return pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as error:
        raise _refusal(text, error, field) from None


def decode_json_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The JSON object of a webhook body, sent as JSON or as GitHub's
    `application/x-www-form-urlencoded` form with one `payload` field.

    The parser bounds the nesting while it reads (a body nested a thousand
    deep is refused, not a RecursionError), and refuses lone surrogates and
    NaN; what JSONB cannot keep (a NUL, deep nesting) is refused as
    Unstorable (422) before the body is stored."""
    text: str | bytes = body
    if media_type(content_type) == FORM_CONTENT_TYPE:
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            # The error would quote the whole body back: say what it must be.
            raise MalformedPayload(
                "form body could not be decoded: it must be payload=<URL-encoded JSON> in UTF-8"
            ) from None
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise MalformedPayload("form body must have exactly one 'payload' field")
        text = values[0]
    document = parse_json(text)
    if not isinstance(document, dict):
        raise MalformedPayload("body must be a JSON object")
    # JSON can only write a NUL as an escape; without one, and with lone
    # surrogates refused by the parser, only numbers and depth need a look.
    nul = b"\\u0000" in text if isinstance(text, bytes) else "\\u0000" in text
    limits.json_document(document, strings=nul)
    return document


GZIP_MAGIC = b"\x1f\x8b"
# Inflate in steps this big, so a bomb is refused within one step of the cap.
_INFLATE_STEP = 1024 * 1024


def gunzip_capped(data: bytes, *, max_bytes: int) -> bytes:
    """Inflate gzip data (every member), refusing (413) as soon as the output
    passes `max_bytes`: a bomb is never inflated further than one step past
    the cap."""
    out = bytearray()
    rest = data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            pending = rest
            while not inflater.eof:
                step = inflater.decompress(pending, _INFLATE_STEP)
                out += step
                if len(out) > max_bytes:
                    raise BodyTooLarge(f"the report inflates to more than {max_bytes} bytes")
                pending = inflater.unconsumed_tail
                if not step and not pending:
                    break
            if not inflater.eof:
                raise MalformedPayload("the gzip-compressed body is truncated")
            rest = inflater.unused_data
            if rest and not rest.startswith(GZIP_MAGIC):
                if rest.strip(b"\x00"):
                    raise MalformedPayload("the gzip-compressed body has data after its end")
                break
    except zlib.error as error:
        raise MalformedPayload(f"the body looks gzip-compressed but is not: {error}") from None
    return bytes(out)


def decode_content(data: bytes, content_encoding: str | None, *, max_bytes: int) -> bytes:
    """The body without its transfer compression (gzip declared or detected)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return gunzip_capped(data, max_bytes=max_bytes) if data[:2] == GZIP_MAGIC else data
    if encoding in ("gzip", "x-gzip"):
        return gunzip_capped(data, max_bytes=max_bytes)
    raise MalformedPayload(f"Content-Encoding {content_encoding!r} is not supported; use gzip")


# GitLab's signed webhooks follow the Standard Webhooks scheme: the signing
# token is `whsec_<base64 key>`, and `webhook-signature` holds one or more
# space-separated `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`.
SIGNING_TOKEN_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
# A timestamp further than this from the server's clock is refused: a
# captured delivery cannot be replayed later.
SIGNATURE_TOLERANCE_SECONDS = 300


def signing_key(token: str) -> bytes | None:
    """The HMAC key of a signing token, None when it is not one."""
    if not token.startswith(SIGNING_TOKEN_PREFIX):
        return None
    try:
        key = base64.b64decode(token.removeprefix(SIGNING_TOKEN_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key or None


def sign_standard_webhook(token: str, *, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The `webhook-signature` value a sender would put: `v1,<base64>`."""
    key = signing_key(token)
    assert key is not None, "not a signing token"
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check_timestamp(timestamp: str, *, now: float, header: str) -> None:
    """A `webhook-timestamp` (Unix seconds) within the tolerance of `now`."""
    value = timestamp.strip()
    if not value.isascii() or not value.isdigit():
        raise MalformedPayload(f"{header} must be a Unix time in seconds")
    if abs(int(value) - now) > SIGNATURE_TOLERANCE_SECONDS:
        raise BadSignature(
            f"{header} is more than {SIGNATURE_TOLERANCE_SECONDS} s from this server's clock: "
            "a delivery is accepted only when it is fresh (check the server's clock)"
        )


def standard_signature_matches(
    token: str, *, webhook_id: str, timestamp: str, body: bytes, header_value: str
) -> bool:
    """Whether one of the `v1,` signatures of `header_value` is the body's,
    compared in constant time."""
    key = signing_key(token)
    if key is None:
        return False
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    found = False
    for part in header_value.split():
        version, _, signature = part.partition(",")
        if version == "v1" and signature.isascii():
            found |= hmac.compare_digest(expected, signature.encode())
    return found
