"""riskrank upload: send test reports from any CI step, after any runner.

It never fails the CI job because riskrank is unreachable or refuses the
report, unless --strict asks it to: riskrank must never break a build."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import requests
import typer

GZIP_MAGIC = b"\x1f\x8b"


def _warn(line: str) -> None:
    # Plain text, one line: CI logs show it as is (no markup, no wrapping).
    print(line, file=sys.stderr, flush=True)


def _content_type(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".json"):
        return "application/json"
    return "application/xml"


def _post(
    url: str,
    *,
    data: bytes,
    headers: dict[str, str],
    params: dict[str, str],
    timeout: float,
    retries: int,
) -> requests.Response:
    """POST with a short retry on connection errors and 5xx answers."""
    for attempt in range(retries + 1):
        try:
            response = requests.post(
                url, data=data, headers=headers, params=params, timeout=timeout
            )
        except (requests.ConnectionError, requests.Timeout):
            if attempt == retries:
                raise
        else:
            if response.status_code < 500 or attempt == retries:
                return response
        time.sleep(min(0.5 * 2**attempt, 4.0))
    raise AssertionError("unreachable")


def upload(
    reports: Annotated[
        list[Path], typer.Argument(help="JUnit XML or results JSON files (.gz allowed).")
    ],
    url: Annotated[
        str | None, typer.Option(envvar="RISKRANK_URL", help="riskrank's base URL.")
    ] = None,
    repo: Annotated[str | None, typer.Option(envvar="RISKRANK_REPO", metavar="OWNER/NAME")] = None,
    commit: Annotated[
        str | None, typer.Option(envvar="RISKRANK_COMMIT", help="The commit tested.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="RISKRANK_TOKEN", help="API token (results:write).")
    ] = None,
    branch: Annotated[str | None, typer.Option(envvar="RISKRANK_BRANCH")] = None,
    run_key: Annotated[
        str | None,
        typer.Option(envvar="RISKRANK_RUN_KEY", help="Shared by the shards of one build."),
    ] = None,
    plan_id: Annotated[int | None, typer.Option(help="The plan the run followed.")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = 10.0,
    retries: Annotated[int, typer.Option(min=0, max=5, help="Retries on network errors.")] = 2,
    strict: Annotated[
        bool, typer.Option(help="Exit non-zero when an upload fails (default: warn only).")
    ] = False,
) -> None:
    """Upload test reports to riskrank. Fails open: problems are warnings."""
    missing = [
        option
        for option, value in (
            ("--url/RISKRANK_URL", url),
            ("--repo/RISKRANK_REPO", repo),
            ("--commit/RISKRANK_COMMIT", commit),
            ("--token/RISKRANK_TOKEN", token),
        )
        if not value
    ]
    if missing or url is None or repo is None or commit is None or token is None:
        _warn(f"riskrank: nothing uploaded, missing {', '.join(missing)}")
        raise typer.Exit(1 if strict else 0)
    owner, _, name = repo.strip().rpartition("/")
    endpoint = f"{url.rstrip('/')}/api/v1/repos/{quote(owner)}/{quote(name)}/runs"
    params = {"commit": commit}
    for key, value in (("branch", branch), ("run_key", run_key), ("plan_id", plan_id)):
        if value is not None:
            params[key] = str(value)
    failures = 0
    for path in reports:
        try:
            data = path.read_bytes()
        except OSError as error:
            _warn(f"riskrank: cannot read {path}: {error.strerror}")
            failures += 1
            continue
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": _content_type(path),
            "User-Agent": "riskrank-upload",
        }
        if data.startswith(GZIP_MAGIC):
            headers["Content-Encoding"] = "gzip"
        try:
            response = _post(
                endpoint,
                data=data,
                headers=headers,
                params=params,
                timeout=timeout,
                retries=retries,
            )
        except requests.RequestException as error:
            _warn(f"riskrank: could not reach {url} ({type(error).__name__})")
            failures += 1
            continue
        if response.status_code in (200, 202):
            try:
                body = response.json()
                said = f"run {body['run_id']} ({body['status']}, {body['tests']} tests)"
            except (ValueError, KeyError, TypeError):
                said = f"HTTP {response.status_code}"
            print(f"riskrank: uploaded {path}: {said}")
            continue
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text[:200]
        _warn(f"riskrank: {path} refused, HTTP {response.status_code}: {detail}")
        failures += 1
    if failures and strict:
        raise typer.Exit(1)


__all__ = ["upload"]
