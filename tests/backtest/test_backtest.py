"""The backtest end to end: a hand-written history through `riskrank
backtest` (the installed command, on a temporary SQLite file), with figures
worked out by hand; reproducibility and the closed loop on a slice of
dune-total."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from scheduler.backtest import report as html_report
from scheduler.backtest import summary
from scheduler.backtest.runner import (
    ORIGINAL,
    RISKRANK,
    BacktestConfig,
    BacktestError,
    run_backtest,
)
from scheduler.db import Database
from scheduler.evaluation import metrics
from scheduler.ingest.history import read_history
from scheduler.models import RiskModel, SuiteRun
from scheduler.planning.policy import Policy
from tests.e2e.conftest import clean_env
from tests.test_cli_outcomes import one_line, riskrank

# t3 fails from build 2 on; t5 appears in build 5 and fails. Equal durations,
# no changed files, no model (no retraining): the heuristic orders the tests
# (t3 failed last time, t5 is new, the others never failed).
BUILDS = [
    {"t1": "passed", "t2": "passed", "t3": "passed", "t4": "passed"},
    {"t1": "passed", "t2": "passed", "t3": "failed", "t4": "passed"},
    {"t1": "passed", "t2": "passed", "t3": "failed", "t4": "passed"},
    {"t1": "passed", "t2": "passed", "t3": "failed", "t4": "passed"},
    {"t1": "passed", "t2": "passed", "t3": "failed", "t4": "passed", "t5": "failed"},
]


def write_history(path: Path) -> Path:
    lines = [
        {
            "build": f"b{number}",
            "commit": f"{number:040x}",
            "time": f"2024-01-0{number}T12:00:00+00:00",
            "branch": "main",
            "changed_files": [],
            "results": [
                {"test": test, "outcome": outcome, "duration": 1.0}
                for test, outcome in outcomes.items()
            ],
        }
        for number, outcomes in enumerate(BUILDS, start=1)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_backtest_command_by_hand(tmp_path: Path) -> None:
    history = write_history(tmp_path / "history.jsonl")
    ran = riskrank(
        "backtest",
        str(history),
        "--warmup",
        "2",
        "--retrain-every",
        "0",
        "--json-out",
        "out.json",
        "--orderings",
        "orders.jsonl",
        "--report",
        "report.html",
        env=clean_env(),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.explain()
    assert "3 of 5 builds evaluated" in one_line(ran.stdout)
    assert (
        "riskrank rows: no model: the heuristic served all 3 scored builds; "
        "no training (--retrain-every 0)." in one_line(ran.stdout)
    )
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["dataset"]["evaluated_builds"] == 3
    assert document["dataset"]["failing_builds"] == {"all": 3, "changes": 1}
    assert document["parameters"]["warmup"] == 2
    assert document["dataset"]["format"] == "jsonl"
    assert document["heuristic_builds"] == 3
    assert document["trainings"] == []
    assert document["seconds"] > 0

    apfd = document["figures"]["all"][RISKRANK]["apfd"]
    # builds 3 and 4: t3 first of 4 (1 - 1/4 + 1/8); build 5: t3 then t5 of 5
    # (1 - 3/10 + 1/10)
    assert apfd["mean"] == pytest.approx((0.875 + 0.875 + 0.8) / 3)
    assert apfd["builds"] == 3
    original = document["figures"]["all"][ORIGINAL]["apfd"]
    # t3 third of 4; then t3 and t5 at 3 and 5 of 5 (1 - 8/10 + 1/10)
    assert original["mean"] == pytest.approx((0.375 + 0.375 + 0.3) / 3)
    changes = document["figures"]["changes"][RISKRANK]
    # only t5 in build 5 is a status change: second of five
    assert changes["apfd"]["mean"] == pytest.approx(1 - 2 / 5 + 1 / 10)
    assert changes["apfd"]["mean_all"] == pytest.approx((0.7 + 1 + 1) / 3)
    assert changes["first_failure"]["mean"] == 2.0
    # t5, new in build 5, runs first: only "new first" finds it second.
    assert document["strongest_baseline"]["all"]["apfd"] == "new first, then recently failed"

    orders = [json.loads(line) for line in (tmp_path / "orders.jsonl").read_text().splitlines()]
    assert [o["build"] for o in orders] == ["b3", "b4", "b5"]
    assert orders[2]["order"][:2] == ["t3", "t5"]
    assert sorted(orders[2]["order"]) == ["t1", "t2", "t3", "t4", "t5"]
    assert orders[2]["selected"] == orders[2]["order"]  # mode order: everything runs
    # Anyone can recompute the figures from the orderings and the history.
    by_build = {f"b{number}": outcomes for number, outcomes in enumerate(BUILDS, start=1)}
    recomputed = [
        metrics.apfd([by_build[o["build"]][test] == "failed" for test in o["order"]])
        for o in orders
    ]
    assert sum(recomputed) / len(recomputed) == pytest.approx(apfd["mean"])

    page = (tmp_path / "report.html").read_text()
    assert "the backtest took" in page
    assert "<p>No retraining (--retrain-every 0).</p>" in page
    images = page.split('src="data:image/png;base64,')[1:]
    # recall, APFD, the calibration and the paired comparison; no
    # retraining, no learning curve
    assert len(images) == 4
    assert "<h2>Calibration</h2>" in page
    assert "<h2>Learning curve</h2>" not in page
    assert "<h2>Against the strongest simple ordering</h2>" in page
    assert "scored: every build after the warm-up (builds b3 to b5, 3 of 3" in page
    assert base64.b64decode(images[0].split('"')[0]).startswith(b"\x89PNG")


def test_refusals(tmp_path: Path) -> None:
    history = write_history(tmp_path / "history.jsonl")
    reports = list(read_history(history))
    with pytest.raises(BacktestError, match="leaves no build"):
        run_backtest(reports, BacktestConfig(warmup=5))
    with pytest.raises(BacktestError, match="needs a budget"):
        run_backtest(reports, BacktestConfig(policy=Policy(mode="fraction")))


def dune_slice(shared_dir: Path, builds: int) -> list:  # type: ignore[type-arg]
    path = shared_dir / "datasets/dune-common/dune-total/features-engineered.csv.gz"
    with gzip.open(path, "rt") as stream:
        head = [next(stream)]
        for line in stream:
            if int(line.split(";")[2]) > builds:
                break
            head.append(line)
    return head


def test_dune_slice_reproducible_and_closed_loop(shared_dir: Path, tmp_path: Path) -> None:
    sliced = tmp_path / "dune.csv"
    sliced.write_text("".join(dune_slice(shared_dir, 160)), encoding="utf-8")
    reports = list(read_history(sliced, "retecs"))
    trimmed = Policy(mode="fraction", budget=0.2)

    def figures(config: BacktestConfig) -> tuple[dict, object]:  # type: ignore[type-arg]
        result = run_backtest(reports, config)
        document = summary.to_json(result, {"name": "dune slice"})
        stable = {key: document[key] for key in ("figures", "selection", "learning_curve")}
        for point in stable["learning_curve"]:
            point.pop("seconds")
        return stable, result

    open_config = BacktestConfig(warmup=40, retrain_every=40, policy=trimmed)
    first, open_result = figures(open_config)
    again, _ = figures(open_config)
    assert first == again  # the same command twice: the same figures
    assert len(open_result.trainings) == 3
    assert open_result.records[0].index == 40
    assert len(open_result.records) == 120
    # No training was promoted there: every build the heuristic served also
    # carries what the newest refused model would have served in its place
    # (summary.by_scorer measures their calibration apart).
    assert not any(t.promoted for t in open_result.trainings)
    assert [r.unserved_version for r in open_result.records] == [
        t.version for t in open_result.trainings for _ in range(40)
    ]
    for built in open_result.records:
        assert built.unserved_probabilities is not None
        assert len(built.unserved_probabilities) == len(built.names)
        assert ((built.unserved_probabilities >= 0) & (built.unserved_probabilities <= 1)).all()
    unserved = summary.to_json(open_result, {"name": "dune slice"})["calibration"]["by_scorer"]
    assert unserved[summary.UNSERVED]["builds"] == 120
    assert unserved[summary.UNSERVED]["versions"] == [1, 2, 3]

    closed, closed_result = figures(
        BacktestConfig(warmup=40, retrain_every=40, policy=trimmed, closed_loop=True)
    )
    # The closed loop learns only what the plans ran: fewer executions
    # ingested, and the same builds evaluated.
    assert closed_result.executions < open_result.executions
    assert [r.build for r in closed_result.records] == [r.build for r in open_result.records]
    # Exactly: every result of the warm-up, then those of the selected tests
    # (reruns of a test within a build are executions too).
    warm = sum(len(report.results) for report in reports[:40])
    seen = 0
    for result, report in zip(closed_result.records, reports[40:], strict=True):
        chosen = {name for name, keep in zip(result.names, result.selected, strict=True) if keep}
        seen += sum(1 for case in report.results if case.test in chosen)
    assert closed_result.executions == warm + seen
    assert closed["figures"] != first["figures"]
    # The refused models are scored in the closed loop too (their maps
    # refreshed on the tests the plans ran, as a serving model's would be).
    shadow = summary.to_json(closed_result, {"name": "dune slice"})["calibration"]["by_scorer"]
    assert shadow[summary.UNSERVED]["builds"] == sum(
        1 for r in closed_result.records if r.model_version is None
    )
    # The closed loop's trainings weigh the rows of the exploration sample 1/p,
    # as production reads them from the plans' records; the open loop ran
    # every test (no plan drew any).
    assert [t.explored_rows for t in open_result.trainings] == [0, 0, 0]
    drawn = sum((r.selected_by or {})["exploration"] for r in closed_result.records[:40])
    assert drawn > 0
    assert closed_result.trainings[0].explored_rows == 0  # the warm-up's history only
    assert closed_result.trainings[1].explored_rows == drawn
    # A plan keeps a fifth of the tests plus the forced and explored ones.
    assert 0.2 <= first["selection"]["tests_share"] < 1.0
    # Every evaluated build is of one kind, and the report tells them apart.
    document = summary.to_json(closed_result, {"name": "dune slice"})
    kinds = document["calibration"]["by_build"]
    assert sum(part["builds"] for part in kinds.values()) == len(closed_result.records)
    assert kinds["trimmed"]["dropped"] <= kinds["trimmed"]["failures"]
    assert sum(part["failures"] for part in kinds.values()) == sum(
        int(r.failed.sum()) for r in closed_result.records
    )
    page = html_report.render(closed_result, document)
    assert "<th>what the plan did</th>" in page
    assert f"<tr><th>trimmed</th><td>{kinds['trimmed']['builds']}</td>" in page


def test_a_given_database_gives_the_same_figures(
    database: Database, db_url: str, shared_dir: Path, tmp_path: Path
) -> None:
    """--database URL (SQLite or PostgreSQL, already holding the schema)
    replays into that database, with the figures of the temporary one."""
    sliced = tmp_path / "dune.csv"
    sliced.write_text("".join(dune_slice(shared_dir, 90)), encoding="utf-8")
    reports = list(read_history(sliced, "retecs"))
    config = BacktestConfig(warmup=30, retrain_every=20)
    given = run_backtest(reports, replace(config, database_url=db_url))
    temporary = run_backtest(reports, config)
    assert summary.figures(given) == summary.figures(temporary)
    assert [t.version for t in given.trainings] == [1, 2, 3]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(RiskModel)) == 3
        assert session.scalar(select(func.count()).select_from(SuiteRun)) == 90
        # The open loop refreshes the heuristic's map every 20 evaluated
        # builds, as production's plan evaluation does; the last refresh
        # (after the 60th) is kept on the newest training, from all 60.
        newest = session.scalar(select(RiskModel).order_by(RiskModel.version.desc()).limit(1))
        assert newest is not None
        assert newest.metrics["calibration_refreshed_from"] == "the outcomes of 60 plans"


def test_jobs_apart_order_the_tests_of_each_job_by_its_own_history(tmp_path: Path) -> None:
    """t3 fails on mac from the second build on and passes on linux. Kept
    per job, the mac t3 is the one recently failed test of six, first;
    merged, t3 is one test of three, also first."""
    lines = [
        {
            "build": f"b{number}",
            "commit": f"{number:040x}",
            "job": job,
            "results": [
                {"test": test, "outcome": "failed" if failing else "passed", "duration": 1.0}
                for test in ("t1", "t2", "t3")
                for failing in [test == "t3" and job == "mac" and number > 1]
            ],
        }
        for number in range(1, 5)
        for job in ("linux", "mac")
    ]
    history = tmp_path / "jobs.jsonl"
    history.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    reports = list(read_history(history))

    def first_of(config: BacktestConfig) -> tuple[float, list[str]]:
        result = run_backtest(reports, config)
        document = summary.to_json(result, {"name": "jobs"})
        assert document["parameters"]["jobs_apart"] is config.jobs_apart
        first = [record.names[int(record.orders[RISKRANK][0])] for record in result.records]
        return document["figures"]["all"][RISKRANK]["apfd"]["mean"], first

    merged = BacktestConfig(warmup=2, retrain_every=0)
    # one failing test first of n: 1 - 1/n + 1/(2n)
    assert first_of(merged) == (pytest.approx(1 - 1 / 3 + 1 / 6), ["t3", "t3"])
    mac = "t3  [job: mac]"
    assert first_of(replace(merged, jobs_apart=True)) == (
        pytest.approx(1 - 1 / 6 + 1 / 12),
        [mac, mac],
    )
