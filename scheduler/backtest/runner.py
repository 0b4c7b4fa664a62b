"""The backtest engine: a CI history replayed build by build, in time order,
through the code that serves production, into a throwaway database.

For each build after the warm-up:

1. every `retrain_every` builds, `train_repository` trains on what the
   database holds, and the registry decides whether the candidate replaces
   the active model (or the heuristic), as the beat task would;
2. the build's commit (with its changed files, which a push gives before CI
   runs) is scored from the statistics as they stand, before the build's
   own outcomes, by `scoring.score_tests` itself, at the build's time;
3. the policy is applied to exactly the build's tests, as the plan API does
   for the tests a runner collected (`plans.cover`, then `policy.decide`):
   the riskrank order and the selection;
4. the baselines order the same tests from the same point-in-time
   statistics;
5. the build's outcomes are ingested with `import_history`. With
   `closed_loop`, only those of the tests the plan selected (the exploration
   sample and the periodic full runs included): what riskrank would see in
   production once CI follows its plans;
6. every `recalibration.REFRESH_EVERY` builds, the serving scorer's map
   from score to probability is fit again on the newest builds' tests that
   ran (every test, in the open loop), as plan evaluation refreshes it.

The warm-up builds are ingested as they are (the history before riskrank was
adopted) and not evaluated.

What differs from production, and why: scoring skips the explanations
(TreeSHAP on the 200 riskiest tests costs up to 0.1 s a build and changes no
order) and stores no plan (a backtest reads its decisions from memory);
builds without a time get one a day after the build before, as
`replay.builds_from_reports` gives them, so that test ages and the figures
do not depend on when the backtest runs. Everything is seeded: the same
history and parameters give the same figures."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from scheduler import migrate
from scheduler.db import Database, shown_url
from scheduler.evaluation import metrics
from scheduler.ingest.history import HistoryReport, jobs_apart
from scheduler.models import Outcome, Provider, Repository, RiskModel
from scheduler.planning import monitor
from scheduler.planning import policy as policies
from scheduler.planning.policy import Context, Decision, Policy
from scheduler.planning.records import Payload
from scheduler.risk import calibration, replay
from scheduler.risk.columns import HistoryColumns
from scheduler.risk.features import FeatureMatrix
from scheduler.risk.model import ModelError
from scheduler.risk.serving import LoadedModel, load_model
from scheduler.services import history as history_import
from scheduler.services import plans, recalibration, repos, runs, scoring, training
from scheduler.services.plans.items import Stats

Flags: TypeAlias = npt.NDArray[np.bool_]
Floats: TypeAlias = npt.NDArray[np.float64]
Order: TypeAlias = npt.NDArray[np.intp]

RISKRANK = "riskrank"
# The model's (or heuristic's) probabilities alone, without the policy's
# per-second priority: tells the ranking apart from the policy's ordering.
RISKRANK_BY_PROBABILITY = "riskrank by probability"
ORIGINAL = "original order"
RANDOM = "random"
RECENTLY_FAILED = "recently failed first"
NEW_THEN_RECENT = "new first, then recently failed"
TRANSITIONS = "transitions"
FAILURE_RATE = "failure rate"
FAILURE_RATE_PER_SECOND = "failure rate per second"
SHORTEST = "shortest first"
OPTIMAL = "optimal"
BASELINES = (
    ORIGINAL,
    RANDOM,
    NEW_THEN_RECENT,
    RECENTLY_FAILED,
    FAILURE_RATE,
    FAILURE_RATE_PER_SECOND,
    TRANSITIONS,
    SHORTEST,
)
# The orderings a user could write in one line, which riskrank must beat: the
# baselines without the random order (a floor, not a rule anyone would adopt).
SIMPLE_ORDERINGS = tuple(name for name in BASELINES if name != RANDOM)
# Random orders are drawn with these many seeds; figures are their mean.
RANDOM_SEEDS = 5
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# Never failed, in a "builds since the last failure" column.
NEVER = 1e9
# Warm-up builds ingested per call (and per step of the progress bar).
WARMUP_CHUNK = 100


# Which builds after the warm-up are scored: the protocol makes every design
# choice on the first half of a history and reports the second.
HALVES = ("all", "first", "second")


class BacktestError(ValueError):
    """A backtest that cannot run (no builds, bad parameters)."""


@dataclass(frozen=True)
class BacktestConfig:
    warmup: int = 50  # builds ingested before the first evaluated one
    retrain_every: int = 50  # builds between trainings after the warm-up; 0: never
    policy: Policy = field(default_factory=Policy)
    closed_loop: bool = False
    random_seeds: int = RANDOM_SEEDS
    database_url: str | None = None  # None: a temporary SQLite file
    half: str = "all"  # HALVES: the builds after the warm-up that are scored
    # Closed loop: the share of failures trimming may let through before it
    # escalates (None: the mode's promise, scheduler.planning.monitor; 1: never).
    miss_ceiling: float | None = None
    # Closed loop: the calibration error of what plans served above which it
    # escalates (None: monitor.DEFAULT_CALIBRATION_CEILING; 1: never).
    calibration_ceiling: float | None = None
    # Which exploration samples the plans draw: each build's plan seeds its
    # draw with the build's place and this (0: the figures documented). The
    # closed loop moves by points on one explored failure more or less, so
    # its figures are worth more over a few of these.
    exploration_seed: int = 0
    # Each test's history kept per CI job (history.jobs_apart), not merged.
    jobs_apart: bool = False

    def checked(self) -> BacktestConfig:
        if (
            self.warmup < 0
            or self.retrain_every < 0
            or self.random_seeds < 1
            or self.exploration_seed < 0
        ):
            raise BacktestError(
                "warmup, retrain_every and exploration_seed must be 0 or more, "
                "random_seeds 1 or more"
            )
        if self.half not in HALVES:
            raise BacktestError(f"half must be one of {', '.join(HALVES)}, not {self.half!r}")
        try:
            return replace(self, policy=self.policy.checked())
        except policies.PolicyError as error:
            raise BacktestError(str(error)) from None

    def as_json(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "retrain_every": self.retrain_every,
            "closed_loop": self.closed_loop,
            "random_seeds": self.random_seeds,
            "half": self.half,
            "miss_ceiling": self.miss_ceiling,
            "calibration_ceiling": self.calibration_ceiling,
            "exploration_seed": self.exploration_seed,
            "jobs_apart": self.jobs_apart,
            "database": shown_url(self.database_url) if self.database_url else "sqlite (temporary)",
            "policy": self.policy.as_json(),
        }


@dataclass(frozen=True)
class HistoryBuild:
    """One build of the history: its reports (shards, variants) and what
    happened to its tests (the worst final outcome per test, skips left out),
    in the order the history lists them."""

    index: int
    build: str  # the dataset's own build id
    commit: str
    branch: str | None
    at: datetime
    paths: tuple[str, ...]
    reports: tuple[HistoryReport, ...]
    names: tuple[str, ...]
    failed: Flags
    durations: Floats  # seconds; unknown counts as 0


@dataclass(frozen=True, eq=False)
class BuildRecord:
    """One evaluated build: its tests in the dataset's order, each ordering as
    indices into them (the first to run first) and the plan's selection."""

    index: int
    build: str
    names: tuple[str, ...]
    failed: Flags
    changed: Flags  # failing now and not in its previous run (or new): a status change
    durations: Floats
    orders: dict[str, Order]
    selected: Flags
    model_version: int | None
    full_run: bool
    # Each test's probability in the plan (calibrated: scheduler.risk.calibration).
    probabilities: Floats | None = None
    # The selected tests by what selected them (Decision.selected_by).
    selected_by: dict[str, int] | None = None
    # Of those the budget selected, by the rule that forced them, or
    # "model" for the priority prefix (Decision.budget_by_rule).
    budget_by: dict[str, int] | None = None
    # Closed loop: the build's evidence for the live estimate, the estimate
    # over the builds before it, and the escalation it led to (None: none).
    tally: monitor.Tally | None = None
    estimate: monitor.MissEstimate | None = None
    escalation: str | None = None
    # On a build the heuristic served: the probabilities the newest refused
    # model would have served instead (`Unserved`), and its version.
    unserved_probabilities: Floats | None = None
    unserved_version: int | None = None


