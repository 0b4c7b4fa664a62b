"""The generic CI event: one commit, in a small JSON body riskrank defines,
for any CI that is not GitHub or GitLab (pure functions).

    {
      "repository": "owner/name",
      "commit": "<40 or 64 hex digits>",
      "branch": "main",                               optional
      "parents": ["<sha>", ...],                      optional, first parent first, at most 64
      "changed_files": [                              optional, at most 100,000
        {"path": "src/a.py", "status": "modified",    status optional (modified)
         "old_path": "src/b.py",                      optional (renames, copies)
         "additions": 3, "deletions": 1,              optional (both, or neither)
         "hunks": [                                   optional, at most 100 (limits.HUNKS)
           {"old_start": 10, "old_lines": 2,          `git diff -U0`'s @@ header
            "new_start": 10, "new_lines": 3,
            "symbol": "windowed"}                     optional, at most 200 characters
         ]}
      ],
      "message": "...", "author": "...",              optional
      "time": "2024-05-01T12:00:00Z",                 optional, ISO 8601
      "delivery_id": "..."                            optional
    }

Signed like GitHub's deliveries: `X-Riskrank-Signature-256: sha256=<hex
HMAC-SHA256 of the raw body>` with the repository's webhook secret. Unknown
keys are refused: a misspelt optional key would otherwise be lost without a
word."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from scheduler import commit_ids, limits
from scheduler.ingest.errors import MalformedPayload, Unstorable
from scheduler.ingest.hunks import Hunk
from scheduler.ingest.testid import normalise_path
from scheduler.models.enums import FileStatus

SIGNATURE_HEADER = "X-Riskrank-Signature-256"
DELIVERY_HEADER = "X-Riskrank-Delivery"
# The event name a generic delivery is stored under.
COMMIT = "commit"
MAX_DELIVERY_ID = limits.GENERIC_DELIVERY_CHARS


@dataclass(frozen=True)
class ChangedPath:
    path: str
    status: FileStatus
    old_path: str | None = None
    additions: int | None = None
    deletions: int | None = None
    hunks: tuple[Hunk, ...] | None = None


@dataclass(frozen=True)
class CommitEvent:
    repository: str
    sha: str
    branch: str | None
    parents: tuple[str, ...]
    files: tuple[ChangedPath, ...]
    message: str | None = None
    author: str | None = None
    time: datetime | None = None
    delivery_id: str | None = None

    @property
    def parent_sha(self) -> str | None:
        """The first parent: what riskrank keeps of a commit's parents."""
        return self.parents[0] if self.parents else None


def _sha(value: str) -> str:
    try:
        return commit_ids.parse(value)
    except commit_ids.CommitIdError as error:
        # pydantic reports a ValueError under the field's path ("commit: ...").
        raise ValueError(error.message) from None


Sha: TypeAlias = Annotated[
    str,
    AfterValidator(_sha),
    WithJsonSchema({"type": "string", "pattern": commit_ids.PATTERN}),
]


def _repository(value: str) -> str:
    name = value.strip().strip("/")
    parts = name.split("/")
    if len(parts) < 2 or not all(part.strip() for part in parts):
        raise ValueError(f"{value!r} is not OWNER/NAME")
    return name


class _HunkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_start: int = Field(ge=0, le=limits.INT32_MAX, strict=True)
    old_lines: int = Field(ge=0, le=limits.INT32_MAX, strict=True)
    new_start: int = Field(ge=0, le=limits.INT32_MAX, strict=True)
    new_lines: int = Field(ge=0, le=limits.INT32_MAX, strict=True)
    # The bound of what is stored (scheduler.ingest.hunks), refused rather
    # than cut: a cut name would name another symbol.
    symbol: str | None = Field(default=None, min_length=1, max_length=limits.SYMBOL_CHARS)

    def hunk(self) -> Hunk:
        return Hunk(self.old_start, self.old_lines, self.new_start, self.new_lines, self.symbol)


