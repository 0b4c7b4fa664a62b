"""Plans CI can follow: the policy applied to a commit's stored scores.

`plan_for` never fails a CI run for a repository riskrank knows. An unknown
commit is created and scored on the spot; a known commit the worker has not
scored yet is waited for (up to `wait_seconds`) and then scored inline; any
error answers the whole collected suite, in the heuristic order when the
statistics can still be read, with status `fallback` and a message.

Serving a stored plan is a handful of queries: the commit with its newest
plan, the plan's items with their test names and statistics (one query, no
ORM objects), the change's paths, and, on the default branch, how many of its
builds came before. What the policy decided is written to the plan items only
when the applied policy differs from the one recorded on the plan, so the
shards of one build write it once."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from json.encoder import encode_basestring_ascii
from typing import Any, Generic, TypeVar

import numpy as np
import psycopg
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.models import (
    ChangedFile,
    Commit,
    ModelStatus,
    Plan,
    PlanStatus,
    Repository,
    RiskModel,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.planning import policy as policies
from scheduler.planning.policy import (
    Candidates,
    Context,
    Decision,
    Policy,
    PolicyError,
    Rule,
    Shard,
)
from scheduler.risk import heuristic
from scheduler.services import scoring
from scheduler.services.results import COMMIT_PATTERN
from scheduler.services.runs import ensure_commit

log = logging.getLogger(__name__)

# The heuristic's score of a test riskrank has never seen: what a collected
# test missing from the commit's scores gets as its probability.
NEW_TEST_PROBABILITY = heuristic.BASE + heuristic.WEIGHTS["is_new"]
# A known commit older than this has no scoring on its way: score it at once.
WAIT_WINDOW = timedelta(minutes=10)
POLL_SECONDS = 0.1
SERVED = (PlanStatus.READY, PlanStatus.HEURISTIC)

_K = TypeVar("_K")
_V = TypeVar("_V")


class PlanParameterError(ClientError):
    """A plan request whose parameters make no policy (400)."""

    status_code = 400


@dataclass(frozen=True)
class PlanRequest:
    """What the caller asked for; None leaves the repository's default."""

    mode: str | None = None
    budget: float | None = None
    by: str | None = None
    shard: str | None = None
    branch: str | None = None
    tests: Sequence[str] | None = None


@dataclass(frozen=True)
class PlanDefaults:
    """The service-wide defaults (from Settings)."""

    wait_seconds: float = 2.0
    exploration_rate: float = policies.DEFAULT_EXPLORATION_RATE
    recent_failures: int = policies.DEFAULT_RECENT_FAILURES
    full_run_every: int = policies.DEFAULT_FULL_RUN_EVERY


@dataclass(frozen=True)
class RepositoryRef:
    id: int
    default_branch: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)


# --- parameters -----------------------------------------------------------------


def check_sha(sha: str) -> str:
    """The commit id as given, or a 400 (the same rule as for results)."""
    sha = sha.strip()
    if not COMMIT_PATTERN.match(sha):
        raise PlanParameterError(f"{sha!r} is not a commit id")
    return sha


# Repository settings keys (repositories.settings JSON) and their types.
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "budget": (int, float),
    "by": (str,),
    "exploration_rate": (int, float),
    "recent_failures": (int,),
    "full_run_every": (int,),
    "must_run": (list,),
    "full_run_paths": (list,),
    "extra_full_run_paths": (list,),
    "overhead": (int, float),
}


