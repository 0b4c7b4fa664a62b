"""Repositories riskrank watches."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, func, literal, select
from sqlalchemy.orm import Session

from scheduler.ingest.payload import hash_secret
from scheduler.models import CiEvent, Commit, Provider, Repository


class RepositoryError(Exception):
    """A repository command that cannot be carried out."""


class RepositoryExists(RepositoryError):
    pass


class InvalidRepositoryName(RepositoryError):
    pass


def slug_for(full_name: str) -> str:
    return full_name.strip().lower()


# GitLab groups nest (`group/sub/project`), and a generic CI may name its
# repositories the same way; a GitHub repository is exactly OWNER/NAME.
NESTED_NAMES = frozenset({Provider.GITLAB, Provider.GENERIC})


def split_full_name(full_name: str, *, nested: bool = True) -> tuple[str, str]:
    """`OWNER/NAME`, or with `nested` also `group/sub/name` (owner `group/sub`)."""
    owner, _, name = full_name.strip().rpartition("/")
    if not owner or not name or any(not part for part in owner.split("/")):
        raise InvalidRepositoryName(f"{full_name!r} is not OWNER/NAME")
    if not nested and "/" in owner:
        raise InvalidRepositoryName(
            f"{full_name!r} is not OWNER/NAME (only GitLab and generic names nest groups)"
        )
    return owner, name


def new_webhook_secret() -> str:
    return secrets.token_hex(32)


# Providers whose deliveries carry the secret itself (GitLab's X-Gitlab-Token)
# rather than a signature made with it: only its hash need be kept.
HASHED_SECRETS = frozenset({Provider.GITLAB})

MIN_SECRET_CHARS = 16


def set_webhook_secret(repository: Repository, secret: str) -> None:
    """Give a repository its webhook secret: in clear where an HMAC must be
    computed with it, as a salted hash where it is only compared."""
    if len(secret) < MIN_SECRET_CHARS:
        raise RepositoryError(f"a webhook secret needs at least {MIN_SECRET_CHARS} characters")
    if repository.provider in HASHED_SECRETS:
        repository.webhook_secret = None
        repository.webhook_secret_hash = hash_secret(secret)
    else:
        repository.webhook_secret = secret
        repository.webhook_secret_hash = None


def has_webhook_secret(repository: Repository) -> bool:
    return bool(repository.webhook_secret or repository.webhook_secret_hash)


def find_repository(session: Session, *, provider: Provider, full_name: str) -> Repository | None:
    return session.scalar(
        select(Repository).where(
            Repository.provider == provider, Repository.slug == slug_for(full_name)
        )
    )


class WebhookSecret(NamedTuple):
    """What a delivery is checked against (one of the two is set)."""

    repository_id: int
    secret: str | None
    secret_hash: str | None
    signing_token: str | None = None  # GitLab's signed webhooks


def find_webhook_secret(
    session: Session, *, provider: Provider, full_name: str
) -> WebhookSecret | None:
    """The secret of the repository a delivery names. Exactly one row comes
    back either way (a constant row joined to the repository, NULLs when there
    is none), four columns of it, not the model: the time to a refusal
    should not tell a registered repository from an unknown one."""
    one = select(literal(1).label("one")).subquery()
    row = session.execute(
        select(
            Repository.id,
            Repository.webhook_secret,
            Repository.webhook_secret_hash,
            Repository.webhook_signing_token,
        )
        .select_from(one)
        .outerjoin(
            Repository,
            and_(Repository.provider == provider, Repository.slug == slug_for(full_name)),
        )
    ).one()
    return WebhookSecret(*row) if row[0] is not None else None


class UnknownRepositoryName(RepositoryError):
    pass


def resolve_repository(
    session: Session, *, full_name: str, provider: Provider | None = None
) -> Repository:
    """The repository an operator names, with or without its provider."""
    query = select(Repository).where(Repository.slug == slug_for(full_name))
    if provider is not None:
        query = query.where(Repository.provider == provider)
    found = list(session.scalars(query))
    if not found:
        raise UnknownRepositoryName(
            f"repository {full_name} is not registered; run: riskrank repo add {full_name}"
        )
    if len(found) > 1:
        raise RepositoryError(f"{full_name} exists for several providers; name one with --provider")
    return found[0]


def add_repository(
    session: Session,
    *,
    provider: Provider,
    full_name: str,
    webhook_secret: str | None = None,
) -> Repository:
    owner, name = split_full_name(full_name, nested=provider in NESTED_NAMES)
    if find_repository(session, provider=provider, full_name=full_name) is not None:
        raise RepositoryExists(f"{provider.value} repository {full_name} is already registered")
    repository = Repository(
        provider=provider, owner=owner, name=name, slug=slug_for(full_name), settings={}
    )
    # The caller that lets one be made and wants to show it makes it itself
    # (new_webhook_secret): for GitLab, only its hash is kept.
    set_webhook_secret(repository, webhook_secret or new_webhook_secret())
    session.add(repository)
    session.flush()
    return repository


@dataclass(frozen=True)
class RepositorySummary:
    provider: Provider
    full_name: str
    has_secret: bool
    commits: int
    events: int
    last_event_at: datetime | None


def list_repositories(session: Session) -> list[RepositorySummary]:
    commits = (
        select(Commit.repository_id, func.count().label("n"))
        .group_by(Commit.repository_id)
        .subquery()
    )
    events = (
        select(
            CiEvent.repository_id,
            func.count().label("n"),
            func.max(CiEvent.received_at).label("last"),
        )
        .group_by(CiEvent.repository_id)
        .subquery()
    )
    rows = session.execute(
        select(Repository, commits.c.n, events.c.n, events.c.last)
        .outerjoin(commits, commits.c.repository_id == Repository.id)
        .outerjoin(events, events.c.repository_id == Repository.id)
        .order_by(Repository.provider, Repository.slug)
    ).all()
    summaries = []
    for repository, n_commits, n_events, last_event in rows:
        summaries.append(
            RepositorySummary(
                provider=repository.provider,
                full_name=repository.full_name,
                has_secret=has_webhook_secret(repository),
                commits=n_commits or 0,
                events=n_events or 0,
                last_event_at=last_event,
            )
        )
    return summaries
