"""API tokens: shown once, stored as a hash, bound to one repository and
to the scopes named when they were made."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.errors import ClientError
from scheduler.models import ApiToken, Repository
from scheduler.models.base import utcnow
from scheduler.services.repos import slug_for

TOKEN_PREFIX = "rr_"  # noqa: S105  (a prefix that makes leaked tokens easy to spot)


class Scope(enum.StrEnum):
    RESULTS_WRITE = "results:write"
    PLANS_READ = "plans:read"


DEFAULT_SCOPES = (Scope.RESULTS_WRITE, Scope.PLANS_READ)


class TokenError(ClientError):
    """A token that does not let its bearer do what they asked."""

    status_code = 401


class NotAuthenticated(TokenError):
    status_code = 401


class NotAllowed(TokenError):
    status_code = 403


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain digest is enough, no slow KDF needed.
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str) -> tuple[Scope, ...]:
    scopes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            scopes.append(Scope(part))
        except ValueError:
            known = ", ".join(scope.value for scope in Scope)
            raise ValueError(f"unknown scope {part!r}; scopes are {known}") from None
    if not scopes:
        raise ValueError("name at least one scope")
    return tuple(dict.fromkeys(scopes))


@dataclass(frozen=True)
class NewToken:
    token: str  # the only time it exists in clear
    record: ApiToken


def create_token(
    session: Session, *, repository: Repository, scopes: tuple[Scope, ...], name: str
) -> NewToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        repository_id=repository.id,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:10],
        scopes=[scope.value for scope in scopes],
    )
    session.add(record)
    session.flush()
    return NewToken(token=token, record=record)


def authenticate(session: Session, *, authorization: str | None) -> ApiToken:
    """The live token of an `Authorization: Bearer …` header (401 otherwise)."""
    if not authorization:
        raise NotAuthenticated("an Authorization: Bearer <token> header is required")
    kind, _, token = authorization.strip().partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("the Authorization header must be 'Bearer <token>'")
    record = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip()))
    )
    if record is None or record.revoked_at is not None:
        raise NotAuthenticated("the token is not valid (unknown or revoked)")
    return record


class NotFoundForToken(TokenError):
    """An unknown repository, or one the token is not for: the same answer
    for both, so that a token cannot probe which repositories exist."""

    status_code = 404


def not_found(full_name: str) -> NotFoundForToken:
    return NotFoundForToken(f"repository {full_name} is not registered, or the token is not for it")


def authorize_token(
    session: Session, *, record: ApiToken, full_name: str, scope: Scope
) -> Repository:
    """The repository `full_name` names, if the authenticated token `record`
    may act on it with `scope`: 404 alike for an unknown repository and for
    another repository's (one query either way, so neither answers sooner),
    403 for a missing scope on the token's own repository."""
    repository = session.scalar(
        select(Repository).where(
            Repository.slug == slug_for(full_name), Repository.id == record.repository_id
        )
    )
    if repository is None:
        raise not_found(full_name)
    if scope.value not in record.scopes:
        raise NotAllowed(f"the token lacks the {scope.value} scope")
    record.last_used_at = utcnow()
    return repository


def authorize(
    session: Session, *, authorization: str | None, full_name: str, scope: Scope
) -> Repository:
    """`authenticate`, then `authorize_token`: 401 without a valid token,
    then 404 or 403 as there."""
    record = authenticate(session, authorization=authorization)
    return authorize_token(session, record=record, full_name=full_name, scope=scope)


@dataclass(frozen=True)
class TokenSummary:
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def list_tokens(session: Session, *, repository: Repository) -> list[TokenSummary]:
    records = session.scalars(
        select(ApiToken).where(ApiToken.repository_id == repository.id).order_by(ApiToken.id)
    )
    return [
        TokenSummary(
            id=r.id,
            name=r.name,
            prefix=r.prefix,
            scopes=list(r.scopes),
            created_at=r.created_at,
            last_used_at=r.last_used_at,
            revoked_at=r.revoked_at,
        )
        for r in records
    ]


def revoke_token(session: Session, *, repository: Repository, token_id: int) -> bool:
    record = session.get(ApiToken, token_id)
    if record is None or record.repository_id != repository.id:
        return False
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    return True