def _repository_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The policy keys of a repository's settings that have a usable type;
    a bad one is logged and ignored (an admin's typo must not break CI)."""
    usable: dict[str, Any] = {}
    for key, kinds in SETTING_TYPES.items():
        if key not in settings or settings[key] is None:
            continue
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            log.warning(
                "ignoring repository setting %s=%r: not a %s", key, value, kinds[0].__name__
            )
            continue
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            log.warning("ignoring repository setting %s=%r: not a list of globs", key, value)
            continue
        usable[key] = value
    return usable


def policy_of(
    request: PlanRequest, repository: RepositoryRef, defaults: PlanDefaults
) -> tuple[Policy, Shard | None]:
    """The policy to apply: the request's parameters, else the repository's
    settings, else the service defaults. PlanParameterError (400) for
    parameters that make no policy."""
    stored = _repository_settings(repository.settings)
    paths = tuple(stored.get("full_run_paths", policies.DEFAULT_FULL_RUN_PATHS))
    paths += tuple(stored.get("extra_full_run_paths", ()))
    mode = request.mode if request.mode is not None else stored.get("mode", "order")
    budget = request.budget
    if budget is None and request.mode in (None, stored.get("mode")):
        budget = stored.get("budget")
    chosen = Policy(
        mode=mode,
        budget=float(budget) if budget is not None else None,
        by=request.by if request.by is not None else stored.get("by", "tests"),
        exploration_rate=float(stored.get("exploration_rate", defaults.exploration_rate)),
        recent_failures=int(stored.get("recent_failures", defaults.recent_failures)),
        must_run=tuple(stored.get("must_run", ())),
        full_run_paths=paths,
        full_run_every=int(stored.get("full_run_every", defaults.full_run_every)),
        overhead=float(stored["overhead"]) if "overhead" in stored else None,
    )
    try:
        checked = chosen.checked()
        shard = Shard.parse(request.shard) if request.shard else None
    except PolicyError as error:
        raise PlanParameterError(str(error)) from None
    return checked, shard


# --- finding the scores ---------------------------------------------------------


@dataclass(frozen=True)
class Found:
    commit_id: int
    commit_created_at: datetime
    branch: str | None
    plan_id: int | None
    status: PlanStatus | None
    model_version: int | None
    feature_names: list[str] | None
    policy: dict[str, Any] | None
    scored_at: datetime | None = None
    model_id: int | None = None  # the plan's (None: the heuristic's)
    active_model_id: int | None = None  # the repository's active model now

    @property
    def stale(self) -> bool:
        """Scored by another model than the active one (or by the
        heuristic while a model is active), and not yet followed by any CI
        run: no policy has been applied to it."""
        return (
            self.plan_id is not None
            and self.model_id != self.active_model_id
            and self.policy is None
        )


def find(
    session: Session, *, repository_id: int, sha: str, plan_id: int | None = None
) -> Found | None:
    """The commit and its newest served plan, or the plan `plan_id` (plan
    fields None when unscored)."""
    newest = (
        select(Plan.id)
        .where(Plan.commit_id == Commit.id, Plan.status.in_(SERVED))
        .order_by(Plan.id.desc())
        .limit(1)
        .correlate(Commit)
        .scalar_subquery()
    )
    active = (
        select(RiskModel.id)
        .where(
            RiskModel.repository_id == Commit.repository_id,
            RiskModel.status == ModelStatus.ACTIVE,
        )
        .order_by(RiskModel.version.desc())
        .limit(1)
        .correlate(Commit)
        .scalar_subquery()
    )
    row = session.execute(
        select(
            Commit.id,
            Commit.created_at,
            Commit.branch,
            Plan.id,
            Plan.status,
            RiskModel.version,
            Plan.feature_names,
            Plan.policy,
            Plan.scored_at,
            Plan.model_id,
            active,
        )
        .select_from(Commit)
        .outerjoin(Plan, Plan.id == (newest if plan_id is None else plan_id))
        .outerjoin(RiskModel, RiskModel.id == Plan.model_id)
        .where(Commit.repository_id == repository_id, Commit.sha == sha)
    ).first()
    if row is None:
        return None
    return Found(*row)


def _wait_for_scores(
    session: Session, *, repository_id: int, sha: str, seconds: float
) -> Found | None:
    """Poll for the worker's plan, each look in a transaction of its own (on
    SQLite an open transaction would hold the write lock the worker needs)."""
    deadline = time.monotonic() + seconds
    session.commit()
    while True:
        found = find(session, repository_id=repository_id, sha=sha)
        session.commit()  # never sleep inside a transaction
        if found is not None and found.plan_id is not None:
            return found
        if time.monotonic() >= deadline:
            return found
        time.sleep(POLL_SECONDS)


def scored(
    session: Session,
    *,
    repository: RepositoryRef,
    sha: str,
    branch: str | None,
    wait_seconds: float,
) -> Found:
    """The commit's newest plan, scoring it (after waiting for the worker,
    when one may be on its way) when there is none, and again when it is
    stale (see `rescored`)."""
    found = find(session, repository_id=repository.id, sha=sha)
    if found is not None and found.plan_id is not None:
        if found.stale:
            return rescored(session, found, repository_id=repository.id, sha=sha)
        return found
    if found is None:
        commit_id = ensure_commit(
            session,
            repository=session.get_one(Repository, repository.id),
            sha=sha,
            branch=branch,
        )
        log.info("plan for unknown commit %s: recorded and scored inline", sha)
    else:
        commit_id = found.commit_id
        if wait_seconds > 0 and utcnow() - found.commit_created_at < WAIT_WINDOW:
            waited = _wait_for_scores(
                session, repository_id=repository.id, sha=sha, seconds=wait_seconds
            )
            if waited is not None and waited.plan_id is not None:
                return waited
        log.info("plan for commit %s: not scored, scoring inline", sha)
    scoring.score_commit(session, commit_id)
    session.flush()
    result = find(session, repository_id=repository.id, sha=sha)
    if result is None or result.plan_id is None:
        raise RuntimeError(f"scoring commit {sha} stored no plan")
    return result


def rescored(session: Session, found: Found, *, repository_id: int, sha: str) -> Found:
    """The commit scored by the active model, when its stored plan came
    from an older model (or the heuristic) and no CI has followed it yet.
    A plan CI has followed is kept: the other shards and the retries of
    that build must get the same plan. If scoring fails, the stored plan."""
    try:
        with session.begin_nested():
            plan = scoring.score_commit(session, found.commit_id)
            session.flush()
    except Exception:
        log.exception("rescoring commit %s with the active model failed: serving its plan", sha)
        return found
    if plan is None:
        return found
    log.info("plan for commit %s: plan %s was stale, now plan %s", sha, found.plan_id, plan.id)
    result = find(session, repository_id=repository_id, sha=sha, plan_id=plan.id)
    return result if result is not None and result.plan_id is not None else found


# --- the items ------------------------------------------------------------------


class _Lru(Generic[_K, _V]):
    """A cache shared by the API's threads, bounded by the total weight of
    its values (tests, not entries: one plan may hold ten or ten thousand)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[_K, tuple[_V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: _K, value: _V, weight: int) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._entries[key] = (value, weight)
            self._weight += weight
            while self._weight > self.capacity and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._weight = 0


def _encoded_tail(reason: str) -> str:
    """A scored reason as it follows a rule's sentence ("...; failed 2 of"),
    JSON-escaped without its quotes."""
    return encode_basestring_ascii(f"{reason[0].lower()}{reason[1:]}")[1:-1]


@dataclass(frozen=True, eq=False)
class StoredItems:
    """What a scored plan's items hold that never changes once stored: the
    test, its probability, rank, scored reason and own-file flag, in rank
    order, with their JSON text. Kept per plan in the process (see
    `stored_items`): the shards and retries of a build ask for one plan many
    times, and reading, converting and encoding ten thousand rows was over
    half of an answer's time (benchmarks/plan_api.py)."""

    ids: list[int]  # the plan items' ids
    names: list[str]
    probability: np.ndarray
    rank: np.ndarray
    reasons: list[str | None]
    own_file_changed: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def _by_id(self) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array(self.ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return order, ids[order]

    def rows_of(self, item_ids: np.ndarray) -> np.ndarray:
        """The row (in rank order) of each of these item ids."""
        order, sorted_ids = self._by_id
        if not len(sorted_ids):
            return np.zeros(0, dtype=np.intp)
        return order[np.searchsorted(sorted_ids, item_ids)].astype(np.intp)

    @cached_property
    def position(self) -> dict[str, int]:
        return {name: row for row, name in enumerate(self.names)}

    @cached_property
    def texts(self) -> ItemTexts:
        return ItemTexts.of(self.names, self.probability, self.reasons)


@dataclass(frozen=True, eq=False)
class ItemTexts:
    """Each item's pieces of its JSON object that do not depend on the
    policy: `{"test":NAME,"rank":`, `,"probability":P,"selected":`, the
    scored reason as a JSON string and as the tail of a rule's sentence."""

    head: np.ndarray  # object arrays of str (None: no scored reason)
    probability: np.ndarray
    scored: np.ndarray
    tail: np.ndarray

    @classmethod
    def of(
        cls, names: Sequence[str], probability: np.ndarray, reasons: Sequence[str | None]
    ) -> ItemTexts:
        text = encode_basestring_ascii

        def objects(values: list[str | None]) -> np.ndarray:
            array = np.empty(len(values), dtype=object)
            array[:] = values
            return array

        return cls(
            head=objects([f'{{"test":{text(name)},"rank":' for name in names]),
            probability=objects(
                [f',"probability":{p!r},"selected":' for p in probability.tolist()]
            ),
            scored=objects([text(r) if r else None for r in reasons]),
            tail=objects([_encoded_tail(r) if r else None for r in reasons]),
        )


@dataclass(frozen=True, eq=False)
class Items:
    """A plan's items, in stored rank order, as plain columns."""

    ids: list[int]
    names: list[str]
    probability: np.ndarray
    rank: np.ndarray
    reasons: list[str | None]
    duration: np.ndarray
    builds_since_failure: np.ndarray
    recently_failed: np.ndarray  # in the last `recent_runs` runs
    recent_runs: int
    runs: np.ndarray
    own_file_changed: np.ndarray
    # The cached stored part these columns come from (None: made elsewhere).
    stored: StoredItems | None = None

    @cached_property
    def texts(self) -> ItemTexts:
        if self.stored is not None:
            return self.stored.texts
        return ItemTexts.of(self.names, self.probability, self.reasons)


def _nan(value: float | int | None) -> float:
    return math.nan if value is None else float(value)


# The own-file flag is compared as bytes: 1.0 as little-endian float32.
_STORED = (
    "SELECT i.id, t.name, i.probability, i.rank, i.reason, "
    "substr(i.features, {offset}, 4) = {one} "
    "FROM plan_items i JOIN known_tests t ON t.id = i.test_id WHERE i.plan_id = {plan}"
)
# recent holds only P, F and E: without its P's, a failure leaves something.
_STATS = (
    "SELECT i.id, s.duration_mean, s.builds_since_failure, s.runs, "
    "replace(substr(s.recent, 1, {runs}), 'P', '') <> '' "
    "FROM plan_items i LEFT JOIN test_stats s ON s.test_id = i.test_id WHERE i.plan_id = {plan}"
)
_BY_STYLE = {
    "pyformat": {
        "stored": _STORED.format(offset="%(offset)s", plan="%(plan)s", one="'\\x0000803f'::bytea"),
        "stats": _STATS.format(runs="%(runs)s", plan="%(plan)s"),
    },
    "named": {
        "stored": _STORED.format(offset=":offset", plan=":plan", one="X'0000803F'"),
        "stats": _STATS.format(runs=":runs", plan=":plan"),
    },
}
# On PostgreSQL the statistics come as one row of arrays in binary: a
# fifth of the client's time of ten thousand rows.
_STATS_ARRAYS = (
    "SELECT array_agg(i.id), array_agg(coalesce(s.duration_mean, 'NaN')), "
    "array_agg(coalesce(CAST(s.builds_since_failure AS DOUBLE PRECISION), 'NaN')), "
    "array_agg(coalesce(s.runs, 0)), "
    "array_agg(coalesce(replace(substr(s.recent, 1, %(runs)s), 'P', '') <> '', false)) "
    "FROM plan_items i LEFT JOIN test_stats s ON s.test_id = i.test_id WHERE i.plan_id = %(plan)s"
)


def _rows(session: Session, query: str, parameters: dict[str, Any]) -> list[Any]:
    """Rows through the driver's cursor: SQLAlchemy's result rows cost more
    than the query itself for ten thousand rows (benchmarks/plan_api.py)."""
    connection = session.connection()
    style = "named" if connection.dialect.paramstyle in ("named", "qmark") else "pyformat"
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_BY_STYLE[style][query], parameters)
        return list(cursor.fetchall())
    finally:
        cursor.close()


# Stored parts of plans, by (database, plan id, scored at): a plan's items
# never change once scored. Bounded by tests (about 300 bytes each).
_STORED_CACHE: _Lru[tuple[str, int, datetime | None], StoredItems] = _Lru(200_000)


def stored_items(session: Session, found: Found) -> StoredItems:
    """The plan's stored part, read once per process and plan."""
    assert found.plan_id is not None
    key = (_database_key(session), found.plan_id, found.scored_at)
    cached = _STORED_CACHE.get(key)
    if cached is not None:
        return cached
    names = list(found.feature_names or [])
    # Plans scored before the flag existed have none: 1-based offset 0 reads nothing.
    offset = 4 * names.index("own_file_changed") + 1 if "own_file_changed" in names else 0
    rows = _rows(session, "stored", {"plan": found.plan_id, "offset": offset})
    n = len(rows)
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in range(6)]
    rank = np.fromiter(columns[3], dtype=np.intp, count=n)
    order = np.argsort(rank, kind="stable").tolist()  # ranks are stored; no ORDER BY

    def ordered(values: Sequence[Any]) -> list[Any]:
        return [values[row] for row in order]

    stored = StoredItems(
        ids=ordered(columns[0]),
        names=ordered(columns[1]),
        probability=np.fromiter(columns[2], dtype=np.float64, count=n)[order],
        rank=rank[order],
        reasons=ordered(columns[4]),
        own_file_changed=np.fromiter(map(bool, columns[5]), dtype=bool, count=n)[order],
    )
    _STORED_CACHE.put(key, stored, max(n, 1))
    return stored


