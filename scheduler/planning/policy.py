"""The policy applied to a scored commit: order, trim to a budget, always keep
what must run, sample some of what the budget drops, escalate to a full run,
and split into shards.

Pure and deterministic: arrays in, arrays out, no clock, no database, no
module state. The same candidates, policy and context always give the same
decision, which is what lets the shards of one CI build ask separately and
still agree (the exploration sample is drawn from a generator seeded by the
plan id).

The rules, in the order they label a test (the first that applies wins):

1. `full_run`: the change touches a path the model cannot reason about
   (`full_run_paths`; a dependency lock file, CI configuration) or the build is
   every `full_run_every`-th of the default branch: everything runs.
2. `must_run`: the test id matches one of the repository's `must_run` globs.
3. `new`: the test never ran (new to riskrank, nothing to predict from).
4. `own_file_changed`: the file that holds the test changed.
5. `recently_failed`: the test failed (or errored) in one of its last
   `recent_failures` runs, so a fix must pass that many times before the
   test can be trimmed again.
6. `model`: within the budget, in priority order.
7. `exploration`: over the budget, but drawn into the random sample;
   `escalation`: over the budget, but the repository is escalated
   (`Policy.escalation`): every such test runs, with a propensity of 1.
8. `budget`: over the budget: dropped.
9. `expansion` (once the selected tests ran, `expanded`): enough of the
   watched tests failed, more than their probabilities make likely
   (`Decision.expand_after`): every dropped test runs after all, with a
   propensity of 1. The recent builds' expansions are paid out of the
   budget (`kept_share`).

The budget is the budget (`Policy.inclusive`, the default): in `fraction`
and `time` modes the exploration sample and the periodic full runs are paid
out of it (`trimmed_share`), so a third of the tests run on average at
`fraction 0.33`, whatever the build.

Rules 2-5 are "forced": their tests run whatever the budget, and they use up
the budget first. The budget then takes a prefix of the other tests in
priority order (ties: the higher probability, then the more recent failure,
then the order given).

Priority order: the order spends what the budget counts as slowly as it can.
When it counts tests (`by="tests"`, the default: `order`, `fraction` of the
tests, `confidence`), the scorer's order (`Candidates.place`: the highest
score first, which is the highest probability but for tests new to
riskrank, see below; without it, the highest probability first), so the
failures come within the fewest tests. A new test's probability is the
repository's failure rate of new tests (scheduler.services.scoring.
calibrated), a number for the budget and the miss risk; where it runs is
where the scorer put it: a repository served "new first, then recently
failed" runs its new tests first, as the ordering that was chosen for it
does. Ordered by that rate, they ran after every test red in its last build
on dune-total (a rate of 0.14-0.25 against 0.44-0.83), and each new test
that failed, a status change, came 11-15 tests later than the ordering
puts it (the first half of its history, `riskrank backtest --half first`).
A plan a model scored, of a repository whose new tests fail more often
than the prior rate of new tests (`Candidates.new_first`: its observed
rate, shrunk toward scheduler.risk.features.NEW_TEST_PRIOR, above it),
runs them before every other test in any order, as "new first" does: a
model trained on few new tests can place an unseen test anywhere, and on
IOF/ROL, where new tests fail often, the models' place for them cost
status changes (recall at 10% of the tests, docs/evaluation.md). The
heuristic places them by that rate itself.
When it counts seconds (`time`, or
`by="duration"` in any mode), the highest failure probability per second of
expected runtime first, so they come within the least time; the seconds are
the expected duration plus a per-test overhead, by default the median
expected duration of the plan's tests (`Policy.overhead`; 0 for the duration
alone): a mean duration leaves out what running a test costs beyond its body
(setup, the runner, a process per test for ctest), and suites hold many tests
measured at a few milliseconds or at 0, which, divided by that alone, ran
with a sliver of risk before a test twenty times as likely to fail. The
median keeps the rule free of units (5 ms unit tests or 5-minute integration
tests alike).

Why not per second always: in the backtests of 2026-11-29 (warm-up 50
builds, retraining every 50) the per-second order of the same scores cost
APFD 0.882 against 0.948 on dune-total and 0.410 against 0.900 on
dune-debian_11, and recall at 33% of the tests 0.849 against 0.941, while
its gain in time (APFDc) was 0.948 against 0.950 on dune-total, 0.911
against 0.888 on dune-debian_11 and 0.990 against 0.908 on dune-debian_10:
worth it where time is what the budget or the user counts, not otherwise.

Expected duration: the test's mean duration; unknown, the median of the known
ones (1 s when none is known); never below 1 ms.
"""

from __future__ import annotations

import enum
import fnmatch
import heapq
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from scheduler.risk import calibration

FloatArray: TypeAlias = npt.NDArray[np.float64]
IndexArray: TypeAlias = npt.NDArray[np.intp]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

MODES = ("order", "time", "fraction", "confidence")
# The least and the most `Policy.confidence_scale`.
CONFIDENCE_SCALES = (0.5, 2.0)
BY = ("tests", "duration")