# What became of a retraining: its candidate replaced the active model (or
# the heuristic), the registry kept the incumbent, or no candidate came out
# (too little history, no failure to learn from).
PROMOTED = "promoted"
REFUSED = "refused"
NOT_TRAINED = "not trained"
OUTCOMES = (PROMOTED, REFUSED, NOT_TRAINED)


@dataclass(frozen=True)
class TrainingRecord:
    """One retraining: before which build, and what the registry decided
    (`reason`: the registry's words, or why no model was trained)."""

    index: int
    build: str
    seconds: float
    version: int | None = None
    promoted: bool = False
    reason: str = ""
    rows: int | None = None
    failures: int | None = None
    validation_apfd: float | None = None
    heuristic_apfd: float | None = None
    active_apfd: float | None = None
    scorer: str | None = None  # what the model scores with (scheduler.risk.choice)
    # Rows of the exploration sample the training weighed 1/p (closed loop).
    explored_rows: int | None = None
    # Whether plans put the younger of equally scored tests first after it
    # (scheduler.risk.choice.choose_tie).
    younger_first: bool | None = None

    @property
    def outcome(self) -> str:
        if self.promoted:
            return PROMOTED
        return REFUSED if self.version is not None else NOT_TRAINED

    def as_json(self) -> dict[str, Any]:
        return {
            "before_build": self.build,
            "build_index": self.index,
            "seconds": round(self.seconds, 3),
            "version": self.version,
            "outcome": self.outcome,
            "promoted": self.promoted,
            "reason": self.reason,
            "rows": self.rows,
            "failures": self.failures,
            "validation_apfd": self.validation_apfd,
            "heuristic_apfd": self.heuristic_apfd,
            "active_apfd": self.active_apfd,
            "scorer": self.scorer,
            "explored_rows": self.explored_rows,
            "younger_first": self.younger_first,
        }