def _database_key(session: Session) -> str:
    return session.connection().engine.url.render_as_string(hide_password=True)


@dataclass(frozen=True, eq=False)
class LiveStats:
    """The statistics the policy reads, as of now (they change as outcomes
    arrive), in the stored items' rank order; `digest` tells two readings
    apart for the decision cache."""

    duration: np.ndarray
    builds_since_failure: np.ndarray
    runs: np.ndarray
    recently_failed: np.ndarray
    digest: bytes


def live_stats(session: Session, *, stored: StoredItems, plan_id: int, runs: int) -> LiveStats:
    """One query for every item's statistics (one row of arrays on PostgreSQL)."""
    n = len(stored)
    parameters = {"plan": plan_id, "runs": runs}
    driver = session.connection().connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        with driver.cursor(binary=True) as cursor:
            cursor.execute(_STATS_ARRAYS, parameters)
            row = cursor.fetchone()
        columns: list[Any] = list(row) if row is not None and row[0] is not None else [[]] * 5
        ids = np.array(columns[0], dtype=np.int64)
        duration = np.array(columns[1], dtype=np.float64)
        since = np.array(columns[2], dtype=np.float64)
        ran = np.array(columns[3], dtype=np.int64)
        failed = np.array(columns[4], dtype=bool)
    else:
        rows = _rows(session, "stats", parameters)
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in range(5)]
        count = len(rows)
        ids = np.fromiter(columns[0], dtype=np.int64, count=count)
        duration = np.fromiter(map(_nan, columns[1]), dtype=np.float64, count=count)
        since = np.fromiter(map(_nan, columns[2]), dtype=np.float64, count=count)
        ran = np.fromiter((r or 0 for r in columns[3]), dtype=np.int64, count=count)
        failed = np.fromiter(map(bool, columns[4]), dtype=bool, count=count)
    if len(ids) != n:
        raise RuntimeError(f"plan {plan_id} has {len(ids)} items, {n} when first read")
    rows_ = stored.rows_of(ids)

    def in_rank_order(values: np.ndarray) -> np.ndarray:
        result = np.empty_like(values)
        result[rows_] = values
        return result

    stats = LiveStats(
        duration=in_rank_order(duration),
        builds_since_failure=in_rank_order(since),
        runs=in_rank_order(ran),
        recently_failed=in_rank_order(failed),
        digest=b"",
    )
    digest = hashlib.blake2b(digest_size=16)
    for array in (stats.duration, stats.builds_since_failure, stats.runs, stats.recently_failed):
        digest.update(array.tobytes())
    return replace(stats, digest=digest.digest())