DEFAULT_EXPLORATION_RATE = 0.05
DEFAULT_RECENT_FAILURES = 2
DEFAULT_FULL_RUN_EVERY = 20
DEFAULT_EXPAND_AFTER = 2
UNKNOWN_DURATION = 1.0  # seconds, when no test of the plan has a known duration
MIN_DURATION = 0.001  # seconds: the floor of an expected duration

# Changes the model cannot reason about: a dependency or the CI itself
# changed, so any test may break. A glob without "/" matches a path's last
# part anywhere in the tree; one with "/" matches the whole path.
DEFAULT_FULL_RUN_PATHS: tuple[str, ...] = (
    # dependency lock files and manifests that pin versions
    "poetry.lock",
    "uv.lock",
    "Pipfile.lock",
    "requirements*.txt",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "npm-shrinkwrap.json",
    "go.mod",
    "go.sum",
    "Cargo.lock",
    "Gemfile.lock",
    "composer.lock",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "gradle.lockfile",
    "gradle/libs.versions.toml",
    "packages.lock.json",
    # CI configuration
    ".github/workflows/*",
    ".gitlab-ci.yml",
    "Jenkinsfile",
    ".circleci/*",
    "azure-pipelines.yml",
    ".travis.yml",
    "bitbucket-pipelines.yml",
    ".buildkite/*",
)


class PolicyError(ValueError):
    """Parameters that make no policy (a bad mode, a budget out of range)."""


class Rule(enum.StrEnum):
    MODEL = "model"
    MUST_RUN = "must_run"
    NEW = "new"
    OWN_FILE_CHANGED = "own_file_changed"
    RECENTLY_FAILED = "recently_failed"
    EXPLORATION = "exploration"
    ESCALATION = "escalation"
    EXPANSION = "expansion"
    FULL_RUN = "full_run"
    BUDGET = "budget"


_RULES = {rule.value: rule for rule in Rule}

