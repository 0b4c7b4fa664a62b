"""GitLab's REST API: a pipeline's test report.

https://docs.gitlab.com/api/pipelines/#get-a-pipelines-test-report"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from scheduler.providers_api.http import ApiClient, HttpSettings, ProviderApiError


def client(base_url: str, token: str, settings: HttpSettings) -> ApiClient:
    """A client of GitLab's API (gitlab.com or a self-managed instance's
    /api/v4) with a personal, project or group access token."""
    return ApiClient(base_url, {"PRIVATE-TOKEN": token}, settings)


def project_ref(project_id: int | None, path: str) -> str:
    """How the API names a project: its id, else its URL-encoded path."""
    return str(project_id) if project_id is not None else quote(path, safe="")


def pipeline_test_report(api: ApiClient, project: str, pipeline_id: int) -> dict[str, Any]:
    """The pipeline's test report: its suites and their test cases, as
    GitLab read them from the jobs' JUnit artifacts (`artifacts:reports:junit`)."""
    report = api.get_json(f"/projects/{project}/pipelines/{pipeline_id}/test_report")
    if not isinstance(report, dict):
        raise ProviderApiError(f"the test report of pipeline {pipeline_id}: not an object")
    return report
