"""The pytest hooks. Without a riskrank URL nothing is registered beyond the
options; with one, the session's reports are collected and uploaded once at
the end, and exactly one `riskrank:` line says how that went. With a mode
(--riskrank-mode), the plan is asked for once the tests are collected, the
items are reordered and trimmed to it, and one more `riskrank:` line says
what was chosen (or why every test runs as collected), and the plan's
Markdown summary is appended to $GITHUB_STEP_SUMMARY (RISKRANK_SUMMARY) when
set, as the light client's `plan --summary` writes it. When as many of the
selected tests that had passed fail as the plan's `expand_after` says, the
tests it dropped run after the others (riskrank_client.expansion), and a
`riskrank:` line says so; not under a shard, nor under pytest-xdist. Under pytest-xdist
the controller asks for the plan before its workers start and hands it to
each of them (see "planning under pytest-xdist" below).

Fail open: no hook here raises, and the only change to the exit status is
that a session whose every test the plan dropped exits 0, not 5, whatever
riskrank (or this plugin) does."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

import pytest
from riskrank_client import expansion
from riskrank_client.api import BadAnswer, Client, PlanAnswer, RiskrankError
from riskrank_client.plan import plan_summary, write_summary

from pytest_riskrank import __version__, planning
from pytest_riskrank import config as riskrank_config
from pytest_riskrank.results import ResultCollector, test_id

PLUGIN_NAME = "riskrank-session"
PREFIX = "riskrank:"
# The key of the plan an xdist controller hands its workers (workerinput).
WORKER_PLAN = "riskrank_plan"


def _count(number: int) -> str:
    return f"{number} result" if number == 1 else f"{number} results"


def pytest_addoption(parser: pytest.Parser) -> None:
    riskrank_config.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        # An xdist worker: its reports reach the controller, which uploads;
        # it follows the plan the controller handed it, if any.
        shipped = workerinput.get(WORKER_PLAN)
        if shipped is not None:
            config.pluginmanager.register(WorkerPlan(config, shipped), PLUGIN_NAME)
        return
    try:
        settings = riskrank_config.load(config, os.environ)
    except Exception as error:
        # Only reachable through a bug here: say so once at the end, run the tests.
        broken = f"{type(error).__name__}: {error}"
        try:
            configured = riskrank_config.url_from(config, os.environ) is not None
        except Exception:
            configured = False
        if configured:
            config.pluginmanager.register(RiskrankSession(config, None, broken=broken), PLUGIN_NAME)
        return
    if settings is not None:
        config.pluginmanager.register(RiskrankSession(config, settings), PLUGIN_NAME)


class RiskrankSession:
    """One pytest session's collection and upload of results."""

    def __init__(
        self,
        config: pytest.Config,
        settings: riskrank_config.Settings | None,
        *,
        broken: str | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.collector = ResultCollector()
        self._broken = broken
        self._finished = False
        self._line: str | None = None
        self._line_is_warning = True
        # The plan's line, and what following it changed.
        self._plan_line: str | None = None
        self._plan_line_is_warning = True
        # Why the plan's summary could not be written (a warning), if it could not.
        self._summary_line: str | None = None
        self._plan_id: int | None = None
        self._deselected_all = False
        # Under pytest-xdist: the plan handed to the workers, once asked for.
        self._asked_for_workers = False
        self._workers_plan: PlanAnswer | None = None
        self._shipped: dict[str, Any] | None = None
        self._workers = 0
        # Expanding: the plan followed, the items it dropped, and the watched
        # tests that failed so far (riskrank_client.expansion).
        self._expandable: PlanAnswer | None = None
        self._dropped_items: list[pytest.Item] = []
        self._watched: frozenset[str] = frozenset()
        self._watched_failed: set[str] = set()

    # --- planning -------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # trylast: -k, -m and other plugins have deselected what they will.
        settings = self.settings
        if settings is None or settings.plan is None or self._broken is not None:
            return
        try:
            line, warning = self._follow_plan(settings, settings.plan, items)
        except Exception as error:
            line, warning = (
                f"{PREFIX} internal error while following the plan ({error!r}); running every test",
                True,
            )
        self._plan_line, self._plan_line_is_warning = line, warning

    def _follow_plan(
        self,
        settings: riskrank_config.Settings,
        request: riskrank_config.PlanRequest,
        items: list[pytest.Item],
    ) -> tuple[str | None, bool]:
        """Reorder and trim `items` in place; the line to print, and whether it warns."""
        if not items:
            return None, True
        problems = [*settings.problems, *request.problems]
        token, owner, name, commit = settings.token, settings.owner, settings.name, settings.commit
        if problems or not (token and owner and name and commit):
            return f"{PREFIX} no plan ({'; '.join(problems)}); running every test", True
        ids = [test_id(item.nodeid) for item in items]
        unique = list(dict.fromkeys(ids))
        client = _client(settings, token)
        body = request.to_json(branch=settings.branch, tests=unique)
        try:
            data, plan = client.fetch_plan_json(owner, name, commit, body)
            if plan.run_all:
                arrangement = planning.arrange_all(items, ids, plan)
            else:
                arrangement = planning.arrange(items, ids, plan, sharded=request.shard is not None)
        except (RiskrankError, planning.PlanMismatch) as error:
            return f"{PREFIX} no plan: {error}; running every test", True
        collected = len(items)
        if arrangement.deselected:
            self.config.hook.pytest_deselected(items=arrangement.deselected)
        items[:] = arrangement.run
        self._plan_id = plan.plan_id
        self._deselected_all = not arrangement.run
        if request.shard is None and not plan.run_all and plan.expand_after is not None:
            self._expandable = plan
            self._dropped_items = list(arrangement.deselected)
            self._watched = expansion.watched(plan)
        self._write_summary(settings, data, plan)
        line = planning.summary(
            plan,
            running=len(arrangement.run),
            collected=collected,
            shard=request.shard,
            unplanned=arrangement.unplanned,
        )
        return f"{PREFIX} {line}", plan.status == "fallback" or plan.run_all

    def _write_summary(
        self, settings: riskrank_config.Settings, data: dict[str, Any], plan: PlanAnswer
    ) -> None:
        """Append the plan's Markdown summary for the CI job, where one is
        wanted; a file that cannot be written is a warning line, never a
        failure."""
        path = settings.summary
        if path is None:
            return
        problems: list[str] = []
        try:
            write_summary(path, plan_summary(data, plan), say=problems.append)
        except Exception as error:
            problems.append(f"{PREFIX} could not write the summary to {path} ({error!r})")
        if problems:
            self._summary_line = problems[0]

    # --- planning under pytest-xdist -------------------------------------
    #
    # The controller collects nothing: it asks for the plan of every test
    # riskrank knows (no `tests` list) once, before its workers start, and
    # hands the same plan to each; every worker then arranges the same
    # collection the same way, which xdist requires. When the plan cannot be
    # had, no worker gets one, and every test runs.

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        try:
            shipped = self._plan_for_workers()
        except Exception as error:
            self._workers_plan, self._shipped = None, None  # no worker gets a plan
            self._plan_line = (
                f"{PREFIX} internal error while asking for the plan ({error!r}); running every test"
            )
            self._plan_line_is_warning = True
            return
        if shipped is not None:
            node.workerinput[WORKER_PLAN] = shipped
            self._workers += 1

    def _plan_for_workers(self) -> dict[str, Any] | None:
        """The plan for every worker, as workerinput carries it (asked for once)."""
        if self._asked_for_workers:
            return self._shipped
        self._asked_for_workers = True
        settings = self.settings
        if settings is None or settings.plan is None or self._broken is not None:
            return None
        request = settings.plan
        problems = [*settings.problems, *request.problems]
        token, owner, name, commit = settings.token, settings.owner, settings.name, settings.commit
        if problems or not (token and owner and name and commit):
            self._plan_line = f"{PREFIX} no plan ({'; '.join(problems)}); running every test"
            return None
        client = _client(settings, token)
        branch = settings.branch
        try:
            data, plan = client.fetch_plan_json(
                owner, name, commit, request.to_json(branch=branch, tests=None)
            )
            if plan.run_all and plan.total == 0:
                # riskrank names no test: every worker runs them all. (A full
                # run or a fallback lists the tests riskrank knows; the new
                # ones run in shard 1 anyway, as below, so each shard keeps
                # its part.)
                self._workers_plan = plan
                self._plan_id = plan.plan_id
                self._shipped = planning.shipped_whole_suite(plan)
                self._write_summary(settings, data, plan)
                return self._shipped
            # A shard's answer lists only its own tests; which collected
            # tests riskrank knows (the others are new, and run in shard 1
            # only) takes the whole plan.
            whole = plan
            if request.shard is not None:
                unsharded = replace(request, shard=None).to_json(branch=branch, tests=None)
                whole = client.fetch_plan(owner, name, commit, unsharded)
        except RiskrankError as error:
            self._plan_line = f"{PREFIX} no plan: {error}; running every test"
            return None
        self._workers_plan = plan
        self._plan_id = plan.plan_id
        self._write_summary(settings, data, plan)
        self._shipped = {
            "tests": [[test.test, test.selected] for test in plan.tests],
            "sharded": request.shard is not None,
            "known": [test.test for test in whole.tests] if request.shard is not None else [],
            "new_here": request.shard is None or request.shard.split("/")[0].strip() == "1",
        }
        return self._shipped

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        plan = self._workers_plan
        if plan is None or self._plan_line is not None:
            return  # no plan, or the first worker's collection told already
        request = self.settings.plan if self.settings is not None else None
        line = planning.distributed_summary(
            plan,
            running=len(ids),
            workers=self._workers,
            shard=request.shard if request is not None else None,
        )
        warning = plan.status == "fallback" or plan.run_all
        self._plan_line, self._plan_line_is_warning = f"{PREFIX} {line}", warning
        self._deselected_all = not ids

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After the terminal's "collected N items / M deselected".
        self._emit_plan(self.config.pluginmanager.get_plugin("terminalreporter"))

    # --- collecting -----------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and self._watched:
            name = test_id(report.nodeid)
            if name in self._watched:
                self._watched_failed.add(name)
        if self._broken is not None:
            return
        try:
            self.collector.add(report)
        except Exception as error:
            self._broken = f"could not read the report of {report.nodeid} ({error!r})"

    # --- expanding ------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Any:
        yield
        try:
            self._expand(session)
        except Exception as error:
            _write(
                self.config.pluginmanager.get_plugin("terminalreporter"),
                f"{PREFIX} internal error while running the dropped tests ({error!r})",
                warning=True,
            )

    def _expand(self, session: pytest.Session) -> None:
        """Run the tests the plan dropped, after the others, when enough of
        the watched ones failed; not when the session was told to stop (-x,
        --maxfail)."""
        plan = self._expandable
        if plan is None or not self._dropped_items:
            return
        if not expansion.due(plan, self._watched_failed):
            return
        if session.shouldfail or session.shouldstop:
            return
        extra = self._dropped_items
        self._dropped_items = []
        _write(
            self.config.pluginmanager.get_plugin("terminalreporter"),
            f"{PREFIX} {len(self._watched_failed)} tests that had passed failed, more than "
            f"riskrank foresaw: running the {len(extra)} tests the plan dropped",
            warning=True,
        )
        for index, item in enumerate(extra):
            following = extra[index + 1] if index + 1 < len(extra) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
            if session.shouldfail or session.shouldstop:
                break

    # --- uploading ------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._finished:
            return
        self._finished = True
        if self._deselected_all and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            # The plan dropped every test: a successful run, not a broken collection.
            session.exitstatus = pytest.ExitCode.OK
        try:
            self._line = self._finish(exitstatus)
        except Exception as error:
            self._line = f"{PREFIX} internal error ({error!r}); results not uploaded"
            self._line_is_warning = True

    def _finish(self, exitstatus: int) -> str | None:
        if self.config.getoption("collectonly", False):
            return None
        if self._broken is not None:
            return f"{PREFIX} internal error ({self._broken}); results not uploaded"
        settings = self.settings
        assert settings is not None  # only missing together with _broken
        results = self.collector.results()
        if not results:
            return f"{PREFIX} no test ran, nothing uploaded"
        not_uploaded = f"{_count(len(results))} not uploaded"
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            return f"{PREFIX} the session was interrupted; {not_uploaded}"
        token, owner, name, commit = settings.token, settings.owner, settings.name, settings.commit
        if settings.problems or not (token and owner and name and commit):
            # `problems` names whatever is missing; the second half is for the type checker.
            return f"{PREFIX} {not_uploaded}: {'; '.join(settings.problems)}"
        payload: dict[str, Any] = {
            "commit": commit,
            "branch": settings.branch,
            "run_key": settings.run_key,
            "plan_id": self._plan_id,
            "source": "pytest",
            "results": [result.to_json() for result in results],
        }
        client = _client(settings, token)
        try:
            receipt = client.upload_run(owner, name, payload)
        except BadAnswer as error:
            return f"{PREFIX} {error}; {_count(len(results))} may not have been stored"
        except RiskrankError as error:
            return f"{PREFIX} {error}; {not_uploaded}"
        self._line_is_warning = False
        run = f"run {receipt.run_id}" if receipt.run_id is not None else "no run id"
        if receipt.status == "duplicate":
            return f"{PREFIX} duplicate upload of {_count(len(results))} ignored ({run})"
        return f"{PREFIX} uploaded {_count(len(results))} ({run})"

    # --- telling --------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        self._emit(terminalreporter)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # The terminal summary is skipped on internal errors and without the
        # terminal plugin; the line still has to come out.
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        self._emit(reporter)

    def _emit(self, reporter: pytest.TerminalReporter | None) -> None:
        self._emit_plan(reporter)  # not out yet when nothing was collected here (xdist)
        line, self._line = self._line, None
        _write(reporter, line, warning=self._line_is_warning)

    def _emit_plan(self, reporter: pytest.TerminalReporter | None) -> None:
        line, self._plan_line = self._plan_line, None
        _write(reporter, line, warning=self._plan_line_is_warning)
        line, self._summary_line = self._summary_line, None
        _write(reporter, line, warning=True)


class WorkerPlan:
    """An xdist worker following the plan its controller handed it: the
    same arrangement of the same collection as every other worker. Says
    nothing (the controller tells); on any error it leaves the items as
    collected, as every other worker then does too."""

    def __init__(self, config: pytest.Config, shipped: dict[str, Any]) -> None:
        self.config = config
        self.shipped = shipped

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        try:
            ids = [test_id(item.nodeid) for item in items]
            arrangement = planning.arrange_shipped(items, ids, self.shipped)
        except Exception:
            return  # deterministic: every worker keeps its collection alike
        if arrangement.deselected:
            config.hook.pytest_deselected(items=arrangement.deselected)
        items[:] = arrangement.run


def _client(settings: riskrank_config.Settings, token: str) -> Client:
    return Client(
        settings.url,
        token,
        timeout=settings.timeout,
        user_agent=f"pytest-riskrank/{__version__}",
    )


def _write(reporter: pytest.TerminalReporter | None, line: str | None, *, warning: bool) -> None:
    if line is None:
        return
    try:
        if reporter is not None:
            markup = {"yellow": True} if warning else {"green": True}
            reporter.write_line(line, **markup)
        else:
            sys.stderr.write(line + "\n")
    except Exception:  # noqa: S110  (nowhere left to report to; never fail the run)
        pass