def items_of(stored: StoredItems, stats: LiveStats, recent_runs: int) -> Items:
    """A plan's stored part with its tests' statistics as of now."""
    return Items(
        ids=stored.ids,
        names=stored.names,
        probability=stored.probability,
        rank=stored.rank,
        reasons=stored.reasons,
        duration=stats.duration,
        builds_since_failure=stats.builds_since_failure,
        runs=stats.runs,
        own_file_changed=stored.own_file_changed,
        recently_failed=stats.recently_failed,
        recent_runs=recent_runs,
        stored=stored,
    )


def load_items(session: Session, *, found: Found, recent_runs: int) -> Items:
    """The plan's items: the stored part (cached), its statistics as of now."""
    assert found.plan_id is not None
    stored = stored_items(session, found)
    stats = live_stats(session, stored=stored, plan_id=found.plan_id, runs=recent_runs)
    return items_of(stored, stats, recent_runs)


@dataclass(frozen=True, eq=False)
class Covered:
    """The candidates of the request: each row's item (-1: not in the plan)."""

    candidates: Candidates
    item: np.ndarray
    reasons: list[str | None]
    durations: list[float | None]


def cover(items: Items, tests: Sequence[str] | None) -> Covered:
    """The plan's tests, or exactly the collected ones: those the plan lacks
    are new (riskrank has never seen them, or learned of them after scoring)."""
    if tests is None:
        row = np.arange(len(items.names), dtype=np.intp)
        names: Sequence[str] = items.names
    else:
        position = (
            items.stored.position
            if items.stored is not None
            else {name: index for index, name in enumerate(items.names)}
        )
        unique = list(dict.fromkeys(tests))
        row = np.fromiter((position.get(name, -1) for name in unique), dtype=np.intp)
        names = unique
    known = row >= 0
    take = np.where(known, row, 0)

    def pick(values: np.ndarray, missing: float) -> np.ndarray:
        if not len(values):
            return np.full(len(row), missing)
        return np.where(known, values[take], missing)

    duration = pick(items.duration, math.nan)
    is_new = ~known | (pick(items.runs.astype(np.float64), 0.0) == 0)
    candidates = Candidates(
        names=names,
        probability=pick(items.probability, NEW_TEST_PROBABILITY),
        duration=duration,
        builds_since_failure=pick(items.builds_since_failure, math.nan),
        recent=(),  # recently_failed stands for it
        is_new=is_new,
        own_file_changed=known & (pick(items.own_file_changed.astype(np.float64), 0.0) == 1.0),
        draw=np.where(known, pick(items.rank.astype(np.float64), 1.0) - 1, 0).astype(np.intp),
        recently_failed=known & (pick(items.recently_failed.astype(np.float64), 0.0) == 1.0),
        recent_runs=items.recent_runs,
    )
    reasons = [items.reasons[r] if r >= 0 else "not in this commit's scores" for r in row.tolist()]
    durations = [None if math.isnan(d) else d for d in duration.tolist()]
    return Covered(candidates, row, reasons, durations)


