"""What the OpenAPI document says that the handlers' signatures cannot.

The webhook and token endpoints read their headers and bodies themselves
(so that a missing header is riskrank's 400, and the signature is checked on
the raw bytes before anything is parsed into a model): this module declares
them for the document. The security schemes are FastAPI `Security`
dependencies that never refuse (auto_error=False); the handlers do."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Security
from fastapi.openapi.utils import get_openapi
from fastapi.security import APIKeyHeader, HTTPBearer

from scheduler import limits
from scheduler.ingest import generic, github, gitlab, json_results

API_TOKEN = HTTPBearer(
    scheme_name="ApiToken",
    bearerFormat="rr_<43 URL-safe characters>",
    description="An API token (`riskrank token create`), bound to one repository and to "
    "its scopes (results:write, plans:read); riskrank keeps only its SHA-256.",
    auto_error=False,
)
GITHUB_SIGNATURE = APIKeyHeader(
    name=github.SIGNATURE_HEADER,
    scheme_name="GitHubSignature",
    description="`sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the repository's "
    "webhook secret (GitHub's own signature).",
    auto_error=False,
)
GITLAB_TOKEN = APIKeyHeader(
    name=gitlab.TOKEN_HEADER,
    scheme_name="GitLabToken",
    description="The GitLab webhook's secret token, sent as is; riskrank keeps only a "
    "salted hash of it.",
    auto_error=False,
)
GENERIC_SIGNATURE = APIKeyHeader(
    name=generic.SIGNATURE_HEADER,
    scheme_name="RiskrankSignature",
    description="`sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the repository's "
    "webhook secret.",
    auto_error=False,
)

TOKEN_AUTH = [Security(API_TOKEN)]
GITHUB_AUTH = [Security(GITHUB_SIGNATURE)]
GITLAB_AUTH = [Security(GITLAB_TOKEN)]
GENERIC_AUTH = [Security(GENERIC_SIGNATURE)]


def _header(
    name: str, description: str, *, required: bool = False, max_length: int | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if max_length is not None:
        schema["maxLength"] = max_length
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": schema,
    }


_COMMIT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The commit id."},
        "message": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "author": {"type": "object", "properties": {"name": {"type": "string"}}},
        "added": {"type": "array", "items": {"type": "string"}},
        "modified": {"type": "array", "items": {"type": "string"}},
        "removed": {"type": "array", "items": {"type": "string"}},
    },
}

GITHUB_PUSH = {
    "title": "GitHubDelivery",
    "description": "A GitHub delivery; riskrank reads the push fields below (a ping only "
    "its repository). Other fields are allowed and kept.",
    "type": "object",
    "required": ["repository"],
    "properties": {
        "repository": {
            "type": "object",
            "required": ["full_name"],
            "properties": {
                "full_name": {"type": "string", "description": "OWNER/NAME"},
                "default_branch": {"type": "string"},
            },
        },
        "ref": {"type": "string", "examples": ["refs/heads/main"]},
        "before": {"type": "string"},
        "after": {"type": "string"},
        "created": {"type": "boolean"},
        "deleted": {"type": "boolean"},
        "forced": {"type": "boolean"},
        "commits": {"type": "array", "items": _COMMIT},
        "head_commit": {"anyOf": [_COMMIT, {"type": "null"}]},
    },
}

GITLAB_PUSH = {
    "title": "GitLabDelivery",
    "description": "A GitLab delivery; riskrank reads the push fields below. Other fields "
    "are allowed and kept.",
    "type": "object",
    "properties": {
        "object_kind": {"type": "string", "examples": ["push"]},
        "project": {
            "type": "object",
            "required": ["path_with_namespace"],
            "properties": {
                "path_with_namespace": {"type": "string", "description": "GROUP/.../NAME"},
                "default_branch": {"type": "string"},
            },
        },
        "ref": {"type": "string"},
        "before": {"type": "string"},
        "after": {"type": "string"},
        "checkout_sha": {"type": ["string", "null"]},
        "total_commits_count": {"type": "integer"},
        "commits": {"type": "array", "items": _COMMIT},
    },
}

GITHUB_PARAMETERS = [
    _header(
        github.EVENT_HEADER,
        "push is processed, ping recorded, every other event acknowledged and dropped.",
        required=True,
    ),
    _header(
        github.DELIVERY_HEADER,
        "The delivery's id: a redelivery with the same id is stored once.",
        required=True,
        max_length=limits.NAME_CHARS,
    ),
]
GITLAB_PARAMETERS = [
    _header(
        gitlab.EVENT_HEADER,
        "Push Hook and Merge Request Hook (open, reopen, update with new commits) are "
        "processed, Tag Push Hook recorded, every other event acknowledged and dropped.",
        required=True,
    ),
    _header(
        gitlab.SIGNATURE_HEADER,
        '`v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`, keyed '
        "with the webhook's signing token (`whsec_<base64 key>`); required when the "
        "repository has a signing token.",
    ),
    _header(gitlab.WEBHOOK_ID_HEADER, "The signed delivery's id (with webhook-signature)."),
    _header(
        gitlab.TIMESTAMP_HEADER,
        "The signed delivery's time in Unix seconds (with webhook-signature); refused "
        "past 5 minutes from the server's clock.",
    ),
    _header(
        gitlab.IDEMPOTENCY_HEADER,
        "Stable across GitLab's retries of one delivery (GitLab 17.4+).",
        max_length=limits.NAME_CHARS,
    ),
    _header(
        gitlab.EVENT_UUID_HEADER,
        "One per event (GitLab 14.8+), the delivery's id without Idempotency-Key.",
        max_length=limits.NAME_CHARS,
    ),
]
GENERIC_PARAMETERS = [
    _header(
        generic.DELIVERY_HEADER,
        "The sender's own id of the event (a build number, say); without one, the same "
        "body is the same event.",
        max_length=generic.MAX_DELIVERY_ID,
    ),
]

_FORM = {
    "type": "object",
    "required": ["payload"],
    "properties": {"payload": {"type": "string", "description": "The delivery's JSON."}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


GITHUB_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _ref("GitHubDelivery")},
        # GitHub's "application/x-www-form-urlencoded" content type.
        "application/x-www-form-urlencoded": {"schema": _FORM},
    },
}
GITLAB_BODY = {
    "required": True,
    "content": {"application/json": {"schema": _ref("GitLabDelivery")}},
}


def _generic_schema() -> dict[str, Any]:
    """The generic body's JSON schema, its nested models named for the
    document's components (the models' own names are private)."""
    text = json.dumps(generic.body_json_schema(ref_template="#/components/schemas/{model}"))
    for private, public in (("_ChangedFileIn", "GenericChangedFile"), ("_HunkIn", "GenericHunk")):
        text = text.replace(f'"{private}"', f'"{public}"').replace(f"/{private}", f"/{public}")
    schema: dict[str, Any] = json.loads(text)
    schema["title"] = "GenericCommit"
    schema["description"] = "One commit from any CI (see the README: the generic event)."
    return schema


_GENERIC_SCHEMA = _generic_schema()
# Components the generic body's schema refers to (its nested models).
_GENERIC_DEFS: dict[str, Any] = _GENERIC_SCHEMA.pop("$defs", {})
GENERIC_BODY = {
    "required": True,
    "content": {"application/json": {"schema": _ref("GenericCommit")}},
}


def _results_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The results JSON's schema (the runs API's JSON body), and the
    components it refers to, named for the document."""
    text = json.dumps(
        json_results.RunIn.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    text = text.replace('"ResultIn"', '"RunResult"').replace("/ResultIn", "/RunResult")
    schema: dict[str, Any] = json.loads(text)
    schema["title"] = "RunReport"
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return schema, definitions


RESULTS_SCHEMA, _RESULTS_DEFS = _results_schema()
RESULTS_BODY = {"schema": _ref("RunReport")}

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format (version 0.0.4), not JSON.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


ERROR_SCHEMA = {
    "title": "Error",
    "description": "Every refusal: one message naming the field (scheduler.errors).",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}},
}