@dataclass
class BacktestResult:
    config: BacktestConfig
    builds: int
    executions: int
    records: list[BuildRecord]
    trainings: list[TrainingRecord]
    seconds: float = 0.0
    seconds_by_step: dict[str, float] = field(default_factory=dict)
    evaluated: int = 0  # builds after the warm-up, whichever half is scored
    # view -> per build -> ordering -> measure: summary.per_build's cache
    measured: dict[str, list[dict[str, dict[str, float | None]]]] = field(default_factory=dict)


# --- the history ----------------------------------------------------------------


def history_builds(reports: Iterable[HistoryReport]) -> list[HistoryBuild]:
    """The builds of a history, in its order: reports with the same commit and
    build id are one build, as `replay.builds_from_reports` (and ingestion)
    count them. Builds without a time get one a day after the build before."""
    grouped: dict[str, list[HistoryReport]] = {}
    for report in reports:
        grouped.setdefault(f"{report.commit}/{report.build}", []).append(report)
    result: list[HistoryBuild] = []
    previous = NO_TIME
    for number, group in enumerate(grouped.values()):
        at = group[0].time or previous + timedelta(days=1)
        previous = at
        timed = tuple(r if r.time is not None else replace(r, time=at) for r in group)
        (build,) = replay.builds_from_reports(timed)
        names = tuple(build.outcomes)
        result.append(
            HistoryBuild(
                index=number,
                build=group[0].build,
                commit=group[0].commit,
                branch=group[0].branch,
                at=at,
                paths=build.paths,
                reports=timed,
                names=names,
                failed=np.array(
                    [build.outcomes[n] is not Outcome.PASSED for n in names], dtype=bool
                ),
                durations=np.array(
                    [build.durations.get(n) or 0.0 for n in names], dtype=np.float64
                ),
            )
        )
    return result


def status_changes(builds: Sequence[HistoryBuild]) -> list[Flags]:
    """Per build, which of its failing tests are status changes: they fail
    now and did not fail in their previous run, or never ran before. Taken
    from the whole history, whatever a closed loop lets riskrank see."""
    last_failed: dict[str, bool] = {}
    result = []
    for build in builds:
        changed = np.array(
            [
                bool(failed) and not last_failed.get(name, False)
                for name, failed in zip(build.names, build.failed.tolist(), strict=True)
            ],
            dtype=bool,
        )
        result.append(changed)
        for name, failed in zip(build.names, build.failed.tolist(), strict=True):
            last_failed[name] = bool(failed)
    return result


def observed(build: HistoryBuild, selected: set[str] | None) -> list[HistoryReport]:
    """The reports of a build as riskrank receives them: whole, or (closed
    loop) with only the results of the selected tests."""
    if selected is None:
        return list(build.reports)
    return [
        replace(r, results=tuple(x for x in r.results if x.test in selected)) for r in build.reports
    ]


# --- scoring and the policy -----------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scored:
    """A commit's scores over the repository's active tests, and their inputs."""

    history: HistoryColumns
    matrix: FeatureMatrix
    probabilities: Floats
    model_version: int | None
    new_test_probability: float | None = None
    raw: Floats | None = None  # the scorer's scores before calibration
    # The plan's ranks (the scorer's order) and where a test it never saw goes.
    ranks: npt.NDArray[np.int64] | None = None
    new_test_rank: int | None = None
    commit_id: int | None = None  # the build's commit in the backtest's database