def default_branch_build(
    session: Session, *, repository_id: int, commit_id: int, branch: str
) -> int:
    """This commit's build number on the default branch: 1 + the earlier
    commits of the branch that CI built (a run reported, or a plan asked)."""
    built = or_(
        select(SuiteRun.id).where(SuiteRun.commit_id == Commit.id).exists(),
        select(Plan.id).where(Plan.commit_id == Commit.id).exists(),
    )
    earlier = session.scalar(
        select(func.count(Commit.id)).where(
            Commit.repository_id == repository_id,
            Commit.branch == branch,
            Commit.id < commit_id,
            built,
        )
    )
    return int(earlier or 0) + 1


def context_of(
    session: Session, found: Found, repository: RepositoryRef, branch: str | None
) -> Context:
    paths = list(
        session.scalars(select(ChangedFile.path).where(ChangedFile.commit_id == found.commit_id))
    )
    on = found.branch or branch
    build: int | None = None
    if on is not None and on == repository.default_branch:
        recorded = (found.policy or {}).get("default_branch_build")
        if isinstance(recorded, int):
            build = recorded  # a commit's number never changes: counted once
        else:
            build = default_branch_build(
                session, repository_id=repository.id, commit_id=found.commit_id, branch=on
            )
    return Context(changed_paths=paths, default_branch_build=build, seed=found.plan_id or 0)


# --- recording the decision -----------------------------------------------------


def applied_policy(policy: Policy, tests: Sequence[str] | None) -> dict[str, Any]:
    record = policy.as_json()
    if tests is not None:
        digest = hashlib.sha256("\n".join(sorted(set(tests))).encode()).hexdigest()
        record["tests"] = digest
    else:
        record["tests"] = None
    return record


@dataclass(frozen=True, eq=False)
class DecisionRecord:
    """What the policy decided for each item of a plan (None for the items
    the runner did not collect), and the applied policy, to be written."""

    plan_id: int
    item_ids: list[int]
    selected: list[bool | None]
    propensity: list[float | None]
    rules: list[str | None]
    applied: dict[str, Any]

    def write(self, session: Session) -> None:
        """Write selected/propensity/rule on the plan's items and the applied
        policy on the plan. The plan's row is locked first: two writes for
        one plan (shards asking at once, a new policy right after another)
        would otherwise lock its items in different orders and deadlock."""
        session.execute(select(Plan.id).where(Plan.id == self.plan_id).with_for_update())
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text(
                    "UPDATE plan_items AS i SET selected = v.selected, "
                    "propensity = v.propensity, rule = v.rule FROM unnest("
                    "CAST(:ids AS BIGINT[]), CAST(:selected AS BOOLEAN[]), "
                    "CAST(:propensity AS DOUBLE PRECISION[]), CAST(:rules AS VARCHAR[])) "
                    "AS v(id, selected, propensity, rule) WHERE i.id = v.id"
                ),
                {
                    "ids": self.item_ids,
                    "selected": self.selected,
                    "propensity": self.propensity,
                    "rules": self.rules,
                },
            )
        elif self.item_ids:
            session.execute(
                text(
                    "UPDATE plan_items SET selected = :selected, propensity = :propensity, "
                    "rule = :rule WHERE id = :id"
                ),
                [
                    {"id": i, "selected": s, "propensity": p, "rule": r}
                    for i, s, p, r in zip(
                        self.item_ids, self.selected, self.propensity, self.rules, strict=True
                    )
                ],
            )
        session.execute(update(Plan).where(Plan.id == self.plan_id).values(policy=self.applied))


