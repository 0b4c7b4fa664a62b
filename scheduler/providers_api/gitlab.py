"""GitLab's REST API: a pipeline's test report, its jobs and their artifacts,
a merge request's diffs, comparisons, commit statuses.

https://docs.gitlab.com/api/pipelines/#get-a-pipelines-test-report
https://docs.gitlab.com/api/jobs/#list-pipeline-jobs
https://docs.gitlab.com/api/job_artifacts/#get-job-artifacts"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from scheduler.models.enums import FileStatus
from scheduler.providers_api import changes
from scheduler.providers_api.changes import ComparedCommit, Comparison, FileDiff
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


PER_PAGE = 100


@dataclass(frozen=True)
class Job:
    """A pipeline's job and its artifacts archive (`archive_bytes` None: the
    job kept none, e.g. it declared only `artifacts:reports`)."""

    id: int
    name: str
    archive_bytes: int | None


def _job(raw: Any) -> Job | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), int):
        return None
    name = raw.get("name")
    listed = raw.get("artifacts")
    archives = [
        entry.get("size")
        for entry in (listed if isinstance(listed, list) else [])
        if isinstance(entry, dict) and entry.get("file_type") == "archive"
    ]
    return Job(
        id=raw["id"],
        name=name if isinstance(name, str) else "",
        archive_bytes=((archives[0] if isinstance(archives[0], int) else 0) if archives else None),
    )


def pipeline_jobs(api: ApiClient, project: str, pipeline_id: int) -> list[Job]:
    """Every job of the pipeline (the last try of each), over all pages."""
    jobs: list[Job] = []
    for page in api.pages(
        f"/projects/{project}/pipelines/{pipeline_id}/jobs", params={"per_page": PER_PAGE}
    ):
        if not isinstance(page, list):
            raise ProviderApiError(f"the jobs of pipeline {pipeline_id}: not a job list")
        jobs.extend(job for job in map(_job, page) if job is not None)
    return jobs


def download_job_artifacts(api: ApiClient, project: str, job: Job, *, max_bytes: int) -> bytes:
    """The job's artifacts archive (a zip; GitLab may redirect to storage)."""
    if job.archive_bytes is not None and job.archive_bytes > max_bytes:
        raise ProviderApiError(
            f"the artifacts of job {job.id} ({job.name!r}) are {job.archive_bytes} bytes, "
            f"over the limit of {max_bytes}"
        )
    return api.download(f"/projects/{project}/jobs/{job.id}/artifacts", max_bytes=max_bytes)


# --- merge requests, comparisons and commit statuses -----------------------------
# https://docs.gitlab.com/api/merge_requests/#list-merge-request-diffs
# https://docs.gitlab.com/api/repositories/#compare-branches-tags-or-commits
# https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit


def _diff(raw: Any) -> FileDiff | None:
    if not isinstance(raw, dict):
        return None
    path = changes.fits_path(raw.get("new_path")) or changes.fits_path(raw.get("old_path"))
    if path is None:
        return None
    if raw.get("deleted_file"):
        status = FileStatus.REMOVED
    elif raw.get("new_file"):
        status = FileStatus.ADDED
    elif raw.get("renamed_file"):
        status = FileStatus.RENAMED
    else:
        status = FileStatus.MODIFIED
    additions, deletions = changes.diff_counts(raw.get("diff"))
    return FileDiff(
        path=path,
        status=status,
        old_path=changes.fits_path(raw.get("old_path")) if status is FileStatus.RENAMED else None,
        additions=additions,
        deletions=deletions,
    )


def merge_request_diffs(api: ApiClient, project: str, iid: int) -> list[FileDiff]:
    """The files a merge request changes (its head against the merge base
    with its target branch), over all pages (`X-Next-Page`)."""
    pages = api.pages(
        f"/projects/{project}/merge_requests/{iid}/diffs", params={"per_page": PER_PAGE}
    )
    return changes.listed_files(pages, _diff, f"the diffs of merge request !{iid}")


def _compared_commit(raw: Any) -> ComparedCommit | None:
    if not isinstance(raw, dict):
        return None
    sha = changes.fits_sha(raw.get("id"))
    if sha is None:
        return None
    parents = raw.get("parent_ids")
    return ComparedCommit(
        sha=sha,
        parent_sha=changes.fits_sha(parents[0]) if isinstance(parents, list) and parents else None,
        author_name=changes.fits_name(raw.get("author_name")),
        author_time=changes.fits_time(raw.get("authored_date") or raw.get("created_at")),
        message=changes.fits_message(raw.get("message")),
    )


def compare(api: ApiClient, project: str, base: str, head: str) -> Comparison:
    """The commits from `base` to `head` and the files `head` changed since
    their merge base (one answer: GitLab does not page a comparison)."""
    answer = api.get_json(
        f"/projects/{project}/repository/compare", params={"from": base, "to": head}
    )
    if not isinstance(answer, dict):
        raise ProviderApiError(f"the comparison {base}...{head}: not an object")
    listed = answer.get("commits")
    diffs = answer.get("diffs")
    commits = [_compared_commit(raw) for raw in (listed if isinstance(listed, list) else [])]
    files = [_diff(raw) for raw in (diffs if isinstance(diffs, list) else [])]
    return Comparison(
        commits=tuple(commit for commit in commits if commit is not None),
        files=tuple({diff.path: diff for diff in files if diff is not None}.values()),
    )


def post_status(
    api: ApiClient,
    project: str,
    sha: str,
    *,
    state: str,
    description: str,
    context: str,
    target_url: str | None = None,
) -> None:
    """Set the commit's external status `context` (pending, running,
    success, failed, canceled)."""
    document: dict[str, Any] = {"state": state, "name": context, "description": description}
    if target_url:
        document["target_url"] = target_url
    api.post_json(f"/projects/{project}/statuses/{sha}", document)
