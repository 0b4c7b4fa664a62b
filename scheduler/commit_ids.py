"""What riskrank takes as a commit, on every path one comes in by (the plan
API, the results API, the generic webhook, `riskrank plan`, `riskrank plan-log
show`): the full id git prints, 40 hex digits (64 in a SHA-256
repository), in lower case. A name such as HEAD or main means a different
commit tomorrow; taken literally it would be stored as a commit of its own
and planned as one, so it is refused.

Where a person types the commit (the CLI), `resolve` also takes an
unambiguous prefix of a commit riskrank knows, as git does.

The history import is not such a path: its build ids need not be shas."""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.errors import ClientError
from scheduler.models import Commit, Repository

FULL_LENGTHS: Final = (40, 64)  # SHA-1, SHA-256
MIN_PREFIX: Final = 4  # as git's core.abbrev floor
CANDIDATES_SHOWN: Final = 5
# A full id as the OpenAPI document describes it (parse also takes it with
# surrounding spaces).
PATTERN: Final = "^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$"

_HEX = re.compile(r"[0-9a-f]+")
_WANTED = "give the full 40 (or 64) hex digits, as `git rev-parse HEAD` prints them"


class CommitIdError(ClientError):
    """A commit riskrank cannot take: not an id, or a prefix naming no
    single commit (400)."""

    status_code = 400


class UnknownCommit(CommitIdError):
    """A prefix of no commit riskrank knows of the repository (404)."""

    status_code = 404


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "…")


def _hex(sha: str) -> bool:
    return _HEX.fullmatch(sha) is not None


def is_full(text: str) -> bool:
    """Whether `text` is a full commit id (in either case)."""
    sha = text.strip().lower()
    return len(sha) in FULL_LENGTHS and _hex(sha)


def parse(text: str) -> str:
    """The full commit id `text` gives, in lower case; CommitIdError saying
    what was given and what is expected for anything else."""
    sha = text.strip().lower()
    if len(sha) in FULL_LENGTHS and _hex(sha):
        return sha
    digits = f" ({len(sha)} hex digits)" if sha and _hex(sha) else ""
    raise CommitIdError(f"{_shown(text)} is not a commit id{digits}: {_WANTED}")


def resolve(session: Session, repository: Repository, text: str) -> str:
    """The full commit id `text` gives: a full id (known or not), or a prefix
    of at least MIN_PREFIX hex digits of exactly one commit riskrank knows
    of `repository`. CommitIdError otherwise (UnknownCommit for a prefix of
    none), listing candidates for an ambiguous prefix."""
    sha = text.strip().lower()
    if is_full(sha):
        return sha
    if not _hex(sha) or not MIN_PREFIX <= len(sha) <= max(FULL_LENGTHS):
        raise CommitIdError(
            f"{_shown(text)} is not a commit id: {_WANTED}, "
            f"or at least {MIN_PREFIX} of a commit riskrank knows"
        )
    found = list(
        session.scalars(
            select(Commit.sha)
            .where(Commit.repository_id == repository.id, Commit.sha.startswith(sha))
            .order_by(Commit.sha)
            .limit(CANDIDATES_SHOWN + 1)
        )
    )
    if not found:
        raise UnknownCommit(f"riskrank knows no commit {sha} of {repository.full_name}: {_WANTED}")
    if len(found) > 1:
        many = (
            f"more than {CANDIDATES_SHOWN} commits"
            if len(found) > CANDIDATES_SHOWN
            else f"{len(found)} commits"
        )
        listed = ", ".join(found[:CANDIDATES_SHOWN])
        raise CommitIdError(
            f"{sha} names {many} of {repository.full_name} ({listed}): give more digits"
        )
    return found[0]