@dataclass(frozen=True, eq=False)
class PendingDecision:
    """A decision not yet recorded on its plan: what the policy decided for
    the covered tests, turned into per-item values only when written (on
    the API's background task, off the answer's path)."""

    plan_id: int
    items: Items
    covered: Covered
    decision: Decision
    applied: dict[str, Any]

    def record(self) -> DecisionRecord:
        n = len(self.items.ids)
        selected: list[bool | None] = [None] * n
        propensity: list[float | None] = [None] * n
        rules: list[str | None] = [None] * n
        chosen = self.decision.selected.tolist()
        logged = self.decision.propensity.tolist()
        for candidate, item in enumerate(self.covered.item.tolist()):
            if item >= 0:
                selected[item] = chosen[candidate]
                propensity[item] = logged[candidate]
                rules[item] = self.decision.rules[candidate].value
        return DecisionRecord(
            self.plan_id, list(self.items.ids), selected, propensity, rules, self.applied
        )


def write_decision(database: Database, pending: PendingDecision) -> None:
    """Write a decision after the answer went out (the API's background
    task). Never raises: the plan was served; a lost record only leaves the
    plan's evaluation without its selection, and the next request for the
    same policy writes it again."""
    try:
        record = pending.record()
        with database.session() as session:
            record.write(session)
    except Exception:
        log.exception("could not record the decision of plan %s", pending.plan_id)


# --- the answer -----------------------------------------------------------------


def _head(
    *,
    plan_id: int | None,
    sha: str,
    status: str,
    model_version: int | None,
    policy: Policy,
    shard: Shard | None,
) -> dict[str, Any]:
    return {
        "plan_id": plan_id,
        "commit": sha,
        "status": status,
        "model_version": model_version,
        "mode": policy.mode,
        "budget": policy.budget,
        "by": policy.by,
        "shard": str(shard) if shard is not None else None,
        "exploration_rate": policy.exploration_rate,
    }


@dataclass(frozen=True, eq=False)
class PlannedTests:
    """The `tests` of a fallback answer as columns, in the order listed."""

    names: list[str]
    ranks: list[int]
    probability: list[float | None]
    selected: list[bool]
    reasons: list[str]
    durations: list[float | None]
    rules: list[str]

    def json(self) -> str:
        text = encode_basestring_ascii
        number = _json_number
        return ",".join(
            [
                f'{{"test":{text(name)},"rank":{rank},"probability":{number(probability)},'
                f'"selected":{"true" if selected else "false"},"reason":{text(reason)},'
                f'"duration":{number(duration)},"rule":"{rule}"}}'
                for name, rank, probability, selected, reason, duration, rule in zip(
                    self.names,
                    self.ranks,
                    self.probability,
                    self.selected,
                    self.reasons,
                    self.durations,
                    self.rules,
                    strict=True,
                )
            ]
        )


def _json_number(value: float | None) -> str:
    # Probabilities and durations are finite (NaN never reaches a column).
    return "null" if value is None else repr(value)


@dataclass(frozen=True, eq=False)
class Answer:
    """A plan as the API answers it (the contract is in the README): the
    head's fields and the `tests` list as JSON text (its items joined by
    commas), which is how it is made and sent."""

    head: dict[str, Any]
    tests_json: str
    # A decision still to be recorded on the plan (see plan_answer's `defer`).
    pending: PendingDecision | None = None

    def to_dict(self) -> dict[str, Any]:
        tests: list[dict[str, Any]] = json.loads(f"[{self.tests_json}]")
        return self.head | {"tests": tests}

    def to_json(self) -> bytes:
        head = json.dumps(self.head, separators=(",", ":"), allow_nan=False)
        return f'{head[:-1]},"tests":[{self.tests_json}]}}'.encode()


_NOT_SCORED = "not in this commit's scores"
_RULE_INDEX = {rule: index for index, rule in enumerate(policies.Rule)}
_RULES = list(policies.Rule)
_RULE_VALUES = np.array([rule.value for rule in _RULES], dtype=object)


def test_texts(items: Items, covered: Covered, decision: Decision) -> list[str]:
    """Each candidate's JSON object in the answer's `tests`, as text. The
    stored pieces are joined column by column (numpy object arrays), so
    only the last join is a Python step per test."""
    texts = items.texts
    n = len(covered.candidates)
    item = covered.item
    known = item >= 0
    take = np.where(known, item, 0)

    def pick(stored: np.ndarray, unknown: Callable[[int], str | None]) -> np.ndarray:
        picked = stored[take] if len(stored) else np.empty(n, dtype=object)
        for index in np.flatnonzero(~known).tolist():
            picked[index] = unknown(index)
        return picked

    names = covered.candidates.names
    head = pick(texts.head, lambda i: f'{{"test":{encode_basestring_ascii(names[i])},"rank":')
    new = f',"probability":{NEW_TEST_PROBABILITY!r},"selected":'
    probability = pick(texts.probability, lambda _: new)
    scored = pick(texts.scored, lambda _: encode_basestring_ascii(_NOT_SCORED))
    tail = pick(texts.tail, lambda _: _encoded_tail(_NOT_SCORED))
    has = scored.astype(bool)

    codes = np.fromiter(map(_RULE_INDEX.__getitem__, decision.rules), dtype=np.intp, count=n)
    reason = np.empty(n, dtype=object)
    for code in np.unique(codes).tolist():
        rule = _RULES[code]
        of_rule = codes == code
        if rule is Rule.MUST_RUN:  # the sentence names the matching glob
            for index in np.flatnonzero(of_rule).tolist():
                reason[index] = encode_basestring_ascii(
                    policies.reason(decision, index, covered.reasons[index])
                )
            continue
        sentence = policies.rule_sentence(decision, int(np.argmax(of_rule)))
        reason[of_rule & ~has] = encode_basestring_ascii(sentence)
        with_scored = of_rule & has
        if rule is Rule.MODEL:
            reason[with_scored] = scored[with_scored]
        elif with_scored.any():
            prefix = f'"{encode_basestring_ascii(sentence)[1:-1]}; '
            reason[with_scored] = prefix + tail[with_scored] + '"'
    durations = [_json_number(d) for d in covered.durations]
    rules = _RULE_VALUES[codes].tolist()
    return [
        f'{h}{rank}{p}{"true" if chosen else "false"},"reason":{r},"duration":{d},"rule":"{u}"}}'
        for h, rank, p, chosen, r, d, u in zip(
            head.tolist(),
            decision.ranks.tolist(),
            probability.tolist(),
            decision.selected.tolist(),
            reason.tolist(),
            durations,
            rules,
            strict=True,
        )
    ]