def score(
    database: Database,
    *,
    repository_id: int,
    build: HistoryBuild,
    cache: scoring.ModelCache,
) -> Scored:
    """Record the build's commit and its changed files, then score every
    active test from the database as it stands (see the module docstring)."""
    with database.session() as session:
        repository = session.get_one(Repository, repository_id)
        commit_id = runs.ensure_commit(
            session, repository=repository, sha=build.commit, branch=build.branch
        )
        changes = [c for report in build.reports for c in report.changed_files]
        # With their line counts: replay reads them for training, as scoring does here.
        history_import.record_changed_files(session, commit_id=commit_id, changes=changes)
        scores = scoring.score_tests(
            session,
            repository_id=repository_id,
            commit_id=commit_id,
            at=build.at,
            cache=cache,
            explain_scores=False,
        )
    assert scores.history is not None
    version = scores.model.version if scores.model is not None else None
    return Scored(
        scores.history,
        scores.matrix,
        scores.probabilities.astype(np.float64),
        version,
        scores.new_test_probability,
        None if scores.raw is None else scores.raw.astype(np.float64),
        scores.ranks(),
        scores.new_test_rank(),
        commit_id,
    )


def plan_items(scored: Scored) -> plans.Items:
    """The scores as the plan API reads a stored plan's tests (the payload
    it would store, without its JSON pieces), in rank order."""
    ranks = (
        scored.ranks
        if scored.ranks is not None
        else scoring.ranks(scored.probabilities, scored.matrix)
    )
    order = np.argsort(ranks, kind="stable")
    rows = order.tolist()
    history = scored.history
    own = scored.matrix.column("own_file_changed").astype(np.float64)
    payload = Payload.build(
        test_id=order,  # the row in the scores, as the test's id
        names=[history.names[row] for row in rows],
        probability=scored.probabilities[order],
        reasons=[],
        own_file_changed=own[order] == 1.0,
        duration=history.duration_mean[order],
        builds_since_failure=history.builds_since_failure[order],
        runs=history.runs[order],
        recent=[history.recent[row] for row in rows],
        texts=False,
        new_test_probability=scored.new_test_probability,
        new_test_rank=scored.new_test_rank,
    )
    return plans.Items(payload, Stats.of_payload(payload, None))


def _picked(values: Floats, item: npt.NDArray[np.intp], missing: float) -> Floats:
    """Each candidate's value (`item`: its row in the scores, -1 none);
    `missing` for a test without a row or with a NaN."""
    picked = np.where(item >= 0, values[np.maximum(item, 0)] if len(values) else np.nan, np.nan)
    return np.where(np.isnan(picked), missing, picked)


def _column(scored: Scored, item: npt.NDArray[np.intp], name: str, missing: float) -> Floats:
    """A feature of each candidate (`item`: its row in the scores, -1 none)."""
    return _picked(scored.matrix.column(name).astype(np.float64), item, missing)


def baseline_orders(
    build: HistoryBuild,
    scored: Scored,
    covered: Covered,
    *,
    seeds: int,
) -> dict[str, Order]:
    """The baselines' orders of the build's tests, from the same point-in-time
    statistics as riskrank's (the test's statistics before the build's own
    outcomes). A test without history is new: it has never failed, a failure
    rate of 0, no transition and the median known duration (as the policy
    assumes). Ties keep the dataset's order, after the stated tie-breaks:

    - new first, then recently failed: the tests that never ran first, then
      by builds since the last failure (fewest first; never failed last),
      then by failure rate (highest first);
    - recently failed first: by builds since the last failure, then by
      failure rate;
    - failure rate: highest first, then the more recent failure;
    - failure rate per second: failure rate over the expected duration, then
      the more recent failure;
    - transitions: the most flips between passing and failing first, then the
      more recent failure, then the higher failure rate;
    - shortest first: by expected duration."""
    n = len(build.names)
    item = covered.scores_row
    since = _column(scored, item, "builds_since_failure", NEVER)
    rate = _column(scored, item, "fail_rate_all", 0.0)
    new = _column(scored, item, "is_new", 1.0)
    flips = _picked(scored.history.flips, item, 0.0)
    duration = policies.expected_durations(covered.candidates.duration)
    orders: dict[str, Order] = {ORIGINAL: np.arange(n, dtype=np.intp)}
    for seed in range(seeds):
        rng = np.random.default_rng([seed, build.index])
        orders[f"{RANDOM}/{seed}"] = rng.permutation(n).astype(np.intp)
    orders[NEW_THEN_RECENT] = metrics.order_by_keys(-new, since, -rate)
    orders[RECENTLY_FAILED] = metrics.order_by_scores(-since, tie_break=-rate)
    orders[FAILURE_RATE] = metrics.order_by_scores(rate, tie_break=since)
    orders[FAILURE_RATE_PER_SECOND] = metrics.order_by_scores(rate / duration, tie_break=since)
    orders[TRANSITIONS] = metrics.order_by_keys(-flips, since, -rate)
    orders[SHORTEST] = metrics.order_by_scores(-duration)
    return orders


