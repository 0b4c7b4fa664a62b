"""A repository's policy settings (repositories.settings), as an operator
changes them: checked here, so that a typo is refused at the command line
instead of being logged and ignored when CI asks for a plan."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from scheduler.providers import Provider
from scheduler.services import plans, repos


class SettingsError(ValueError):
    """A setting riskrank would not be able to use; the message says why."""


def parse_value(text: str) -> Any:
    """A value as given on a command line: JSON when it reads as JSON (0.3,
    true, ["tests/smoke/*"]), else the text itself (fraction)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise SettingsError(f"{text!r} is not KEY=VALUE")
    return key.strip(), parse_value(value.strip())


def _check_types(settings: Mapping[str, Any]) -> None:
    for key, value in settings.items():
        if key not in plans.SETTING_TYPES:
            known = ", ".join(sorted(plans.SETTING_TYPES))
            raise SettingsError(f"unknown setting {key!r}; the settings are {known}")
        problem = plans.setting_problem(key, value)
        if problem is not None:
            raise SettingsError(problem)
        if key in _SHARES and isinstance(value, int | float) and not 0 <= value <= 1:
            raise SettingsError(f"{key} is a share from 0 to 1 (1: never escalate), not {value!r}")


# Settings that are shares of something (scheduler.planning.monitor's ceilings).
_SHARES = frozenset({"miss_ceiling", "calibration_ceiling"})


def effective_policy(settings: Mapping[str, Any], repository_id: int = 0) -> dict[str, Any]:
    """The policy a plan request without parameters gets from these settings
    (the service defaults where a key is not set)."""
    policy, _ = plans.policy_of(
        plans.PlanRequest(),
        plans.RepositoryRef(id=repository_id, default_branch=None, settings=settings),
        plans.PlanDefaults(),
    )
    values = asdict(policy)
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
    }


def update_settings(
    session: Session,
    *,
    full_name: str,
    changes: Mapping[str, Any],
    unset: Sequence[str] = (),
    provider: Provider | None = None,
) -> dict[str, Any]:
    """Set and unset policy settings of a repository; the new settings.
    Refused (SettingsError, nothing changed) when a key is unknown, a value
    has the wrong type, or the result makes no policy (a budget of 2 for
    `fraction`, an unknown mode)."""
    repository = repos.resolve_repository(session, full_name=full_name, provider=provider)
    settings = dict(repository.settings or {})
    for key in unset:
        if key not in plans.SETTING_TYPES:
            raise SettingsError(f"unknown setting {key!r}")
        settings.pop(key, None)
    settings.update(changes)
    _check_types(settings)
    try:
        effective_policy(settings, repository.id)
    except plans.PlanParameterError as error:
        raise SettingsError(str(error)) from None
    repository.settings = settings
    return settings