@dataclass(eq=False)
class Planned:
    """The policy applied to a plan's items: what serving it again with the
    same parameters, statistics and change reuses (see `_PLANNED`)."""

    items: Items
    covered: Covered
    decision: Decision
    applied: dict[str, Any]
    _texts: np.ndarray | None = None
    _shards: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def texts(self) -> np.ndarray:
        """Each candidate's JSON object as text (an object array)."""
        if self._texts is None:
            texts = test_texts(self.items, self.covered, self.decision)
            array = np.empty(len(texts), dtype=object)
            array[:] = texts
            self._texts = array
        return self._texts

    def shard(self, shard: Shard) -> np.ndarray:
        split = self._shards.get(shard.count)
        if split is None:
            decision = self.decision
            split = policies.shards(decision.run_order(), decision.expected_duration, shard.count)
            self._shards[shard.count] = split
        return split[shard.index - 1]


def answer(*, found: Found, sha: str, planned: Planned, shard: Shard | None) -> Answer:
    """The plan as the API returns it (see the contract in the README)."""
    candidates = planned.covered.candidates
    decision = planned.decision
    if shard is not None:
        listed = in_shard = planned.shard(shard)
    else:
        in_shard = decision.run_order()
        listed = np.concatenate([in_shard, decision.dropped_order()])
    texts = planned.texts()
    status = found.status.value if found.status is not None else PlanStatus.FALLBACK.value
    head = _head(
        plan_id=found.plan_id,
        sha=sha,
        status=status,
        model_version=found.model_version if found.status is PlanStatus.READY else None,
        policy=decision.policy,
        shard=shard,
    ) | {
        "full_run": decision.full_run,
        "full_run_reason": decision.full_run_reason,
        "total": len(candidates),
        "selected": len(in_shard),
        "duration_selected": round(float(decision.expected_duration[in_shard].sum()), 3),
        "duration_dropped": round(decision.duration_dropped(), 3),
        "expected_failures_dropped": round(
            decision.expected_failures_dropped(candidates.probability), 6
        ),
        "message": None,
    }
    return Answer(head, ",".join(texts[listed].tolist()))


# Decisions by (stored plan, statistics, policy, change, collected tests):
# the shards and retries of a build ask the same question. Bounded by tests
# (a decision keeps its answer's text, about 230 bytes a test).
_PLANNED: _Lru[tuple[Any, ...], Planned] = _Lru(100_000)


def plan(
    session: Session,
    *,
    found: Found,
    repository: RepositoryRef,
    request: PlanRequest,
    policy: Policy,
) -> Planned:
    """The policy applied to the plan's items, or the same decision made
    before for the same plan, statistics, policy, change and tests."""
    assert found.plan_id is not None
    stored = stored_items(session, found)
    stats = live_stats(session, stored=stored, plan_id=found.plan_id, runs=policy.recent_failures)
    context = context_of(session, found, repository, request.branch)
    tests = tuple(request.tests) if request.tests is not None else None
    key = (
        _database_key(session),
        found.plan_id,
        found.scored_at,
        stats.digest,
        policy,
        tuple(context.changed_paths),
        context.default_branch_build,
        context.seed,
        tests,
    )
    planned = _PLANNED.get(key)
    if planned is not None:
        return planned
    items = items_of(stored, stats, policy.recent_failures)
    covered = cover(items, request.tests)
    decision = policies.decide(covered.candidates, policy, context)
    applied = applied_policy(decision.policy, request.tests) | {
        "default_branch_build": context.default_branch_build
    }
    planned = Planned(items, covered, decision, applied)
    _PLANNED.put(key, planned, max(len(covered.candidates), 1))
    return planned


def serve(
    session: Session,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    policy: Policy,
    shard: Shard | None,
    wait_seconds: float,
    defer: bool = False,
) -> Answer:
    """The plan of a commit under `policy`, scoring it first if need be.
    A policy new to the plan is recorded on its items, now or, with `defer`,
    by whoever writes the answer's `pending` record."""
    found = scored(
        session, repository=repository, sha=sha, branch=request.branch, wait_seconds=wait_seconds
    )
    assert found.plan_id is not None
    planned = plan(session, found=found, repository=repository, request=request, policy=policy)
    pending = None
    if found.policy != planned.applied:
        pending = PendingDecision(
            plan_id=found.plan_id,
            items=planned.items,
            covered=planned.covered,
            decision=planned.decision,
            applied=planned.applied,
        )
        if not defer:
            pending.record().write(session)
            pending = None
    served = answer(found=found, sha=sha, planned=planned, shard=shard)
    return replace(served, pending=pending) if pending is not None else served


