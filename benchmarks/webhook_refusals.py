"""Whether a webhook's answer time tells a registered repository from an
unknown one: the service call that checks a delivery (find the repository,
verify the signature or token, refuse) timed for each kind of refusal, on
PostgreSQL, per provider.

    .venv/bin/python benchmarks/webhook_refusals.py [--postgres URL] [--runs N]

Kinds, interleaved round by round so that drift in the machine's load hits
them alike: `wrong` (a registered repository, a wrong secret), `unknown`
(no such repository), `no-secret` (registered, no secret). Each call runs in
its own session, rolled back (nothing is stored: every one is refused). The
median and the 90th percentile in microseconds are printed per kind; the
verdict is the largest gap between medians, beside the spread within one
kind (p90 - median)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pgtemp import temporary_database

# The deliveries are the security tests' own (tests/api/security_data.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery import Celery
from sqlalchemy.orm import Session

from scheduler.db import Database
from scheduler.errors import ClientError
from scheduler.models import Provider
from scheduler.services import repos, webhooks
from tests.api.security_data import webhook

SECRET = "the-real-webhook-secret-0123456789"  # noqa: S105 (a benchmark's own)
WRONG = "not-the-webhook-secret-9876543210"
NAMES = {"github": "acme/app", "gitlab": "group/app", "generic": "acme/gen"}


def _call(provider: str, name: str, secret: str) -> Callable[[Session, Celery], object]:
    _, body, headers = webhook(provider, name, secret)
    if provider == "github":
        return lambda session, celery: webhooks.receive_github(
            session,
            celery,
            event=headers["X-GitHub-Event"],
            delivery_id=headers["X-GitHub-Delivery"],
            signature=headers["X-Hub-Signature-256"],
            content_type="application/json",
            body=body,
        )
    if provider == "gitlab":
        return lambda session, celery: webhooks.receive_gitlab(
            session,
            celery,
            event=headers["X-Gitlab-Event"],
            token=headers["X-Gitlab-Token"],
            idempotency_key=headers["Idempotency-Key"],
            event_uuid=None,
            body=body,
        )
    return lambda session, celery: webhooks.receive_generic(
        session,
        celery,
        signature=headers["X-Riskrank-Signature-256"],
        delivery_id=None,
        body=body,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=2000)
    arguments = parser.parse_args()
    celery = Celery(broker="memory://")
    with temporary_database(arguments.postgres) as temporary:
        database = Database.from_url(temporary.url)
        with database.session() as session:
            for provider, name in NAMES.items():
                repos.add_repository(
                    session, provider=Provider(provider), full_name=name, webhook_secret=SECRET
                )
                repos.add_repository(
                    session, provider=Provider(provider), full_name=f"{name}-bare"
                ).webhook_secret = None
            for provider in ("gitlab",):
                bare = repos.find_repository(
                    session, provider=Provider(provider), full_name=f"{NAMES[provider]}-bare"
                )
                assert bare is not None
                bare.webhook_secret_hash = None
        print(f"{arguments.runs} refusals of each kind per provider, PostgreSQL, medians in µs")
        for provider, name in NAMES.items():
            kinds = {
                "wrong": _call(provider, name, WRONG),
                "unknown": _call(provider, "nobody/nothing", WRONG),
                "no-secret": _call(provider, f"{name}-bare", WRONG),
            }
            times: dict[str, list[float]] = {kind: [] for kind in kinds}
            for round_ in range(arguments.runs + 50):
                for kind, call in kinds.items():
                    session = database.sessions()
                    started = time.perf_counter()
                    status = 202
                    try:
                        call(session, celery)
                    except ClientError as refused:
                        status = refused.status_code
                    finally:
                        elapsed = time.perf_counter() - started
                        session.rollback()
                        session.close()
                    if status != 401:
                        raise AssertionError(f"{provider} {kind} answered {status}, not 401")
                    if round_ >= 50:  # warm-up
                        times[kind].append(elapsed * 1e6)
            medians = {kind: statistics.median(values) for kind, values in times.items()}
            spread = {
                kind: statistics.quantiles(values, n=10)[-1] - medians[kind]
                for kind, values in times.items()
            }
            shown = "  ".join(
                f"{kind} {medians[kind]:7.1f} (p90 +{spread[kind]:.1f})" for kind in kinds
            )
            gap = max(medians.values()) - min(medians.values())
            print(f"{provider:8} {shown}  largest gap between medians {gap:.1f}")
        database.dispose()


if __name__ == "__main__":
    main()