# The rules by which the budget itself selects (Decision.budget_by_rule):
# those that force a test in, and the priority prefix.
BUDGET_RULES = (
    Rule.MUST_RUN,
    Rule.NEW,
    Rule.OWN_FILE_CHANGED,
    Rule.RECENTLY_FAILED,
    Rule.MODEL,
)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, 1-based as CI systems number their jobs."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise PolicyError(f"shard must be i/n, such as 1/4, not {text!r}")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count:
            raise PolicyError(f"shard {text!r}: i/n needs 1 <= i <= n")
        if count > 10_000:
            raise PolicyError(f"shard {text!r}: at most 10000 shards")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Policy:
    """What to run. `budget` means: seconds (`time`), a share 0..1 of the
    tests or, `by="duration"`, of the expected duration (`fraction`), or a
    share 0..1 of the expected failures to keep (`confidence`); `order` has
    none."""

    mode: str = "order"
    budget: float | None = None
    by: str = "tests"
    exploration_rate: float = DEFAULT_EXPLORATION_RATE
    recent_failures: int = DEFAULT_RECENT_FAILURES
    must_run: tuple[str, ...] = ()
    full_run_paths: tuple[str, ...] = DEFAULT_FULL_RUN_PATHS
    full_run_every: int = DEFAULT_FULL_RUN_EVERY  # 0: never
    # Seconds added to each expected duration when ordering (see the module's
    # docstring); None: the median expected duration of the plan's tests.
    overhead: float | None = None
    # Exploration and the periodic full runs are paid out of the budget
    # (`trimmed_share`), so that a budget is what runs on average.
    inclusive: bool = True
    # Why the repository runs every test for now (scheduler.planning.monitor:
    # the live estimate of what trimming misses broke the mode's promise);
    # None: trimming as the budget says. Escalated, every test the budget
    # drops runs too, with a logged propensity of 1.
    escalation: str | None = None
    # Run every test the budget dropped once this many of the watched tests
    # (`watched`) failed in the build (`expanded`); 0: never.
    expand_after: int = DEFAULT_EXPAND_AFTER
    # The share of the tests the budget dropped that expansions ran lately
    # (scheduler.planning.monitor.expansion_share), paid out of the budget
    # as the exploration sample is (`dropped_run_share`).
    expansion_share: float = 0.0
    # How often a watched test failed lately (failures per watched test over
    # the window, scheduler.planning.monitor.watched_failure_rate): what the
    # threshold of an expansion expects at least, whatever the probabilities.
    watched_failure_rate: float = 0.0
    # The share of the failures over the budget that expansions ran lately
    # (scheduler.planning.monitor.expansion_catch): what `confidence` counts
    # on them to keep (`dropped_failure_share`).
    expansion_catch: float = 0.0
    # `confidence` t: the factor on the share 1 - t each plan may let
    # through (`confidence_target`), so that over the recent builds the
    # share of the expected failures kept is t (scheduler.planning.monitor.
    # confidence_scale): builds whose forced tests already hold more than t
    # leave room the others use. From 1/2 to 2 (each plan still keeps
    # 2t - 1 of its own expected failures, and at least t / 2).
    confidence_scale: float = 1.0

    def checked(self) -> Policy:
        """This policy, or a PolicyError that says what is wrong."""
        if self.mode not in MODES:
            raise PolicyError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.by not in BY:
            raise PolicyError(f"by must be one of {', '.join(BY)}, not {self.by!r}")
        if not 0 <= self.exploration_rate <= 1:
            raise PolicyError(f"exploration_rate must be 0..1, not {self.exploration_rate}")
        if self.recent_failures < 0 or self.full_run_every < 0:
            raise PolicyError("recent_failures and full_run_every must be 0 or more")
        if self.expand_after < 0:
            raise PolicyError(f"expand_after must be 0 (never) or more, not {self.expand_after}")
        if not 0 <= self.expansion_share < 1:
            raise PolicyError(
                f"expansion_share must be 0..1 (1 excluded), not {self.expansion_share}"
            )
        if not 0 <= self.expansion_catch < 1:
            raise PolicyError(
                f"expansion_catch must be 0..1 (1 excluded), not {self.expansion_catch}"
            )
        if not CONFIDENCE_SCALES[0] <= self.confidence_scale <= CONFIDENCE_SCALES[1]:
            raise PolicyError(
                f"confidence_scale must be {CONFIDENCE_SCALES[0]:g} to "
                f"{CONFIDENCE_SCALES[1]:g}, not {self.confidence_scale}"
            )
        if not 0 <= self.watched_failure_rate <= 1:
            raise PolicyError(f"watched_failure_rate must be 0..1, not {self.watched_failure_rate}")
        if self.overhead is not None and not (math.isfinite(self.overhead) and self.overhead >= 0):
            raise PolicyError(f"overhead is seconds, 0 or more, not {self.overhead}")
        budget = self.budget
        if self.mode == "order":
            return self if budget is None else replace(self, budget=None)
        if budget is None:
            raise PolicyError(f"mode {self.mode} needs a budget")
        if not math.isfinite(budget):
            raise PolicyError(f"budget must be a finite number, not {budget}")
        if self.mode == "time" and budget < 0:
            raise PolicyError(f"a time budget is seconds, 0 or more, not {budget}")
        if self.mode in ("fraction", "confidence") and not 0 <= budget <= 1:
            raise PolicyError(f"a {self.mode} budget is a share from 0 to 1, not {budget}")
        return self

    def as_json(self) -> dict[str, Any]:
        """The parameters as applied, for the plan's record."""
        return {
            "mode": self.mode,
            "budget": self.budget,
            "by": self.by,
            "exploration_rate": self.exploration_rate,
            "recent_failures": self.recent_failures,
            "must_run": list(self.must_run),
            "full_run_paths": list(self.full_run_paths),
            "full_run_every": self.full_run_every,
            "overhead": self.overhead,
            "inclusive": self.inclusive,
            "escalation": self.escalation,
            "expand_after": self.expand_after,
            "expansion_share": self.expansion_share,
            "watched_failure_rate": self.watched_failure_rate,
            "expansion_catch": self.expansion_catch,
            "confidence_scale": self.confidence_scale,
        }

    @property
    def confidence_target(self) -> float:
        """`confidence`: the share of its own expected failures this plan
        keeps, 1 - (1 - t) * confidence_scale (t itself at a scale of 1),
        never below half of t."""
        return confidence_target(
            float(self.budget if self.budget is not None else 0.0), self.confidence_scale
        )

    @property
    def effective_exploration_rate(self) -> float:
        """The probability that a test over the budget runs: 1 escalated."""
        return 1.0 if self.escalation is not None else self.exploration_rate

    @property
    def dropped_run_share(self) -> float:
        """The share of the tests the budget drops that run anyway, in
        expectation: the exploration sample's, and of the rest, what the
        recent builds' expansions ran."""
        rate = self.exploration_rate
        return rate + (1.0 - rate) * self.expansion_share

    @property
    def dropped_failure_share(self) -> float:
        """The share of the failures among the tests the budget drops that
        run anyway, in expectation: the exploration sample's, and of the
        rest, what the recent builds' expansions caught (failures come
        together, so expansions catch more of them than of the tests)."""
        rate = self.exploration_rate
        return rate + (1.0 - rate) * self.expansion_catch