# --- failing open ---------------------------------------------------------------


_ALL_STATS = text(
    "SELECT t.name, s.recent, s.failures, s.runs, s.duration_mean FROM known_tests t "
    "LEFT JOIN test_stats s ON s.test_id = t.id WHERE t.repository_id = :repository "
    "ORDER BY t.id"
)
_ACTIVE_STATS = text(
    "SELECT t.name, s.recent, s.failures, s.runs, s.duration_mean FROM known_tests t "
    "LEFT JOIN test_stats s ON s.test_id = t.id WHERE t.repository_id = :repository "
    "AND t.is_active ORDER BY t.id"
)


def fallback_order(
    session: Session, *, repository_id: int, tests: Sequence[str] | None
) -> tuple[list[str], list[float | None]]:
    """The collected tests (or the repository's active ones) in the
    heuristic order: failed in the last run first, then by failure rate;
    ties in the order given. With their mean durations."""
    query = _ALL_STATS if tests is not None else _ACTIVE_STATS
    stats = {
        name: (recent, failures, runs, duration)
        for name, recent, failures, runs, duration in session.execute(
            query, {"repository": repository_id}
        )
    }
    names = list(dict.fromkeys(tests)) if tests is not None else list(stats)

    def key(item: tuple[int, str]) -> tuple[float, float, int]:
        position, name = item
        recent, failures, runs, _ = stats.get(name, ("", 0, 0, None))
        last = 1.0 if recent and recent[0] in "FE" else 0.0
        rate = (failures or 0) / runs if runs else 0.0
        return (-last, -rate, position)

    ordered = [name for _, name in sorted(enumerate(names), key=key)]
    return ordered, [stats.get(name, (None, None, None, None))[3] for name in ordered]


def fallback(
    database: Database,
    *,
    repository_id: int,
    sha: str,
    request: PlanRequest,
    policy: Policy,
    shard: Shard | None,
    message: str,
) -> Answer:
    """Everything runs: the collected suite in the heuristic order if the
    statistics can be read, else as given (split into shards all the same)."""
    tests = list(dict.fromkeys(request.tests)) if request.tests is not None else []
    durations: list[float | None] = [None] * len(tests)
    try:
        with database.session() as session:
            tests, durations = fallback_order(
                session, repository_id=repository_id, tests=request.tests
            )
    except Exception:
        log.exception("fallback plan for %s: statistics unreadable, keeping the given order", sha)
    expected = policies.expected_durations(
        np.array([math.nan if d is None else d for d in durations], dtype=np.float64)
    )
    listed = np.arange(len(tests), dtype=np.intp)
    if shard is not None:
        listed = policies.shards(listed, expected, shard.count)[shard.index - 1]
    reason = f"Fallback: everything runs ({message})"
    order = listed.tolist()
    head = _head(
        plan_id=None,
        sha=sha,
        status=PlanStatus.FALLBACK.value,
        model_version=None,
        policy=policy,
        shard=shard,
    ) | {
        "full_run": True,
        "full_run_reason": "riskrank could not plan this commit",
        "total": len(tests),
        "selected": len(listed),
        "duration_selected": round(float(expected[listed].sum()), 3),
        "duration_dropped": 0.0,
        "expected_failures_dropped": 0.0,
        "message": message,
    }
    return Answer(
        head,
        PlannedTests(
            names=[tests[i] for i in order],
            ranks=[i + 1 for i in order],
            probability=[None] * len(order),
            selected=[True] * len(order),
            reasons=[reason] * len(order),
            durations=[durations[i] for i in order],
            rules=[policies.Rule.FULL_RUN.value] * len(order),
        ).json(),
    )


def plan_for(
    database: Database,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    defaults: PlanDefaults,
) -> dict[str, Any]:
    """`plan_answer` as a dict (for the CLI and tests)."""
    return plan_answer(
        database, repository=repository, sha=sha, request=request, defaults=defaults
    ).to_dict()


def plan_answer(
    database: Database,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    defaults: PlanDefaults,
    defer: bool = False,
) -> Answer:
    """The plan for a commit, as the API answers it. Raises only
    PlanParameterError (400) for bad parameters: every other failure answers
    a `fallback` plan that runs everything. With `defer`, a decision to
    record on the plan comes back as the answer's `pending` record, for the
    caller to write once the answer is out (`write_decision`): writing it
    on 10,000 items costs more than the answer itself."""
    policy, shard = policy_of(request, repository, defaults)
    try:
        with database.session() as session:
            return serve(
                session,
                repository=repository,
                sha=sha,
                request=request,
                policy=policy,
                shard=shard,
                wait_seconds=defaults.wait_seconds,
                defer=defer,
            )
    except Exception as error:
        log.exception("plan for %s of repository %s failed: falling back", sha, repository.id)
        return fallback(
            database,
            repository_id=repository.id,
            sha=sha,
            request=request,
            policy=policy,
            shard=shard,
            message=f"scoring failed: {type(error).__name__}: {error}"[:500],
        )
