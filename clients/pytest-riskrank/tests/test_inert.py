"""Without a riskrank URL the plugin is loaded but does nothing at all."""

from __future__ import annotations

import re

import pytest
from riskrank_testing import FAILING_SUITE, PASSING_SUITE, StartFake


def _comparable(lines: list[str]) -> list[str]:
    # Timings vary, and pytest's header lists the installed plugins by itself.
    return [re.sub(r" in [0-9.]+s", "", line) for line in lines if not line.startswith("plugins:")]


@pytest.mark.parametrize(
    ("suite", "exit_code"), [(PASSING_SUITE, 0), (FAILING_SUITE, 1)], ids=["passing", "failing"]
)
def test_without_a_url_output_and_outcome_are_untouched(
    pytester: pytest.Pytester,
    fake_riskrank: StartFake,
    monkeypatch: pytest.MonkeyPatch,
    suite: str,
    exit_code: int,
) -> None:
    fake = fake_riskrank()
    # Everything but the URL: still nothing may happen.
    monkeypatch.setenv("RISKRANK_TOKEN", "rr_test_token")
    monkeypatch.setenv("RISKRANK_REPO", "acme/widgets")
    monkeypatch.setenv("GITHUB_SHA", "0" * 40)
    pytester.makepyfile(test_suite=suite)

    with_plugin = pytester.runpytest("-p", "no:cacheprovider")
    without_plugin = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:riskrank")

    assert with_plugin.ret == without_plugin.ret == exit_code
    assert _comparable(with_plugin.outlines) == _comparable(without_plugin.outlines)
    assert with_plugin.errlines == without_plugin.errlines
    assert "riskrank:" not in with_plugin.stdout.str() + with_plugin.stderr.str()
    assert fake.requests == []


def test_the_entry_point_loads_the_plugin_but_registers_no_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pytester.parseconfigure()
    assert config.pluginmanager.has_plugin("riskrank")
    assert config.pluginmanager.get_plugin("riskrank-session") is None

    monkeypatch.setenv("RISKRANK_URL", "http://127.0.0.1:9")
    configured = pytester.parseconfigure()
    assert configured.pluginmanager.get_plugin("riskrank-session") is not None


def test_an_empty_url_counts_as_none(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RISKRANK_URL", "  ")
    pytester.makepyfile(test_suite=PASSING_SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert "riskrank:" not in result.stdout.str() + result.stderr.str()


def test_the_options_are_in_the_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "riskrank: upload test outcomes to a riskrank server:",
            "*--riskrank-url=URL*",
            "*--riskrank-token=TOKEN*",
            "*--riskrank-repo=OWNER/NAME*",
            "*--riskrank-commit=SHA*",
            "*--riskrank-branch=BRANCH*",
            "*--riskrank-run-key=KEY*",
            "*--riskrank-timeout=SECONDS*",
        ]
    )
