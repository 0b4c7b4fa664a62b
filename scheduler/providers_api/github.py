"""GitHub's REST API: a workflow run's artifacts.

https://docs.github.com/en/rest/actions/artifacts"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduler.providers_api.http import ApiClient, HttpSettings, ProviderApiError

API_VERSION = "2022-11-28"
PER_PAGE = 100


def client(base_url: str, token: str, settings: HttpSettings) -> ApiClient:
    """A client of GitHub's API (or a GitHub Enterprise server's) with a token."""
    return ApiClient(
        base_url,
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        },
        settings,
    )


@dataclass(frozen=True)
class Artifact:
    id: int
    name: str
    size_in_bytes: int
    expired: bool
    download_url: str


def _artifact(raw: Any, api: ApiClient, full_name: str) -> Artifact | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), int):
        return None
    name = raw.get("name")
    size = raw.get("size_in_bytes")
    listed = raw.get("archive_download_url")
    own = f"{api.base_url}/repos/{full_name}/actions/artifacts/{raw['id']}/zip"
    # The token goes only to this API: a listed URL elsewhere is not followed.
    url = listed if isinstance(listed, str) and listed.startswith(api.base_url + "/") else own
    return Artifact(
        id=raw["id"],
        name=name if isinstance(name, str) else "",
        size_in_bytes=size if isinstance(size, int) else 0,
        expired=bool(raw.get("expired")),
        download_url=url,
    )


def run_artifacts(api: ApiClient, full_name: str, run_id: int) -> list[Artifact]:
    """Every artifact of a workflow run, over all pages."""
    artifacts: list[Artifact] = []
    for page in api.pages(
        f"/repos/{full_name}/actions/runs/{run_id}/artifacts", params={"per_page": PER_PAGE}
    ):
        listed = page.get("artifacts") if isinstance(page, dict) else None
        if not isinstance(listed, list):
            raise ProviderApiError(f"the artifacts of run {run_id}: not an artifact list")
        for raw in listed:
            artifact = _artifact(raw, api, full_name)
            if artifact is not None:
                artifacts.append(artifact)
    return artifacts


def download_artifact(api: ApiClient, artifact: Artifact, *, max_bytes: int) -> bytes:
    """The artifact's zip (GitHub answers with a redirect to storage)."""
    if artifact.size_in_bytes > max_bytes:
        raise ProviderApiError(
            f"artifact {artifact.name!r} is {artifact.size_in_bytes} bytes, "
            f"over the limit of {max_bytes}"
        )
    return api.download(artifact.download_url, max_bytes=max_bytes)