@dataclass(frozen=True, eq=False)
class Candidates:
    """The tests of a plan, one entry per test in every field.

    `draw` is each test's position in the plan's random stream (its stored
    rank - 1): the exploration draw of a test depends on the plan and the
    test, not on which other tests a runner collected."""

    names: Sequence[str]
    probability: FloatArray
    duration: FloatArray  # mean seconds; NaN unknown
    builds_since_failure: FloatArray  # NaN: never failed
    recent: Sequence[str]  # newest outcomes first, one letter each: P, F or E
    is_new: BoolArray
    own_file_changed: BoolArray
    draw: IndexArray
    # failed_recently(recent, runs) already computed (by the database) for
    # `recent_runs` runs; `decide` uses it when the policy asks for as many.
    recently_failed: BoolArray | None = None
    recent_runs: int | None = None
    # Each test's place in its scorer's order (lower runs first; a plan's
    # row, see scheduler.services.plans.items.cover), which a plan runs its
    # tests in when the budget counts tests. None: by probability. The
    # two differ for tests new to riskrank: their probability is the
    # repository's rate of new tests, their place the scorer's.
    place: FloatArray | None = None
    # A model scored the plan and the repository's new tests fail more often
    # than the prior rate (scheduler.risk.features.NEW_TEST_PRIOR): they run
    # before every other test, whatever the order (see the module's docstring).
    new_first: bool = False

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def of(
        cls,
        names: Sequence[str],
        probability: Sequence[float],
        *,
        duration: Sequence[float | None] | None = None,
        builds_since_failure: Sequence[float | None] | None = None,
        recent: Sequence[str] | None = None,
        is_new: Sequence[bool] | None = None,
        own_file_changed: Sequence[bool] | None = None,
        draw: Sequence[int] | None = None,
    ) -> Candidates:
        """Candidates from plain sequences; what is not given is unknown or false."""
        n = len(names)

        def floats(values: Sequence[float | None] | None) -> FloatArray:
            if values is None:
                return np.full(n, np.nan)
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        def flags(values: Sequence[bool] | None) -> BoolArray:
            return np.zeros(n, dtype=bool) if values is None else np.array(values, dtype=bool)

        return cls(
            names=names,
            probability=np.asarray(probability, dtype=np.float64),
            duration=floats(duration),
            builds_since_failure=floats(builds_since_failure),
            recent=list(recent) if recent is not None else [""] * n,
            is_new=flags(is_new),
            own_file_changed=flags(own_file_changed),
            draw=np.asarray(draw if draw is not None else range(n), dtype=np.intp),
        )


@dataclass(frozen=True)
class Context:
    """What the policy knows of the build beyond its tests."""

    changed_paths: Sequence[str] = ()
    # 1-based: this is the k-th build of the default branch; None: another branch.
    default_branch_build: int | None = None
    seed: int = 0  # the plan id: the exploration sample is the same for every shard


@dataclass(frozen=True, eq=False)
class Decision:
    """The policy's answer, one entry per candidate in the per-test arrays."""

    order: IndexArray  # every candidate, highest priority first
    selected: BoolArray
    rules: list[Rule]
    propensity: FloatArray  # probability that the policy selected the test
    expected_duration: FloatArray
    must_run_pattern: list[str | None]
    full_run_reason: str | None
    policy: Policy
    # This many failures among the watched tests (`watched`) expand the
    # build (`expanded`); None: it never expands.
    expand_after: int | None = None
    ranks: IndexArray = field(init=False)

    def __post_init__(self) -> None:
        ranks = np.empty(len(self.order), dtype=np.intp)
        ranks[self.order] = np.arange(1, len(self.order) + 1)
        object.__setattr__(self, "ranks", ranks)

    @property
    def full_run(self) -> bool:
        return self.full_run_reason is not None

    def selected_by(self) -> dict[str, int]:
        """The selected tests by what selected them: the rules and the
        budget, the exploration sample, escalation, or a full run."""
        counts = {"budget": 0, "exploration": 0, "escalation": 0, "expansion": 0, "full_run": 0}
        for rule, chosen in zip(self.rules, self.selected.tolist(), strict=True):
            if not chosen:
                continue
            key = rule.value if rule.value in counts else "budget"
            counts[key] += 1
        return counts

    def budget_by_rule(self) -> dict[str, int]:
        """The tests `selected_by` counts as "budget", by why: a rule that
        forces them (must-run, new, own file changed, recently failed), or
        the priority prefix the budget kept ("model"). A full run's tests
        are none of them."""
        counts = {rule.value: 0 for rule in BUDGET_RULES}
        for rule, chosen in zip(self.rules, self.selected.tolist(), strict=True):
            if chosen and rule.value in counts:
                counts[rule.value] += 1
        return counts

    def run_order(self) -> IndexArray:
        """The selected candidates, in the order to run them."""
        return self.order[self.selected[self.order]]

    def dropped_order(self) -> IndexArray:
        return self.order[~self.selected[self.order]]

    def duration_dropped(self) -> float:
        return float(self.expected_duration[~self.selected].sum())

    def expected_failures_dropped(self, probability: FloatArray) -> float:
        """The expected number of failing tests among the dropped ones."""
        return float(probability[~self.selected].sum())

    def failures_dropped_bound(self, probability: FloatArray) -> int:
        """The 95% bound on the failing tests among the dropped ones
        (scheduler.risk.calibration.failures_bound)."""
        return calibration.failures_bound(probability[~self.selected])

    def miss_probability(self, probability: FloatArray) -> float:
        """The probability that at least one dropped test fails:
        1 - prod(1 - p) over the dropped tests, each on its own."""
        dropped = np.clip(np.nan_to_num(probability[~self.selected], nan=0.0), 0.0, 1.0)
        if (dropped >= 1.0).any():
            return 1.0
        return float(-np.expm1(np.sum(np.log1p(-dropped))))


# --- the rules ------------------------------------------------------------------


