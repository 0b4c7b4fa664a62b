"""/openapi.json says how each endpoint is authenticated, which headers and
bodies the webhooks read, and that /metrics is Prometheus text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.config import Settings
from scheduler.ingest import generic, github, gitlab

RUNS = "/api/v1/repos/{owner}/{name}/runs"
PLANS = "/api/v1/repos/{owner}/{name}/plans/{sha}"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("openapi"))
    with TestClient(create_app(settings)) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    loaded: dict[str, Any] = response.json()
    return loaded


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    found: Any = document
    for part in reference.removeprefix("#/").split("/"):
        found = found[part]
    return _resolve(document, found)


def test_the_security_schemes_are_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiToken"]["type"] == "http"
    assert schemes["ApiToken"]["scheme"] == "bearer"
    for name, header in (
        ("GitHubSignature", github.SIGNATURE_HEADER),
        ("GitLabToken", gitlab.TOKEN_HEADER),
        ("RiskrankSignature", generic.SIGNATURE_HEADER),
    ):
        assert schemes[name] | {"description": ""} == {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "",
        }


@pytest.mark.parametrize(("path", "method"), [(RUNS, "post"), (PLANS, "get"), (PLANS, "post")])
def test_the_token_endpoints_need_the_api_token(
    document: dict[str, Any], path: str, method: str
) -> None:
    operation = document["paths"][path][method]
    assert operation["security"] == [{"ApiToken": []}]
    assert {"401", "403", "404", "429"} <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["429"]["headers"]


WEBHOOKS = [
    pytest.param(
        "github",
        "GitHubSignature",
        {github.EVENT_HEADER: True, github.DELIVERY_HEADER: True},
        {"application/json", "application/x-www-form-urlencoded"},
        ("repository", "full_name"),
        id="github",
    ),
    pytest.param(
        "gitlab",
        "GitLabToken",
        {
            gitlab.EVENT_HEADER: True,
            gitlab.IDEMPOTENCY_HEADER: False,
            gitlab.EVENT_UUID_HEADER: False,
            gitlab.SIGNATURE_HEADER: False,
            gitlab.WEBHOOK_ID_HEADER: False,
            gitlab.TIMESTAMP_HEADER: False,
        },
        {"application/json"},
        ("project", "path_with_namespace"),
        id="gitlab",
    ),
    pytest.param(
        "generic",
        "RiskrankSignature",
        {generic.DELIVERY_HEADER: False},
        {"application/json"},
        ("repository", None),
        id="generic",
    ),
]


@pytest.mark.parametrize(("provider", "scheme", "headers", "media", "names"), WEBHOOKS)
def test_each_webhook_declares_its_signature_headers_and_body(
    document: dict[str, Any],
    provider: str,
    scheme: str,
    headers: dict[str, bool],
    media: set[str],
    names: tuple[str, str | None],
) -> None:
    operation = document["paths"][f"/webhooks/{provider}"]["post"]
    assert operation["security"] == [{scheme: []}]
    declared = {p["name"]: p["required"] for p in operation["parameters"] if p["in"] == "header"}
    assert declared == headers
    body = operation["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == media
    schema = _resolve(document, body["content"]["application/json"]["schema"])
    assert schema["type"] == "object"
    outer, inner = names
    # GitLab events riskrank drops may name no project (older Job Hooks).
    assert (outer in schema.get("required", [])) is (provider != "gitlab")
    field = _resolve(document, schema["properties"][outer])
    if inner is None:
        assert field["type"] == "string"
    else:
        assert inner in field["required"]
        assert field["properties"][inner]["type"] == "string"
    # One answer for an unknown repository and a bad signature: no 403, no 404.
    assert "401" in operation["responses"]
    assert not {"403", "404"} & set(operation["responses"])


def test_the_generic_body_is_the_parser_own_model(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["GenericCommit"]
    assert set(schema["required"]) == {"repository", "commit"}
    assert schema["additionalProperties"] is False
    files = _resolve(document, schema["properties"]["changed_files"]["items"])
    assert "path" in files["properties"]
    # The parser's models are private: the document names them for readers.
    assert not [name for name in document["components"]["schemas"] if name.startswith("_")]


def test_metrics_is_prometheus_text_not_json(document: dict[str, Any]) -> None:
    answer = document["paths"]["/metrics"]["get"]["responses"]["200"]
    assert set(answer["content"]) == {"text/plain"}
    assert answer["content"]["text/plain"]["schema"] == {"type": "string"}
    assert "Prometheus" in answer["description"]


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    references = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert references
    for reference in references:
        assert _resolve(document, {"$ref": reference})


def test_metrics_answers_the_text_it_documents(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