@dataclass(frozen=True, eq=False)
class Covered:
    """The build's tests as the plan API covers them, and each one's row in
    the scores (-1: not scored, new)."""

    candidates: policies.Candidates
    scores_row: npt.NDArray[np.intp]


# Exploration seeds of one backtest are this far apart, beyond any build count.
SEED_STRIDE = 1_000_003


def decide(
    build: HistoryBuild,
    scored: Scored,
    policy: Policy,
    default_branch_build: int | None,
    exploration_seed: int = 0,
) -> tuple[Covered, Decision]:
    """The plan for exactly the build's tests, as the plan API makes it (its
    exploration draw seeded by the build's place, as a plan's by its id)."""
    items = plan_items(scored)
    covered = plans.cover(
        items, build.names, policy.recent_failures, by_model=scored.model_version is not None
    )
    rows = np.where(covered.known, items.payload.test_id[np.maximum(covered.row, 0)], -1)
    context = Context(
        changed_paths=build.paths,
        default_branch_build=default_branch_build,
        seed=build.index + 1 + exploration_seed * SEED_STRIDE,
    )
    return (
        Covered(covered.candidates, rows.astype(np.intp)),
        policies.decide(covered.candidates, policy, context),
    )


# --- training -------------------------------------------------------------------


def retrain(
    database: Database,
    *,
    repository_id: int,
    build: HistoryBuild,
    selection: training.Selection | None = None,
) -> TrainingRecord:
    started = time.perf_counter()
    try:
        with database.session() as session:
            outcome = training.train_repository(
                session, repository_id=repository_id, selection=selection
            )
            if outcome is None:
                return TrainingRecord(
                    build.index, build.build, 0.0, reason="another training held the lock"
                )
            found = outcome.model.metrics or {}
            record = TrainingRecord(
                index=build.index,
                build=build.build,
                seconds=time.perf_counter() - started,
                version=outcome.model.version,
                promoted=outcome.promoted,
                reason=outcome.reason,
                rows=outcome.model.train_rows,
                failures=outcome.model.train_failures,
                validation_apfd=(found.get("candidate") or {}).get("mean_apfd"),
                heuristic_apfd=(found.get("heuristic") or {}).get("mean_apfd"),
                active_apfd=(found.get("active") or {}).get("mean_apfd"),
                scorer=(found.get("scorer") or {}).get("name"),
                explored_rows=(found.get("selection_weights") or {}).get("explored_rows"),
                younger_first=(found.get("tie") or {}).get("younger_first"),
            )
    except training.TrainingError as error:
        return TrainingRecord(
            build.index, build.build, time.perf_counter() - started, reason=str(error)
        )
    return record


# --- the model that did not serve -------------------------------------------------


@dataclass(frozen=True, eq=False)
class Unserved:
    """The newest trained model the registry refused, kept to score the
    builds the heuristic serves as if it served them: with the map its
    training learnt, refreshed as a serving model's is (on the tests that
    ran, every REFRESH_EVERY builds). How else to tell whether a model's
    probabilities hold on a history where no model ever earns its place
    (dune-total)?"""

    version: int
    model: LoadedModel
    calibration: calibration.Calibration | None

    @classmethod
    def of(cls, database: Database, repository_id: int, version: int) -> Unserved | None:
        """The refused model `version`, or None where it cannot be read."""
        with database.session() as session:
            record = session.scalar(
                select(RiskModel).where(
                    RiskModel.repository_id == repository_id, RiskModel.version == version
                )
            )
            if record is None:
                return None
            try:
                model = load_model(record.model_text)
            except ModelError:
                return None
            return cls(
                version,
                model,
                calibration.Calibration.from_json((record.metrics or {}).get("calibration")),
            )

    def raw(self, scored: Scored) -> Floats | None:
        """The model's scores of the scored tests, before its map; None
        where it reads features this riskrank does not compute."""
        try:
            result: Floats = self.model.predict(self.model.inputs(scored.matrix))
        except ModelError:
            return None
        return result

    def probabilities(self, scored: Scored, covered: Covered, raw: Floats) -> Floats:
        """Each of the build's tests' probability, had this model served
        (a test new to riskrank: the rate of new tests, as served)."""
        mapped = scoring.calibrated(raw, scored.matrix, self.calibration).astype(np.float64)
        row = covered.scores_row
        served = covered.candidates.probability.astype(np.float64)
        result: Floats = np.where(row >= 0, mapped[np.maximum(row, 0)], served)
        return result


# --- the loop -------------------------------------------------------------------