class _ChangedFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    status: FileStatus = FileStatus.MODIFIED
    old_path: str | None = Field(default=None, min_length=1)
    additions: int | None = Field(default=None, ge=0, le=limits.INT32_MAX, strict=True)
    deletions: int | None = Field(default=None, ge=0, le=limits.INT32_MAX, strict=True)
    hunks: list[_HunkIn] | None = Field(default=None, max_length=limits.HUNKS)

    @field_validator("path", "old_path")
    @classmethod
    def _normalised(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = normalise_path(value)
        if not path:
            raise ValueError("a path must not be empty")
        if len(path.encode("utf-8", "surrogatepass")) > limits.PATH_BYTES:
            raise PydanticCustomError(
                limits.UNSTORABLE_ERROR,
                "a path must be at most {limit} bytes in UTF-8",
                {"limit": limits.PATH_BYTES},
            )
        return path


class _CommitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository: str = Field(max_length=511)
    commit: Sha
    branch: str | None = Field(default=None, min_length=1, max_length=limits.NAME_CHARS)
    parents: list[Sha] = Field(default_factory=list, max_length=limits.PARENTS)
    changed_files: list[_ChangedFileIn] = Field(
        default_factory=list, max_length=limits.COMMIT_FILES
    )
    message: str | None = None
    author: str | None = Field(default=None, max_length=limits.NAME_CHARS)
    time: datetime | None = None
    delivery_id: str | None = Field(default=None, min_length=1, max_length=MAX_DELIVERY_ID)

    @field_validator("repository")
    @classmethod
    def _repository_name(cls, value: str) -> str:
        return _repository(value)

    @field_validator("time")
    @classmethod
    def _time(cls, value: datetime | None) -> datetime | None:
        # Without a zone it is taken as UTC (parse_commit); with one it must
        # have a UTC equivalent.
        if value is not None and value.tzinfo is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise PydanticCustomError(
                    limits.UNSTORABLE_ERROR,
                    "{time} is out of range",
                    {"time": value.isoformat()},
                ) from None
        return value

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        # CI tools often hand over the ref rather than the branch.
        return value.removeprefix("refs/heads/") if value else value


def _where(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "body"


def _refusal(error: ValidationError) -> MalformedPayload:
    """400, or 422 when every problem is a bound (scheduler.errors)."""
    kinds = (problem["type"] for problem in error.errors(include_url=False))
    return (Unstorable if limits.past_bounds(kinds) else MalformedPayload)(_message(error))


def _message(error: ValidationError) -> str:
    problems = []
    for problem in error.errors(include_url=False):
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = str(problem["msg"]).removeprefix("Value error, ")
        problems.append(f"{_where(tuple(problem['loc']))}: {message}")
    return "; ".join(problems)


def repository_name(payload: Mapping[str, Any]) -> str:
    """The repository the body names, read before its signature is checked
    (the secret to check it with is the repository's)."""
    name = payload.get("repository")
    if not isinstance(name, str):
        raise MalformedPayload("repository: a string OWNER/NAME is required")
    try:
        return _repository(name)
    except ValueError as error:
        raise MalformedPayload(f"repository: {error}") from None


def parse_commit(payload: Mapping[str, Any]) -> CommitEvent:
    """The commit a generic event reports, or MalformedPayload saying every
    field that is wrong."""
    # The lists' bounds (the model's own) before any item is validated: a
    # body of a million files is refused without reading them.
    for field, maximum in (("changed_files", limits.COMMIT_FILES), ("parents", limits.PARENTS)):
        listed = payload.get(field)
        if isinstance(listed, list):
            limits.count(listed, field, maximum)
    try:
        body = _CommitIn.model_validate(payload)
    except ValidationError as error:
        raise _refusal(error) from None
    seen: set[str] = set()
    for number, change in enumerate(body.changed_files):
        if change.path in seen:
            raise MalformedPayload(f"changed_files[{number}]: {change.path!r} is listed twice")
        if (change.additions is None) != (change.deletions is None):
            raise MalformedPayload(
                f"changed_files[{number}]: give both additions and deletions, or neither"
            )
        seen.add(change.path)
    time = body.time
    if time is not None:
        time = time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)
    return CommitEvent(
        repository=body.repository,
        sha=body.commit,
        branch=body.branch,
        parents=tuple(body.parents),
        files=tuple(
            ChangedPath(
                path=change.path,
                status=change.status,
                old_path=change.old_path,
                additions=change.additions,
                deletions=change.deletions,
                hunks=None if change.hunks is None else tuple(h.hunk() for h in change.hunks),
            )
            for change in body.changed_files
        ),
        message=body.message,
        author=body.author,
        time=time,
        delivery_id=body.delivery_id.strip() if body.delivery_id else None,
    )


def delivery_id(*, header: str | None, commit: CommitEvent, body: bytes) -> str:
    """The id a resend of this event carries again: the X-Riskrank-Delivery
    header, else the body's `delivery_id`, else (the same body is the same
    event) a hash of the body."""
    declared = (header or "").strip() or commit.delivery_id
    if declared is None:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    where = DELIVERY_HEADER if (header or "").strip() else "delivery_id"
    return limits.text(declared, where, max_chars=MAX_DELIVERY_ID)


def body_json_schema(*, ref_template: str) -> dict[str, Any]:
    """The JSON schema of the body (for the OpenAPI document); nested
    models are in its `$defs`, referred to through `ref_template`."""
    return _CommitIn.model_json_schema(ref_template=ref_template)
