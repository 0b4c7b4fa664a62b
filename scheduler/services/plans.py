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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.models import (
    ChangedFile,
    Commit,
    Plan,
    PlanStatus,
    Repository,
    RiskModel,
    SuiteRun,
)
from scheduler.models.base import utcnow
from scheduler.planning import policy as policies
from scheduler.planning.policy import Candidates, Context, Decision, Policy, PolicyError, Shard
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


def find(session: Session, *, repository_id: int, sha: str) -> Found | None:
    """The commit and its newest served plan (plan fields None when unscored)."""
    newest = (
        select(Plan.id)
        .where(Plan.commit_id == Commit.id, Plan.status.in_(SERVED))
        .order_by(Plan.id.desc())
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
        )
        .select_from(Commit)
        .outerjoin(Plan, Plan.id == newest)
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
    when one may be on its way) when there is none."""
    found = find(session, repository_id=repository.id, sha=sha)
    if found is not None and found.plan_id is not None:
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


# --- the items ------------------------------------------------------------------


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


def _nan(value: float | int | None) -> float:
    return math.nan if value is None else float(value)


# recent holds only P, F and E: without its P's, a failure leaves something.
# The own-file flag is compared as bytes: 1.0 as little-endian float32.
_ITEMS = (
    "SELECT i.id, t.name, i.probability, i.rank, i.reason, s.duration_mean, "
    "s.builds_since_failure, s.runs, substr(i.features, {offset}, 4) = {one}, "
    "replace(substr(s.recent, 1, {runs}), 'P', '') <> '' "
    "FROM plan_items i JOIN known_tests t ON t.id = i.test_id "
    "LEFT JOIN test_stats s ON s.test_id = i.test_id "
    "WHERE i.plan_id = {plan} ORDER BY i.rank"
)
_ITEMS_BY_STYLE = {
    "pyformat": _ITEMS.format(
        offset="%(offset)s", runs="%(runs)s", plan="%(plan)s", one="'\\x0000803f'::bytea"
    ),
    "named": _ITEMS.format(offset=":offset", runs=":runs", plan=":plan", one="X'0000803F'"),
}


def load_items(
    session: Session, *, plan_id: int, feature_names: Sequence[str], recent_runs: int
) -> Items:
    """One query: every item of the plan with its test's name and statistics.
    Of the stored feature vector only the own-file-changed flag is read
    (4 bytes of each, cut by the database), and whether the test failed in
    its last runs is worked out there too.

    It goes through the driver's cursor: SQLAlchemy's result rows cost more
    than the query itself for ten thousand rows (benchmarks/plan_api.py)."""
    names = list(feature_names)
    # Plans scored before the flag existed have none: 1-based offset 0 reads nothing.
    offset = 4 * names.index("own_file_changed") + 1 if "own_file_changed" in names else 0
    connection = session.connection()
    style = connection.dialect.paramstyle
    cursor = connection.connection.cursor()
    try:
        cursor.execute(
            _ITEMS_BY_STYLE["named" if style in ("named", "qmark") else "pyformat"],
            {"plan": plan_id, "offset": offset, "runs": recent_runs},
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    n = len(rows)
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in range(10)]
    return Items(
        ids=list(columns[0]),
        names=list(columns[1]),
        probability=np.fromiter(columns[2], dtype=np.float64, count=n),
        rank=np.fromiter(columns[3], dtype=np.intp, count=n),
        reasons=list(columns[4]),
        duration=np.fromiter(map(_nan, columns[5]), dtype=np.float64, count=n),
        builds_since_failure=np.fromiter(map(_nan, columns[6]), dtype=np.float64, count=n),
        runs=np.fromiter((r or 0 for r in columns[7]), dtype=np.int64, count=n),
        own_file_changed=np.fromiter((bool(f) for f in columns[8]), dtype=bool, count=n),
        recently_failed=np.fromiter((bool(f) for f in columns[9]), dtype=bool, count=n),
        recent_runs=recent_runs,
    )


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
        position = {name: index for index, name in enumerate(items.names)}
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


def record_decision(
    session: Session,
    *,
    plan_id: int,
    items: Items,
    covered: Covered,
    decision: Decision,
    applied: dict[str, Any],
) -> None:
    """Write selected/propensity/rule on every item of the plan (NULL for
    the items the runner did not collect) and the applied policy on the plan."""
    n = len(items.ids)
    selected: list[bool | None] = [None] * n
    propensity: list[float | None] = [None] * n
    rules: list[str | None] = [None] * n
    chosen = decision.selected.tolist()
    logged = decision.propensity.tolist()
    for candidate, item in enumerate(covered.item.tolist()):
        if item >= 0:
            selected[item] = chosen[candidate]
            propensity[item] = logged[candidate]
            rules[item] = decision.rules[candidate].value
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "UPDATE plan_items AS i SET selected = v.selected, propensity = v.propensity, "
                "rule = v.rule FROM unnest(CAST(:ids AS BIGINT[]), CAST(:selected AS BOOLEAN[]), "
                "CAST(:propensity AS DOUBLE PRECISION[]), CAST(:rules AS VARCHAR[])) "
                "AS v(id, selected, propensity, rule) WHERE i.id = v.id"
            ),
            {"ids": items.ids, "selected": selected, "propensity": propensity, "rules": rules},
        )
    elif n:
        session.execute(
            text(
                "UPDATE plan_items SET selected = :selected, propensity = :propensity, "
                "rule = :rule WHERE id = :id"
            ),
            [
                {"id": i, "selected": s, "propensity": p, "rule": r}
                for i, s, p, r in zip(items.ids, selected, propensity, rules, strict=True)
            ],
        )
    session.execute(update(Plan).where(Plan.id == plan_id).values(policy=applied))


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
    """The `tests` of an answer as columns, in the order listed: turned into
    JSON text directly (a dict per test, then json.dumps, costs twice as much
    for ten thousand tests)."""

    names: list[str]
    ranks: list[int]
    probability: list[float | None]
    selected: list[bool]
    reasons: list[str]
    durations: list[float | None]
    rules: list[str]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "test": name,
                "rank": rank,
                "probability": probability,
                "selected": selected,
                "reason": reason,
                "duration": duration,
                "rule": rule,
            }
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
    """A plan as the API answers it (the contract is in the README)."""

    head: dict[str, Any]
    tests: PlannedTests

    def to_dict(self) -> dict[str, Any]:
        return self.head | {"tests": self.tests.rows()}

    def to_json(self) -> bytes:
        head = json.dumps(self.head, separators=(",", ":"), allow_nan=False)
        return f'{head[:-1]},"tests":[{self.tests.json()}]}}'.encode()


def answer(
    *,
    found: Found,
    sha: str,
    covered: Covered,
    decision: Decision,
    shard: Shard | None,
) -> Answer:
    """The plan as the API returns it (see the contract in the README)."""
    candidates = covered.candidates
    run = decision.run_order()
    if shard is not None:
        listed = policies.shards(run, decision.expected_duration, shard.count)[shard.index - 1]
        in_shard = listed
    else:
        listed = np.concatenate([run, decision.dropped_order()])
        in_shard = run
    order = listed.tolist()
    names = candidates.names
    probability = candidates.probability[listed].tolist()
    durations = covered.durations
    rules = decision.rules
    tests = PlannedTests(
        names=[names[i] for i in order],
        ranks=decision.ranks[listed].tolist(),
        probability=probability,
        selected=decision.selected[listed].tolist(),
        reasons=policies.reasons(decision, order, covered.reasons),
        durations=[durations[i] for i in order],
        rules=[rules[i].value for i in order],
    )
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
    return Answer(head, tests)


def serve(
    session: Session,
    *,
    repository: RepositoryRef,
    sha: str,
    request: PlanRequest,
    policy: Policy,
    shard: Shard | None,
    wait_seconds: float,
) -> Answer:
    """The plan of a commit under `policy`, scoring it first if need be."""
    found = scored(
        session, repository=repository, sha=sha, branch=request.branch, wait_seconds=wait_seconds
    )
    assert found.plan_id is not None
    items = load_items(
        session,
        plan_id=found.plan_id,
        feature_names=found.feature_names or [],
        recent_runs=policy.recent_failures,
    )
    covered = cover(items, request.tests)
    context = context_of(session, found, repository, request.branch)
    decision = policies.decide(covered.candidates, policy, context)
    applied = applied_policy(decision.policy, request.tests) | {
        "default_branch_build": context.default_branch_build
    }
    if found.policy != applied:
        record_decision(
            session,
            plan_id=found.plan_id,
            items=items,
            covered=covered,
            decision=decision,
            applied=applied,
        )
    return answer(found=found, sha=sha, covered=covered, decision=decision, shard=shard)


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
        ),
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
) -> Answer:
    """The plan for a commit, as the API answers it. Raises only
    PlanParameterError (400) for bad parameters: every other failure answers
    a `fallback` plan that runs everything."""
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