# What any request may hear before its handler runs (app.GuardRequestHead,
# FastAPI's own parameter checks): declared on every operation.
_BEFORE_ANY_HANDLER: dict[str, str] = {
    "400": "A parameter of the wrong type or form: the message names it",
    "414": f"The URL (path and query) is over {limits.URL_BYTES} bytes",
    "422": "A value past a bound of riskrank (a NUL in the URL or a header, a value "
    "too long or out of range): the message names it, and nothing was stored",
    "431": f"A header is over {limits.HEADER_BYTES} bytes, or all of them over "
    f"{limits.HEADERS_BYTES}",
}


def _declare_refusals(document: dict[str, Any]) -> None:
    """Add the refusals any request may hear to every operation, and the
    Error body to every 4xx answer that declares none."""
    error = {"application/json": {"schema": _ref("Error")}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in _BEFORE_ANY_HANDLER.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status.startswith("4") and "content" not in response:
                    response["content"] = error


def install(app: FastAPI) -> None:
    """Make `app.openapi` add the webhook bodies' schemas (and the models
    the generic one refers to) to the document's components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=app.description
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_GENERIC_DEFS)
            schemas.update(_RESULTS_DEFS)
            schemas.update(
                GitHubDelivery=GITHUB_PUSH,
                GitLabDelivery=GITLAB_PUSH,
                GenericCommit=_GENERIC_SCHEMA,
                RunReport=RESULTS_SCHEMA,
                Error=ERROR_SCHEMA,
            )
            _declare_refusals(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