def _refresh_rows(
    scored: Scored,
    covered: Covered,
    decision: Decision,
    build: HistoryBuild,
    raw: Floats | None = None,
    *,
    everything: bool = False,
) -> tuple[Floats, Floats, Floats]:
    """(raw score, failed, weight) of the build's tests that ran and were
    scored and not new, as the plan's evaluation would hold them; the
    scores `raw` (by default the serving scorer's). `everything`: every
    test ran (the open loop), each row counted once."""
    row = covered.scores_row
    ran = np.ones_like(decision.selected) if everything else decision.selected
    known = (row >= 0) & ran & ~covered.candidates.is_new
    raw = scored.raw if raw is None else raw
    if raw is None or not known.any():
        return np.empty(0), np.empty(0), np.empty(0)
    if everything:
        return raw[row[known]], build.failed[known].astype(np.float64), np.ones(int(known.sum()))
    explored = decision.propensity < 1.0
    weight = np.array(
        [
            recalibration.weight_of(bool(e), float(p))
            for e, p in zip(explored[known], decision.propensity[known], strict=True)
        ],
        dtype=np.float64,
    )
    return raw[row[known]], build.failed[known].astype(np.float64), weight


def _served_tally(
    scored: Scored, covered: Covered, decision: Decision, build: HistoryBuild
) -> monitor.CalibrationTally:
    """The build's calibration tally as plan evaluation keeps it: the
    probabilities the plan served to the tests that ran, against their
    outcomes, a test of the exploration sample counted 1/p times."""
    ran = decision.selected
    weight = [
        recalibration.weight_of(bool(p < 1.0), float(p)) for p in decision.propensity[ran].tolist()
    ]
    bins = calibration.tally_bins(covered.candidates.probability[ran], build.failed[ran], weight)
    return monitor.CalibrationTally(scored.model_version, bins)


def _refit(
    rows: Iterable[tuple[Floats, Floats, Floats]],
) -> tuple[calibration.Calibration | None, int]:
    """A calibration refresh, from the builds' rows in
    memory: the new map (None: none could be made), and the builds."""
    parts = [(raw, failed, weight, n) for n, (raw, failed, weight) in enumerate(rows)]
    if not parts:
        return None, 0
    refit = recalibration.refit_rows(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([np.full(len(p[1]), p[3]) for p in parts]),
    )
    return refit, len(parts)


def _refresh(
    database: Database, repository_id: int, rows: Iterable[tuple[Floats, Floats, Floats]]
) -> None:
    """The calibration refresh of the serving scorer."""
    refit, plans_seen = _refit(rows)
    if refit is None:
        return
    with database.session() as session:
        recalibration.store(session, repository_id, refit, plans=plans_seen)


def temporary_database(directory: Path) -> str:
    return f"sqlite:///{directory / 'backtest.db'}"


def _default_branch(builds: Sequence[HistoryBuild]) -> str | None:
    """The branch most builds ran on (None when the history names none)."""
    counts: dict[str | None, int] = {}
    for build in builds:
        counts[build.branch] = counts.get(build.branch, 0) + 1
    return max(counts, key=lambda b: (counts[b], b is not None)) if counts else None


# What a test may put in place of a build's scores (the model replaced by
# random scores mid-history, to see escalation happen).
Rescore: TypeAlias = Callable[[HistoryBuild, "Scored"], "Scored"]


def run_backtest(
    reports: Iterable[HistoryReport],
    config: BacktestConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    rescore: Rescore | None = None,
) -> BacktestResult:
    """Replay the history (see the module docstring); `progress(done,
    total)` is called after each build; `rescore`, for tests, replaces
    each build's scores before the policy sees them."""
    config = config.checked()
    builds = history_builds(jobs_apart(reports) if config.jobs_apart else reports)
    if not builds:
        raise BacktestError("the history holds no build")
    if config.warmup >= len(builds):
        raise BacktestError(
            f"--warmup {config.warmup} leaves no build to evaluate: the history has "
            f"{len(builds)} builds"
        )
    scored = scored_range(len(builds), config)
    if scored.start >= scored.stop:
        raise BacktestError(
            f"--half {config.half} leaves no build to score: {len(builds) - config.warmup} "
            "builds after the warm-up"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="riskrank-backtest-") as directory:
        url = config.database_url or temporary_database(Path(directory))
        migrate.upgrade(url)
        database = Database.from_url(url)
        try:
            result = _replay(database, builds, config, progress, rescore)
        finally:
            database.dispose()
    result.seconds = time.perf_counter() - started
    return result


def scored_range(builds: int, config: BacktestConfig) -> range:
    """The indexes of the builds scored: every build after the warm-up, or
    its first half (the first floor(n / 2) of the n builds after it) or its
    second half (the rest). The replay is the same whichever is scored (the
    same ingestion and trainings before each build), so a half's per-build
    figures are those of the whole run."""
    middle = config.warmup + (builds - config.warmup) // 2
    if config.half == "first":
        return range(config.warmup, middle)
    if config.half == "second":
        return range(middle, builds)
    return range(config.warmup, builds)


