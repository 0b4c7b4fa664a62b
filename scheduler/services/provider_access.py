"""What riskrank needs to pull a repository's test results from its CI:
the provider API token, the API's base URL and the artifact names to pull.

The token is kept in clear (SECURITY.md): riskrank sends the token itself
to the provider, so a hash would not do, and a key to decrypt it would sit
beside it in the same settings. It is never shown again once set: the CLI
and the logs say only whether one is set."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from scheduler.ingest.payload import signing_key
from scheduler.models import Provider, Repository
from scheduler.services import repos

DEFAULT_API_URLS = {
    Provider.GITHUB: "https://api.github.com",
    Provider.GITLAB: "https://gitlab.com/api/v4",
}
# Comma-separated globs, matched case-insensitively against an artifact's
# name: the names CI configurations give their JUnit reports most often
# (`junit`, `junit-report`, `test-results`, `test-results-3.12`,
# `test-reports`, `surefire-reports`).
DEFAULT_ARTIFACT_PATTERN = "*junit*,*test-result*,*test-report*,*surefire*"

TOKEN_MAX_CHARS = 512
URL_MAX_CHARS = 512
PATTERN_MAX_CHARS = 255
SIGNING_TOKEN_MAX_CHARS = 255


class AccessError(repos.RepositoryError):
    """A token, URL or pattern riskrank could not use; the message says why
    (and never holds the token)."""


@dataclass(frozen=True)
class ProviderAccess:
    """A repository's access as the pulling code reads it (defaults applied)."""

    provider: Provider
    full_name: str
    token: str | None
    api_url: str
    patterns: tuple[str, ...]
    commit_status: bool = False

    def __repr__(self) -> str:
        # Never the token: a dataclass's repr reaches tracebacks and logs.
        return (
            f"ProviderAccess({self.provider.value}, {self.full_name!r}, "
            f"token={'set' if self.token else 'unset'}, api_url={self.api_url!r})"
        )


def split_patterns(text: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def name_matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether an artifact's name matches one of the globs (case-insensitive)."""
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in patterns)


def check_api_url(url: str) -> str:
    """An http(s) URL without a query or fragment, without its trailing slash."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise AccessError(f"{url!r} is not an http(s) URL (e.g. https://api.github.com)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise AccessError("the API URL takes no query, fragment or credentials")
    if len(url) > URL_MAX_CHARS:
        raise AccessError(f"the API URL is longer than {URL_MAX_CHARS} characters")
    return url


def check_token(token: str) -> str:
    token = token.strip()
    if not token:
        raise AccessError("the token is empty")
    if len(token) > TOKEN_MAX_CHARS:
        raise AccessError(f"the token is longer than {TOKEN_MAX_CHARS} characters")
    if not token.isascii() or not token.isprintable() or " " in token:
        # It goes into an HTTP header as it is.
        raise AccessError("the token must be printable ASCII without spaces")
    return token


def check_pattern(pattern: str) -> str:
    if not split_patterns(pattern):
        raise AccessError("the artifact pattern names no glob (e.g. '*junit*,*test-results*')")
    if len(pattern) > PATTERN_MAX_CHARS:
        raise AccessError(f"the artifact pattern is longer than {PATTERN_MAX_CHARS} characters")
    return ",".join(split_patterns(pattern))


def check_signing_token(token: str) -> str:
    """A GitLab signing token: `whsec_` and the base64 of a key of at least
    16 bytes (GitLab makes 32)."""
    token = token.strip()
    key = signing_key(token)
    if key is None or len(key) < 16:
        raise AccessError(
            "a GitLab signing token is whsec_ followed by the base64 of its key "
            "(at least 16 bytes), as GitLab shows it"
        )
    if len(token) > SIGNING_TOKEN_MAX_CHARS:
        raise AccessError(f"the signing token is longer than {SIGNING_TOKEN_MAX_CHARS} characters")
    return token


def update_access(
    repository: Repository,
    *,
    token: str | None = None,
    clear_token: bool = False,
    api_url: str | None = None,
    artifact_pattern: str | None = None,
    signing_token: str | None = None,
    clear_signing_token: bool = False,
    commit_status: bool | None = None,
) -> None:
    """Change what is given (an empty URL or pattern goes back to the default)."""
    if repository.provider not in DEFAULT_API_URLS:
        raise AccessError(
            f"riskrank pulls results from GitHub and GitLab only, not from "
            f"{repository.provider.value} repositories"
        )
    if token is not None and clear_token:
        raise AccessError("give a token or clear it, not both")
    if signing_token is not None and clear_signing_token:
        raise AccessError("give a signing token or clear it, not both")
    if signing_token is not None and repository.provider is not Provider.GITLAB:
        raise AccessError("signing tokens are GitLab's: GitHub signs with the webhook secret")
    if signing_token is not None:
        repository.webhook_signing_token = check_signing_token(signing_token)
    if clear_signing_token:
        repository.webhook_signing_token = None
    if commit_status is not None:
        repository.commit_status = commit_status
    if token is not None:
        repository.provider_token = check_token(token)
    if clear_token:
        repository.provider_token = None
    if api_url is not None:
        repository.provider_api_url = check_api_url(api_url) if api_url.strip() else None
    if artifact_pattern is not None:
        repository.artifact_pattern = (
            check_pattern(artifact_pattern) if artifact_pattern.strip() else None
        )


def access_of(repository: Repository) -> ProviderAccess:
    default_url = DEFAULT_API_URLS.get(repository.provider, "")
    return ProviderAccess(
        provider=repository.provider,
        full_name=repository.full_name,
        token=repository.provider_token or None,
        api_url=repository.provider_api_url or default_url,
        patterns=split_patterns(repository.artifact_pattern or DEFAULT_ARTIFACT_PATTERN),
        commit_status=bool(repository.commit_status),
    )


def load_access(session: Session, repository_id: int) -> ProviderAccess | None:
    repository = session.get(Repository, repository_id)
    return access_of(repository) if repository is not None else None


def pulls_results(session: Session, repository_id: int) -> bool:
    """Whether riskrank pulls this repository's results (a token is set)."""
    access = load_access(session, repository_id)
    return access is not None and access.token is not None
