"""Plans CI can follow: the policy applied to a commit's stored scores.

`plan_for` / `plan_answer` never fail a CI run for a repository riskrank
knows. An unknown commit is created and scored on the spot; a known commit
the worker has not scored yet is waited for (up to `wait_seconds`) and then
scored inline; any error answers the whole collected suite, in the
heuristic order when the statistics can still be read, with status
`fallback` and a message.

- `params`: the request and the policy it makes (400 for bad parameters).
- `lookup`: the commit's plan, scored on the spot when need be.
- `items`: the plan's payload (written by the worker) and the statistics as of now.
- `answer`: the answer's JSON text, joined from the payload's pieces.
- `decision`: recording what the policy decided, one row per new policy.
- `service`: the above, in order; `fallback`: everything runs.
"""

from scheduler.planning import policy as policies
from scheduler.services.plans.answer import Answer
from scheduler.services.plans.decision import PendingDecision, applied_policy, write_decision
from scheduler.services.plans.fallback import fallback
from scheduler.services.plans.items import NEW_TEST_PROBABILITY, Covered, Items, cover
from scheduler.services.plans.lookup import Found, find, scored
from scheduler.services.plans.params import (
    SETTING_TYPES,
    PlanDefaults,
    PlanParameterError,
    PlanRequest,
    RepositoryRef,
    check_sha,
    policy_of,
    setting,
    setting_problem,
)
from scheduler.services.plans.service import plan_answer, plan_for, serve

__all__ = [
    "NEW_TEST_PROBABILITY",
    "SETTING_TYPES",
    "Answer",
    "Covered",
    "Found",
    "Items",
    "PendingDecision",
    "PlanDefaults",
    "PlanParameterError",
    "PlanRequest",
    "RepositoryRef",
    "applied_policy",
    "check_sha",
    "cover",
    "fallback",
    "find",
    "plan_answer",
    "plan_for",
    "policies",
    "policy_of",
    "scored",
    "serve",
    "setting",
    "setting_problem",
    "write_decision",
]
