"""How fast `riskrank import` ingests a real CI history, on SQLite and on
PostgreSQL (target: dune-total's 229,213 executions in under 2 minutes each).

    .venv/bin/python benchmarks/import_history.py [FILE] [--postgres URL] [--backends …]

FILE defaults to ../shared/datasets/dune-common/dune-total/features-engineered.csv.gz.
Each backend gets a fresh database (a temporary SQLite file; a temporary
database on the PostgreSQL server), migrated, then the whole history is
imported through the same code as the CLI. Prints rows per second."""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from pgtemp import temporary_database

from scheduler import migrate
from scheduler.db import Database
from scheduler.ingest.history import read_history
from scheduler.models import Provider
from scheduler.services import history, repos

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT.parent / "shared/datasets/dune-common/dune-total/features-engineered.csv.gz"


def run(url: str, file: Path) -> tuple[int, float]:
    migrate.upgrade(url)
    database = Database.from_url(url)
    try:
        with database.session() as session:
            repository_id = repos.add_repository(
                session, provider=Provider.GENERIC, full_name="bench/history"
            ).id
        started = time.perf_counter()
        reports = list(read_history(file))
        tally = history.import_history(database, repository_id=repository_id, reports=reports)
        return tally.executions, time.perf_counter() - started
    finally:
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    if not args.file.exists():
        raise SystemExit(f"no history at {args.file}: pass the path of one")

    print(f"history: {args.file}")
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                rows, seconds = run(f"sqlite:///{tmp}/bench.db", args.file)
        else:
            with temporary_database(args.postgres) as temp:
                rows, seconds = run(temp.url, args.file)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{backend:>10}: {rows:,} executions in {seconds:.1f} s = {rows / seconds:,.0f} rows/s"
            f" (peak RSS of this process so far {peak:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
