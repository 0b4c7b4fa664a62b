"""What a plan request asks for, checked: the policy (the request's
parameters, else the repository's settings, else the service's defaults)
and the shard."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from scheduler import commit_ids
from scheduler.errors import ClientError
from scheduler.planning import policy as policies
from scheduler.planning.policy import Policy, PolicyError, Shard

log = logging.getLogger(__name__)


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
    expand_after: int = policies.DEFAULT_EXPAND_AFTER


@dataclass(frozen=True)
class RepositoryRef:
    id: int
    default_branch: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Why trimming is escalated (Repository.trimming), None: it is not.
    escalation: str | None = None
    # The share of the dropped tests the newest builds' expansions ran
    # (Repository.trimming): paid out of the budget.
    expansion_share: float = 0.0
    # How often the watched tests of its newest plans failed, and the share
    # of the failures over the budget their expansions ran (Repository.trimming).
    watched_failure_rate: float = 0.0
    expansion_catch: float = 0.0
    # `confidence` mode: how far each plan may go past 1 - t so that the
    # newest builds keep t of their expected failures (Repository.trimming).
    confidence_scale: float = 1.0


# --- parameters -----------------------------------------------------------------


def check_sha(sha: str) -> str:
    """The full commit id, in lower case, or a 400 (commit_ids.parse: the
    rule of every path a commit comes in by)."""
    return commit_ids.parse(sha)


# Repository settings keys (repositories.settings JSON) and their types.
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "mode": (str,),
    "budget": (int, float),
    "by": (str,),
    "exploration_rate": (int, float),
    "recent_failures": (int,),
    "full_run_every": (int,),
    "expand_after": (int,),
    "must_run": (list,),
    "full_run_paths": (list,),
    "extra_full_run_paths": (list,),
    "overhead": (int, float),
    # The share of failures trimming may let through before it escalates
    # (scheduler.planning.monitor); not a policy parameter.
    "miss_ceiling": (int, float),
    # The calibration error of the probabilities plans served above which
    # trimming escalates (scheduler.planning.monitor); not a policy parameter.
    "calibration_ceiling": (int, float),
}


_KIND_NAMES: dict[tuple[type, ...], str] = {
    (int, float): "a number",
    (int,): "a whole number",
    (str,): "a string",
    (list,): "a list of globs",
}


def setting_problem(key: str, value: Any) -> str | None:
    """Why a value of the setting `key` (one of SETTING_TYPES) cannot be
    used, None when it can: the one check of a setting's type, for the
    operator who sets it (scheduler.services.repo_settings refuses it) and
    for what reads it (plans, trimming's ceilings: ignored). A bool is no
    number here, though Python counts it as one (JSON's true would be 1)."""
    kinds = SETTING_TYPES[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        return f"{key} must be {_KIND_NAMES.get(kinds, kinds[0].__name__)}, not {value!r}"
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        return f"{key} must be a list of glob strings, not {value!r}"
    return None


def setting(settings: Mapping[str, Any], key: str) -> Any:
    """The repository's setting `key` if it is set and usable, else None;
    a bad one is logged and ignored (an admin's typo must not break CI)."""
    value = settings.get(key)
    if value is None:
        return None
    problem = setting_problem(key, value)
    if problem is not None:
        log.warning("ignoring repository setting: %s", problem)
        return None
    return value


def _repository_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a repository's settings that are set and usable."""
    usable = {key: setting(settings, key) for key in SETTING_TYPES}
    return {key: value for key, value in usable.items() if value is not None}


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
        expand_after=int(stored.get("expand_after", defaults.expand_after)),
    )
    try:
        checked = chosen.checked()
        if repository.escalation is not None and checked.mode != "order":
            checked = replace(checked, escalation=repository.escalation)
        if checked.expand_after:
            checked = replace(
                checked,
                expansion_share=min(max(repository.expansion_share, 0.0), 0.99),
                watched_failure_rate=min(max(repository.watched_failure_rate, 0.0), 1.0),
                expansion_catch=min(max(repository.expansion_catch, 0.0), 0.99),
            )
        if checked.mode == "confidence":
            low, high = policies.CONFIDENCE_SCALES
            checked = replace(
                checked, confidence_scale=min(max(repository.confidence_scale, low), high)
            )
        shard = Shard.parse(request.shard) if request.shard else None
    except PolicyError as error:
        raise PlanParameterError(str(error)) from None
    return checked, shard