@lru_cache(maxsize=64)
def _globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def full_run_path(changed_paths: Sequence[str], patterns: Sequence[str]) -> str | None:
    """The first changed path the model cannot reason about, if any. A glob
    without "/" matches a path's last part; one with "/" the whole path."""
    whole = _globs(tuple(p for p in patterns if "/" in p))
    base = _globs(tuple(p for p in patterns if "/" not in p))
    for path in changed_paths:
        path = path.lstrip("/")
        if whole is not None and whole.match(path):
            return path
        if base is not None and base.match(path.rsplit("/", 1)[-1]):
            return path
    return None


def full_run_reason(policy: Policy, context: Context) -> str | None:
    path = full_run_path(context.changed_paths, policy.full_run_paths)
    if path is not None:
        return f"the change touches {path}"
    build = context.default_branch_build
    every = policy.full_run_every
    if every and build is not None and build % every == 0:
        return (
            f"every {_ordinal(every)} build of the default branch runs everything "
            f"(this is build {build})"
        )
    return None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def must_run_patterns(names: Sequence[str], patterns: Sequence[str]) -> list[str | None]:
    """Per test, the first must-run glob its id matches (case-sensitive), or None."""
    combined = _globs(tuple(patterns))
    if combined is None:
        return [None] * len(names)
    compiled = [(p, re.compile(fnmatch.translate(p))) for p in patterns]
    result: list[str | None] = []
    for name in names:
        if combined.match(name) is None:
            result.append(None)
        else:
            result.append(next(p for p, regex in compiled if regex.match(name)))
    return result


def failed_recently(recent: Sequence[str], runs: int) -> BoolArray:
    """Whether each test failed or errored in its last `runs` runs."""
    if runs <= 0:
        return np.zeros(len(recent), dtype=bool)
    return np.fromiter(
        (("F" in r[:runs]) or ("E" in r[:runs]) for r in recent), dtype=bool, count=len(recent)
    )


def expected_durations(duration: FloatArray) -> FloatArray:
    """Known durations as they are, unknown ones the median of the known
    (1 s when none is known); at least MIN_DURATION."""
    known = duration[np.isfinite(duration)]
    fill = float(np.median(known)) if len(known) else UNKNOWN_DURATION
    return np.maximum(np.where(np.isfinite(duration), duration, fill), MIN_DURATION)


def per_second(policy: Policy) -> bool:
    """Whether the order divides by the expected runtime: when the budget
    counts seconds (see the module's docstring)."""
    return policy.mode == "time" or policy.by == "duration"


def overhead_of(policy: Policy, duration: FloatArray) -> float:
    """The per-test overhead of the order: the policy's, else the median
    expected duration (0 for no test)."""
    if policy.overhead is not None:
        return policy.overhead
    return float(np.median(duration)) if len(duration) else 0.0


def priority_order(
    probability: FloatArray,
    duration: FloatArray | None,
    rank: IndexArray,
    overhead: float = 0.0,
    place: FloatArray | None = None,
    first: BoolArray | None = None,
) -> IndexArray:
    """The tests of `first` before the others, and within each part the
    highest failure probability per second (of duration plus overhead)
    first, or, without durations, the scorer's order (`place`, lowest
    first) where it is known, else highest probability first; ties: the
    higher probability, then the lower `rank` (the plan's: scoring breaks
    its ties as "new first, then recently failed" does), then the order
    given."""
    index = np.arange(len(probability))
    later = np.zeros(len(probability), dtype=bool) if first is None else ~first
    if duration is None:
        if place is not None:
            return np.lexsort((index, place, later)).astype(np.intp)
        return np.lexsort((index, rank, -probability, later)).astype(np.intp)
    rate = probability / (duration + overhead)
    return np.lexsort((index, rank, -probability, -rate, later)).astype(np.intp)


def budget_prefix(
    policy: Policy,
    *,
    order: IndexArray,
    forced: BoolArray,
    probability: FloatArray,
    duration: FloatArray,
) -> BoolArray:
    """The tests the budget keeps besides the forced ones: a prefix of the
    others in priority order. The forced tests use the budget up first."""
    keep = np.zeros(len(order), dtype=bool)
    free = order[~forced[order]]
    if policy.mode == "order":
        keep[free] = True
        return keep
    budget = float(policy.budget if policy.budget is not None else 0.0)
    if policy.mode == "confidence":
        return confidence_prefix(
            policy.confidence_target,
            policy.dropped_failure_share,
            order=order,
            forced=forced,
            probability=probability,
        )
    whole = float(duration.sum())
    if policy.inclusive:
        if policy.mode == "fraction":
            budget = kept_share(budget, policy)
        elif whole > 0:
            budget = kept_share(budget / whole, policy) * whole
    if policy.mode == "fraction" and policy.by == "tests":
        wanted = math.ceil(budget * len(order) - 1e-9)
        keep[free[: max(0, wanted - int(forced.sum()))]] = True
        return keep
    seconds = budget if policy.mode == "time" else budget * whole
    left = seconds - float(duration[forced].sum())
    keep[free[np.cumsum(duration[free]) <= left + 1e-9]] = True
    return keep


