"""The pytest hooks. Without a riskrank URL nothing is registered beyond the
options; with one, the session's reports are collected and uploaded once at
the end, and exactly one `riskrank:` line says how that went. With a mode
(--riskrank-mode), the plan is asked for once the tests are collected, the
items are reordered and trimmed to it, and one more `riskrank:` line says
what was chosen (or why every test runs as collected).

Fail open: no hook here raises, and the only change to the exit status is
that a session whose every test the plan dropped exits 0, not 5, whatever
riskrank (or this plugin) does."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from pytest_riskrank import config as riskrank_config
from pytest_riskrank import planning
from pytest_riskrank.client import BadAnswer, Client, RiskrankError
from pytest_riskrank.results import ResultCollector, test_id

PLUGIN_NAME = "riskrank-session"
PREFIX = "riskrank:"


def _count(number: int) -> str:
    return f"{number} result" if number == 1 else f"{number} results"


def pytest_addoption(parser: pytest.Parser) -> None:
    riskrank_config.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        # An xdist worker: its reports reach the controller, which uploads.
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
        self._plan_id: int | None = None
        self._deselected_all = False
        if settings is not None and settings.plan is not None and _distributed(config):
            self._plan_line = (
                f"{PREFIX} plans are not followed under pytest-xdist "
                "(its workers collect the tests); running every test"
            )

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
        client = Client(settings.url, token, timeout=settings.timeout)
        body = request.to_json(branch=settings.branch, tests=unique)
        try:
            plan = client.fetch_plan(owner, name, commit, body)
            arrangement = planning.arrange(items, ids, plan, sharded=request.shard is not None)
        except (RiskrankError, planning.PlanMismatch) as error:
            return f"{PREFIX} no plan: {error}; running every test", True
        collected = len(items)
        if arrangement.deselected:
            self.config.hook.pytest_deselected(items=arrangement.deselected)
        items[:] = arrangement.run
        self._plan_id = plan.plan_id
        self._deselected_all = not arrangement.run
        line = planning.summary(
            plan,
            running=len(arrangement.run),
            collected=collected,
            shard=request.shard,
            unplanned=arrangement.unplanned,
        )
        return f"{PREFIX} {line}", plan.status == "fallback"

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After the terminal's "collected N items / M deselected".
        self._emit_plan(self.config.pluginmanager.get_plugin("terminalreporter"))

    # --- collecting -----------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._broken is not None:
            return
        try:
            self.collector.add(report)
        except Exception as error:
            self._broken = f"could not read the report of {report.nodeid} ({error!r})"

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
        client = Client(settings.url, token, timeout=settings.timeout)
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


def _distributed(config: pytest.Config) -> bool:
    """Whether pytest-xdist runs the tests in workers: the controller then
    collects nothing, and each worker would have to follow the same plan."""
    dist = getattr(config.option, "dist", "no")
    return bool(dist and dist != "no") and not config.getoption("collectonly", False)


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
