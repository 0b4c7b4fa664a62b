import json
from urllib.parse import urlencode

import pytest

from scheduler.ingest.errors import BadSignature, MalformedPayload, MissingHeader
from scheduler.ingest.payload import decode_json_body, sign_hmac_sha256, verify_hmac_sha256

HEADER = "X-Hub-Signature-256"


def test_signature_of_the_github_docs_example() -> None:
    # docs.github.com "Validating webhook deliveries", test values.
    body = b"Hello, World!"
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign_hmac_sha256("It's a Secret to Everybody", body) == signature
    verify_hmac_sha256("It's a Secret to Everybody", body, signature, header=HEADER)


def test_signature_accepts_upper_case_hex() -> None:
    signature = sign_hmac_sha256("secret", b"{}")
    verify_hmac_sha256("secret", b"{}", "sha256=" + signature[7:].upper(), header=HEADER)


@pytest.mark.parametrize(
    "header_value",
    [
        sign_hmac_sha256("other secret", b"{}"),
        sign_hmac_sha256("secret", b"{ }"),
        "sha1=" + "0" * 40,
        "sha256=",
        "garbage",
    ],
)
def test_wrong_signatures_are_refused(header_value: str) -> None:
    with pytest.raises(BadSignature):
        verify_hmac_sha256("secret", b"{}", header_value, header=HEADER)


@pytest.mark.parametrize("header_value", [None, ""])
def test_missing_signature_is_its_own_error(header_value: str | None) -> None:
    with pytest.raises(MissingHeader, match=HEADER):
        verify_hmac_sha256("secret", b"{}", header_value, header=HEADER)


def test_json_and_form_bodies_decode_to_the_same_object() -> None:
    document = {"ref": "refs/heads/main", "commits": [{"id": "a" * 40, "message": "x & y = z"}]}
    as_json = json.dumps(document).encode()
    as_form = urlencode({"payload": json.dumps(document)}).encode()
    assert decode_json_body(as_json, "application/json") == document
    assert decode_json_body(as_json, "application/json; charset=utf-8") == document
    assert decode_json_body(as_form, "application/x-www-form-urlencoded") == document


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"not json", "application/json", "not valid JSON"),
        (b"\xff\xfe", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b"", "application/json", "not valid JSON"),
        (b"other=1", "application/x-www-form-urlencoded", "'payload' field"),
        (b"payload=1&payload=2", "application/x-www-form-urlencoded", "'payload' field"),
        (b"payload=%7Bnope", "application/x-www-form-urlencoded", "not valid JSON"),
    ],
)
def test_undecodable_bodies_say_why(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        decode_json_body(body, content_type)