def kept_share(budget: float, policy: Policy) -> float:
    """The share a build's budget keeps (`trimmed_share`) once the
    exploration sample, the periodic full runs and the recent builds'
    expansions are paid out of it; the expansions never take more than
    EXPANSION_MOST_PAID of what it would keep without them: a repository
    whose builds break broadly again and again runs over its budget rather
    than keep next to nothing."""
    without = trimmed_share(budget, policy.exploration_rate, policy.full_run_every)
    paid = trimmed_share(budget, policy.dropped_run_share, policy.full_run_every)
    return max(paid, without * (1.0 - EXPANSION_MOST_PAID))


def trimmed_share(budget: float, exploration_rate: float, full_run_every: int) -> float:
    """The share a build's budget may keep so that, with the exploration
    sample and the periodic full runs paid out of it, the share run over a
    window of `full_run_every` builds is `budget` on average.

    One build in `full_run_every` runs everything (share 1); the others run
    the kept share s and `exploration_rate` e of the rest:
    (1 - 1/F) (s + e (1 - s)) + 1/F = budget, so
    s = ((budget - 1/F) / (1 - 1/F) - e) / (1 - e), 0 when the full runs
    and the exploration alone spend the budget (they still happen: they are
    what keeps the model and the live estimate honest). Forced tests (new,
    recently failed, their file changed) are paid out of s as before.
    A full run a change triggers (`full_run_paths`) is not foreseen here."""
    if not 0 < budget < 1:
        return budget
    share = budget
    if full_run_every > 1:
        every = 1.0 / full_run_every
        share = (budget - every) / (1.0 - every)
    elif full_run_every == 1:
        return budget  # every build runs everything: nothing to trim
    if exploration_rate < 1:
        share = (share - exploration_rate) / (1.0 - exploration_rate)
    return min(budget, max(0.0, share))


def confidence_target(target: float, scale: float) -> float:
    """The share of its own expected failures a `confidence` plan keeps at
    `confidence` `target` and `Policy.confidence_scale` `scale`:
    1 - (1 - target) * scale, never below half of the target, at most 1."""
    return min(1.0, max(target / 2.0, 1.0 - (1.0 - target) * scale))


def confidence_prefix(
    target: float,
    exploration_rate: float,
    *,
    order: IndexArray,
    forced: BoolArray,
    probability: FloatArray,
) -> BoolArray:
    """`confidence` mode: the shortest prefix of the unforced tests, in
    priority order, with which the expected share of the failures kept
    reaches `target`. Kept in expectation: the forced tests' probabilities,
    the prefix's, and the exploration sample's, `exploration_rate` of what
    the prefix leaves (those tests run too, and their failures are caught):
    forced + prefix + rate * (rest) >= target * total, so the prefix needs
    (target * total - forced - rate * (total - forced)) / (1 - rate). The
    probabilities are calibrated (scheduler.risk.calibration), so this is
    the share of failures the plan keeps on average, at the fewest tests
    the order allows. No probability at all (a sum of 0): nothing to go by,
    so every test runs (fails open) unless the target is 0."""
    keep = np.zeros(len(order), dtype=bool)
    free = order[~forced[order]]
    total = float(probability.sum())
    if total <= 0:
        keep[free] = target > 0
        return keep
    held = float(probability[forced].sum())
    if exploration_rate >= 1:
        return keep  # every dropped test runs anyway
    needed = (target * total - held - exploration_rate * (total - held)) / (1 - exploration_rate)
    before = np.cumsum(probability[free]) - probability[free]  # mass kept before each
    keep[free[before < needed - 1e-12 * total]] = True
    return keep


def exploration_draws(seed: int, draw: IndexArray) -> FloatArray:
    """Each test's uniform draw from the plan's stream (seeded by the plan id)."""
    size = int(draw.max()) + 1 if len(draw) else 0
    stream = np.random.default_rng(seed).random(size)
    return stream[draw]