def _replay(
    database: Database,
    builds: list[HistoryBuild],
    config: BacktestConfig,
    progress: Callable[[int, int], None] | None,
    rescore: Rescore | None = None,
) -> BacktestResult:
    with database.session() as session:
        repository = repos.add_repository(
            session,
            provider=Provider.GENERIC,
            full_name=f"backtest/run-{uuid.uuid4().hex[:12]}",
        )
        repository_id = repository.id
    cache = scoring.ModelCache()  # never the process-wide one: ids repeat across databases
    changes = status_changes(builds)
    default_branch = _default_branch(builds)
    steps = {"ingest": 0.0, "score": 0.0, "policy": 0.0, "train": 0.0}
    result = BacktestResult(config, len(builds), 0, [], [], evaluated=len(builds) - config.warmup)
    scored_builds = scored_range(len(builds), config)

    def ingest(reports: list[HistoryReport]) -> None:
        begun = time.perf_counter()
        tally = history_import.import_history(
            database, repository_id=repository_id, reports=reports
        )
        result.executions += tally.executions
        steps["ingest"] += time.perf_counter() - begun

    warm = builds[: config.warmup]
    for start in range(0, len(warm), WARMUP_CHUNK):
        chunk = warm[start : start + WARMUP_CHUNK]
        ingest([report for build in chunk for report in build.reports])
        if progress:
            progress(start + len(chunk), scored_builds.stop)
    branch_builds = sum(1 for b in warm if b.branch == default_branch)
    # The newest builds' evidence, as plan evaluation keeps it in production:
    # the live estimate and its escalation (closed loop), and what expansions
    # ran and caught (either loop).
    tallies: deque[monitor.Tally] = deque(maxlen=monitor.WINDOW_BUILDS)
    served: deque[monitor.CalibrationTally] = deque(maxlen=monitor.WINDOW_BUILDS)
    # The rows a calibration refresh learns from (the tests that ran, as the
    # plans' evaluations hold them; in the open loop every test), per build,
    # for the scorer that scored them (scheduler.services.recalibration).
    refresh_rows: deque[tuple[Floats, Floats, Floats]] = deque(maxlen=recalibration.REFRESH_PLANS)
    refresh_scorer: int | None = None
    # Closed loop: the tests each build ran only because the exploration
    # sample drew them, and p, by the build's key as training reads it back
    # (what production reads from the plans' decision records).
    selection: dict[str, dict[str, float]] = {}
    unserved: Unserved | None = None
    # The refused model's rows, refreshed as a serving model's would be.
    unserved_rows: deque[tuple[Floats, Floats, Floats]] = deque(maxlen=recalibration.REFRESH_PLANS)
    ceiling = monitor.ceiling_of(config.policy.as_json(), config.miss_ceiling)
    calibration_ceiling = monitor.calibration_ceiling_of(
        config.policy.as_json(), config.calibration_ceiling
    )
    # What comes after the scored builds cannot change their figures.
    for build in builds[config.warmup : scored_builds.stop]:
        evaluated = build.index - config.warmup
        if config.retrain_every and evaluated % config.retrain_every == 0:
            record = retrain(
                database, repository_id=repository_id, build=build, selection=selection
            )
            steps["train"] += record.seconds
            result.trainings.append(record)
            if record.promoted:
                unserved = None
            elif record.version is not None:
                newer = Unserved.of(database, repository_id, record.version)
                if newer is not None:
                    unserved = newer
                    unserved_rows.clear()  # another model: its scores map otherwise
        begun = time.perf_counter()
        scored = score(database, repository_id=repository_id, build=build, cache=cache)
        if rescore is not None:
            scored = rescore(build, scored)
        steps["score"] += time.perf_counter() - begun
        begun = time.perf_counter()
        on_default = build.branch == default_branch
        branch_builds += int(on_default)
        policy, estimate, escalation = config.policy, None, None
        if config.closed_loop:
            estimate = monitor.estimate(tallies)
            drift = monitor.calibration_check(reversed(served))  # newest first
            escalation = monitor.reasons(
                monitor.escalation(estimate, ceiling),
                monitor.calibration_escalation(drift, calibration_ceiling),
            )
            if escalation is not None:
                policy = replace(policy, escalation=escalation)
        if policy.expand_after:
            policy = replace(
                policy,
                expansion_share=monitor.expansion_share(tallies) if policy.inclusive else 0.0,
                watched_failure_rate=monitor.watched_failure_rate(tallies),
                expansion_catch=monitor.expansion_catch(tallies),
            )
        if policy.mode == "confidence" and policy.budget is not None:
            policy = replace(
                policy, confidence_scale=monitor.confidence_scale(tallies, policy.budget)
            )
        covered, decision = decide(
            build,
            scored,
            policy,
            branch_builds if on_default else None,
            exploration_seed=config.exploration_seed,
        )
        # The tests it selected ran: the build expands if enough of them failed.
        watched = policies.watched(decision.selected, decision.rules)
        decision = policies.expanded(decision, build.failed)
        by_expansion = np.fromiter(
            (rule is policies.Rule.EXPANSION for rule in decision.rules),
            dtype=bool,
            count=len(decision.rules),
        )
        # As plan evaluation tallies a plan, in either loop.
        tally = monitor.tally_of(
            selected=decision.selected,
            propensity=decision.propensity,
            failed=build.failed,
            exploration_rate=policy.effective_exploration_rate,
            expanded=int(by_expansion.sum()),
            watched=int(watched.sum()),
            watched_failures=int((watched & build.failed).sum()),
            expanded_failures=int((by_expansion & build.failed).sum()),
            probability=np.nan_to_num(covered.candidates.probability, nan=0.0),
            policy=policy.as_json(),
        )
        tallies.append(tally)
        # What the newest refused model would have served (the heuristic's builds only).
        unserved_raw = (
            unserved.raw(scored) if unserved is not None and scored.model_version is None else None
        )
        shadow = (
            None
            if unserved is None or unserved_raw is None
            else unserved.probabilities(scored, covered, unserved_raw)
        )
        if config.closed_loop:
            drawn = np.flatnonzero(decision.selected & (decision.propensity < 1.0))
            if drawn.size and scored.commit_id is not None:
                key = f"{scored.commit_id}/{history_import.IMPORT_KEY_PREFIX}{build.build}"
                selection[key] = {
                    build.names[i]: float(decision.propensity[i]) for i in drawn.tolist()
                }
            served.append(_served_tally(scored, covered, decision, build))
        # Every evaluated plan counts toward a calibration refresh, in any
        # mode, as in production; in the open loop every test ran, so every
        # one is a row.
        if scored.model_version != refresh_scorer:
            refresh_rows.clear()  # another scorer: its scores map otherwise
            refresh_scorer = scored.model_version
        everything = not config.closed_loop
        refresh_rows.append(_refresh_rows(scored, covered, decision, build, everything=everything))
        if unserved_raw is not None:
            unserved_rows.append(
                _refresh_rows(
                    scored, covered, decision, build, raw=unserved_raw, everything=everything
                )
            )
        if (evaluated + 1) % recalibration.REFRESH_EVERY == 0:
            begun_refit = time.perf_counter()
            _refresh(database, repository_id, refresh_rows)
            if unserved is not None and unserved_rows:
                refit, _ = _refit(unserved_rows)
                if refit is not None:
                    unserved = replace(unserved, calibration=refit)
            steps["train"] += time.perf_counter() - begun_refit
        orders = {RISKRANK: decision.order}
        # Ties as plans break them: the more recent failure first.
        recency = np.nan_to_num(covered.candidates.builds_since_failure, nan=NEVER)
        orders[RISKRANK_BY_PROBABILITY] = metrics.order_by_scores(
            covered.candidates.probability, tie_break=recency
        )
        orders.update(baseline_orders(build, scored, covered, seeds=config.random_seeds))
        if build.index in scored_builds:
            result.records.append(
                BuildRecord(
                    index=build.index,
                    build=build.build,
                    names=build.names,
                    failed=build.failed,
                    changed=changes[build.index],
                    durations=build.durations,
                    orders=orders,
                    selected=decision.selected,
                    model_version=scored.model_version,
                    full_run=decision.full_run,
                    probabilities=covered.candidates.probability,
                    selected_by=decision.selected_by(),
                    budget_by=decision.budget_by_rule(),
                    tally=tally if config.closed_loop else None,
                    estimate=estimate,
                    escalation=escalation,
                    unserved_probabilities=shadow,
                    unserved_version=None
                    if shadow is None or unserved is None
                    else unserved.version,
                )
            )
        steps["policy"] += time.perf_counter() - begun
        chosen = (
            {
                name
                for name, keep in zip(build.names, decision.selected.tolist(), strict=True)
                if keep
            }
            if config.closed_loop
            else None
        )
        ingest(observed(build, chosen))
        if progress:
            progress(build.index + 1, scored_builds.stop)
    result.seconds_by_step = {name: round(value, 3) for name, value in steps.items()}
    return result
