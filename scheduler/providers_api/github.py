"""GitHub's REST API: a workflow run's artifacts and jobs, a pull request's
files, comparisons, commit statuses.

https://docs.github.com/en/rest/actions/artifacts
https://docs.github.com/en/rest/actions/workflow-jobs"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scheduler import limits
from scheduler.models.enums import FileStatus
from scheduler.providers_api import changes
from scheduler.providers_api.changes import ComparedCommit, Comparison, FileDiff
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


@dataclass(frozen=True)
class Job:
    """A workflow job (each is a check run) and how it concluded: success,
    failure, cancelled, skipped, …; None while it has not completed."""

    name: str
    conclusion: str | None


def _job(raw: Any) -> Job | None:
    if not isinstance(raw, dict):
        return None
    name = raw.get("name")
    conclusion = raw.get("conclusion")
    return Job(
        name=name[: limits.NAME_CHARS] if isinstance(name, str) else "",
        conclusion=conclusion[: limits.EVENT_CHARS] if isinstance(conclusion, str) else None,
    )


def run_jobs(api: ApiClient, full_name: str, run_id: int, attempt: int) -> list[Job]:
    """The jobs of a workflow run's attempt, over all pages."""
    jobs: list[Job] = []
    for page in api.pages(
        f"/repos/{full_name}/actions/runs/{run_id}/attempts/{attempt}/jobs",
        params={"per_page": PER_PAGE},
    ):
        listed = page.get("jobs") if isinstance(page, dict) else None
        if not isinstance(listed, list):
            raise ProviderApiError(f"the jobs of run {run_id}: not a job list")
        jobs.extend(job for job in map(_job, listed) if job is not None)
    return jobs


# --- pull requests, comparisons and commit statuses ------------------------------
# https://docs.github.com/en/rest/pulls/pulls#list-pull-requests-files
# https://docs.github.com/en/rest/commits/commits#compare-two-commits
# https://docs.github.com/en/rest/commits/statuses#create-a-commit-status

# GitHub's file statuses, as riskrank stores them.
_FILE_STATUSES = {
    "added": FileStatus.ADDED,
    "removed": FileStatus.REMOVED,
    "renamed": FileStatus.RENAMED,
    "copied": FileStatus.COPIED,
}


def _file(raw: Any) -> FileDiff | None:
    if not isinstance(raw, dict):
        return None
    path = changes.fits_path(raw.get("filename"))
    if path is None:
        return None
    status = _FILE_STATUSES.get(str(raw.get("status")), FileStatus.MODIFIED)
    return FileDiff(
        path=path,
        status=status,
        old_path=changes.fits_path(raw.get("previous_filename")),
        additions=changes.count(raw.get("additions")),
        deletions=changes.count(raw.get("deletions")),
    )


def pull_request_files(api: ApiClient, full_name: str, number: int) -> list[FileDiff]:
    """The files a pull request changes (its head against the merge base
    with its base branch), over all pages (GitHub lists at most 3000)."""
    pages = api.pages(f"/repos/{full_name}/pulls/{number}/files", params={"per_page": PER_PAGE})
    return changes.listed_files(pages, _file, f"the files of pull request {number}")


def _compared_commit(raw: Any) -> ComparedCommit | None:
    if not isinstance(raw, dict):
        return None
    sha = changes.fits_sha(raw.get("sha"))
    if sha is None:
        return None
    parents = raw.get("parents")
    first = parents[0] if isinstance(parents, list) and parents else None
    listed = raw.get("commit")
    commit: dict[str, Any] = listed if isinstance(listed, dict) else {}
    written = commit.get("author")
    author: dict[str, Any] = written if isinstance(written, dict) else {}
    return ComparedCommit(
        sha=sha,
        parent_sha=changes.fits_sha(first.get("sha")) if isinstance(first, dict) else None,
        author_name=changes.fits_name(author.get("name")),
        author_time=changes.fits_time(author.get("date")),
        message=changes.fits_message(commit.get("message")),
    )


def compare(api: ApiClient, full_name: str, base: str, head: str) -> Comparison:
    """The commits from `base` to `head` and the files `head` changed since
    their merge base. GitHub pages the commits; the files come whole on the
    first page (at most 300)."""
    commits: dict[str, ComparedCommit] = {}
    files: dict[str, FileDiff] = {}
    for page in api.pages(
        f"/repos/{full_name}/compare/{base}...{head}", params={"per_page": PER_PAGE}
    ):
        if not isinstance(page, dict):
            raise ProviderApiError(f"the comparison {base}...{head}: not an object")
        listed = page.get("commits")
        for raw in listed if isinstance(listed, list) else []:
            commit = _compared_commit(raw)
            if commit is not None:
                commits[commit.sha] = commit
        listed_files = page.get("files")
        for raw in listed_files if isinstance(listed_files, list) else []:
            diff = _file(raw)
            if diff is not None:
                files[diff.path] = diff
    return Comparison(commits=tuple(commits.values()), files=tuple(files.values()))


def post_status(
    api: ApiClient,
    full_name: str,
    sha: str,
    *,
    state: str,
    description: str,
    context: str,
    target_url: str | None = None,
) -> None:
    """Set the commit's status of `context` (pending, success, failure, error);
    GitHub keeps the description to 140 characters."""
    document: dict[str, Any] = {
        "state": state,
        "description": description[:140],
        "context": context,
    }
    if target_url:
        document["target_url"] = target_url
    api.post_json(f"/repos/{full_name}/statuses/{sha}", document)