def decide(candidates: Candidates, policy: Policy, context: Context) -> Decision:
    """Apply `policy` to the candidates: see the module's docstring."""
    policy = policy.checked()
    n = len(candidates)
    probability = np.nan_to_num(candidates.probability, nan=0.0)
    duration = expected_durations(candidates.duration)
    # Ties: new tests first (as the plan's ranks put them), then the rank.
    rank = np.where(candidates.is_new, -1, candidates.draw)
    first = candidates.is_new if candidates.new_first else None
    if per_second(policy):
        order = priority_order(
            probability, duration, rank, overhead_of(policy, duration), first=first
        )
    else:
        order = priority_order(probability, None, rank, place=candidates.place, first=first)
    patterns = must_run_patterns(candidates.names, policy.must_run)
    rules = np.full(n, Rule.MODEL.value, dtype=object)
    propensity = np.ones(n, dtype=np.float64)
    reason = full_run_reason(policy, context)
    if reason is not None:
        return Decision(
            order=order,
            selected=np.ones(n, dtype=bool),
            rules=[Rule.FULL_RUN] * n,
            propensity=propensity,
            expected_duration=duration,
            must_run_pattern=patterns,
            full_run_reason=reason,
            policy=policy,
        )
    must = np.fromiter((p is not None for p in patterns), dtype=bool, count=n)
    if candidates.recently_failed is not None and candidates.recent_runs == policy.recent_failures:
        recently = candidates.recently_failed
    else:
        recently = failed_recently(candidates.recent, policy.recent_failures)
    # Lowest precedence first, so that the strongest label is written last.
    for rule, mask in (
        (Rule.RECENTLY_FAILED, recently),
        (Rule.OWN_FILE_CHANGED, candidates.own_file_changed),
        (Rule.NEW, candidates.is_new),
        (Rule.MUST_RUN, must),
    ):
        rules[mask] = rule.value
    forced = must | candidates.is_new | candidates.own_file_changed | recently
    kept = budget_prefix(
        policy, order=order, forced=forced, probability=probability, duration=duration
    )
    selected = forced | kept
    dropped = ~selected
    if dropped.any():
        rate = policy.effective_exploration_rate
        explored = dropped & (exploration_draws(context.seed, candidates.draw) < rate)
        rules[dropped] = Rule.BUDGET.value
        rules[explored] = (
            Rule.EXPLORATION.value if policy.escalation is None else Rule.ESCALATION.value
        )
        propensity[dropped] = rate
        selected = selected | explored
    rules_of = [_RULES[value] for value in rules.tolist()]
    return Decision(
        order=order,
        selected=selected,
        rules=rules_of,
        propensity=propensity,
        expected_duration=duration,
        must_run_pattern=patterns,
        full_run_reason=None,
        policy=policy,
        expand_after=expansion_threshold(policy, selected, rules_of, probability),
    )


# What a failure among counts toward an expansion: the tests the rules and the
# budget selected, but not those that failed lately (their failing again is
# no news) nor the exploration sample (its draw must not decide which builds
# run everything, or its failures would count twice: see `expanded`).
WATCHED_RULES = frozenset({Rule.MODEL, Rule.MUST_RUN, Rule.NEW, Rule.OWN_FILE_CHANGED})
# A build expands when its watched tests fail more often than their
# probabilities make this likely (`expansion_threshold`).
EXPANSION_LEVEL = 0.05
# The most of what a budget keeps that paying for expansions may take (`kept_share`).
EXPANSION_MOST_PAID = 0.5


def watched(selected: BoolArray, rules: Sequence[Rule]) -> BoolArray:
    """The selected tests whose failures count toward an expansion."""
    by_rule: BoolArray = np.fromiter(
        (rule in WATCHED_RULES for rule in rules), dtype=bool, count=len(rules)
    )
    return selected & by_rule


def expansion_threshold(
    policy: Policy, selected: BoolArray, rules: Sequence[Rule], probability: FloatArray
) -> int | None:
    """How many failures among the watched tests expand the build: the
    fewest that are less likely than EXPANSION_LEVEL, the count taken as
    Poisson with as its mean the sum of their probabilities, or what the
    repository's recent builds saw fail among as many watched tests
    (`watched_failure_rate`), whichever is more (probabilities that
    under-predict must not make ordinary failures look like a burst); at
    least `expand_after`. None when nothing was dropped or expansion is off."""
    if policy.expand_after <= 0 or selected.all():
        return None
    watch = watched(selected, rules)
    watched_count = int(watch.sum())
    mean = max(float(probability[watch].sum()), policy.watched_failure_rate * watched_count)
    left = 1.0  # P(X >= count)
    for count in range(watched_count + 1):
        if left < EXPANSION_LEVEL:
            return max(policy.expand_after, count)
        if mean > 0:
            left -= math.exp(count * math.log(mean) - mean - math.lgamma(count + 1))
        else:
            left = 0.0
    return None  # more failures than watched tests: never


def expanded(decision: Decision, failed: BoolArray) -> Decision:
    """The decision once its tests ran and `failed` of them failed: when
    the decision's `expand_after` or more of the watched tests failed
    (tests that had passed, failing together more than their probabilities
    make likely: the change broke more than the plan foresaw), every test
    the budget dropped runs as well, the exploration sample's included,
    each with a propensity of 1 (rule `expansion`); otherwise the same
    decision.

    Unbiased for what learns from the outcomes: whether a build expands
    depends on the watched tests only, never on the exploration draw, so an
    expanded build's rows count once each (every test ran) and another
    build's exploration rows 1/p times, as before."""
    after = decision.expand_after
    if after is None or decision.full_run or decision.selected.all():
        return decision
    failing = watched(decision.selected, decision.rules) & np.asarray(failed, dtype=bool)
    if int(failing.sum()) < after:
        return decision
    drawn = np.fromiter(
        (rule in (Rule.EXPLORATION, Rule.ESCALATION) for rule in decision.rules),
        dtype=bool,
        count=len(decision.rules),
    )
    ran = ~decision.selected | drawn
    rules = [
        Rule.EXPANSION if flag else rule
        for rule, flag in zip(decision.rules, ran.tolist(), strict=True)
    ]
    propensity = decision.propensity.copy()
    propensity[ran] = 1.0
    return replace(
        decision, selected=np.ones(len(rules), dtype=bool), rules=rules, propensity=propensity
    )


# --- shards ---------------------------------------------------------------------


def shards(run_order: IndexArray, duration: FloatArray, count: int) -> list[IndexArray]:
    """Split the tests of `run_order` into `count` shards balanced by
    expected duration; each shard keeps the run order.

    Longest processing time first: the longest test goes to the least loaded
    shard (ties: the lower shard). Greedy assignment to the least loaded
    shard bounds the spread: the fullest shard was the emptiest before its
    last test came, so no two shards differ by more than the longest test.
    Deterministic: ties in duration go by run order."""
    if count < 1:
        raise PolicyError("shard count must be at least 1")
    by_length = np.lexsort((np.arange(len(run_order)), -duration[run_order]))
    loads: list[tuple[float, int]] = [(0.0, shard) for shard in range(count)]
    owner = np.empty(len(run_order), dtype=np.intp)
    for slot in by_length.tolist():
        load, shard = heapq.heappop(loads)
        owner[slot] = shard
        heapq.heappush(loads, (load + float(duration[run_order[slot]]), shard))
    return [run_order[owner == shard] for shard in range(count)]


# --- reasons --------------------------------------------------------------------


def rule_sentence(decision: Decision, index: int) -> str:
    """Why the policy selected or dropped a test, as a sentence fragment."""
    rule = decision.rules[index]
    policy = decision.policy
    if rule is Rule.FULL_RUN:
        return f"Full run: {decision.full_run_reason}"
    if rule is Rule.MUST_RUN:
        return f"Must run (matches {decision.must_run_pattern[index]})"
    if rule is Rule.NEW:
        return "New to riskrank: no history to predict from"
    if rule is Rule.OWN_FILE_CHANGED:
        return "Its own file changed"
    if rule is Rule.RECENTLY_FAILED:
        runs = policy.recent_failures
        return "Failed in its last run" if runs == 1 else f"Failed in one of its last {runs} runs"
    if rule is Rule.EXPLORATION:
        return (
            f"Over the budget, picked for the exploration sample "
            f"({policy.exploration_rate:.0%} of the dropped tests run anyway)"
        )
    if rule is Rule.ESCALATION:
        return f"Over the budget, run while trimming is escalated ({policy.escalation})"
    if rule is Rule.EXPANSION:
        return (
            f"Over the budget, run because {decision.expand_after} or more tests that had "
            "passed failed in this build"
        )
    if rule is Rule.BUDGET:
        return "Over the budget"
    return "Within the budget" if policy.mode != "order" else "Ordered by risk"


def reason(decision: Decision, index: int, scored: str | None) -> str:
    """The rule's sentence and, for a scored test, why it got its score."""
    return _joined(decision.rules[index], rule_sentence(decision, index), scored)


# What a rule's sentence already says, as the phrases of a scored reason
# (risk.explain) say it: left out of the scored part after that sentence.
SAID_BY_RULE: dict[Rule, tuple[str, ...]] = {
    Rule.OWN_FILE_CHANGED: ("its own file changed",),
    Rule.RECENTLY_FAILED: ("failed in its last run",),
    Rule.NEW: ("is new to riskrank", "not in this commit's scores"),
}


def unsaid(rule: Rule, scored: str) -> str:
    """`scored` (phrases joined by "; ", the first capitalised) without the
    phrases the rule's sentence already says: "" when none is left."""
    said = SAID_BY_RULE.get(rule)
    if not said or not any(phrase in scored.lower() for phrase in said):
        return scored
    phrases = scored.split("; ")
    kept = [phrase for phrase in phrases if phrase.lower() not in said]
    if len(kept) == len(phrases):
        return scored
    if not kept:
        return ""
    first = kept[0]
    if phrases.index(first) > 0 and " changed and failed together with it " not in first:
        # It was not first, so not capitalised; a phrase naming a path keeps its case.
        first = first[0].upper() + first[1:]
    return "; ".join([first, *kept[1:]])


def _joined(rule: Rule, sentence: str, scored: str | None) -> str:
    if rule is Rule.MODEL and scored:
        return scored
    if scored:
        scored = unsaid(rule, scored)
    if not scored:
        return sentence
    return f"{sentence}. {scored}"


def reasons(decision: Decision, indexes: Sequence[int], scored: Sequence[str | None]) -> list[str]:
    """`reason` for each of `indexes` (with `scored` indexed alike), each
    rule's sentence made once: a plan lists ten thousand."""
    sentences: dict[Rule, str] = {}
    result = []
    for index in indexes:
        rule = decision.rules[index]
        if rule is Rule.MUST_RUN:
            sentence = rule_sentence(decision, index)
        else:
            sentence = sentences.get(rule) or sentences.setdefault(
                rule, rule_sentence(decision, index)
            )
        result.append(_joined(rule, sentence, scored[index]))
    return result
