"""The documentation is current: the generated reference pages (HTTP API from
the OpenAPI document, command line from the CLIs) match what the code says
now, the CI pages show the ready-made recipes as they are in the repository,
and the README's links lead somewhere. `make lint` builds the site itself
with `mkdocs build --strict`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_generated_reference_pages_are_current() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts/docs_reference.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, (
        f"{completed.stdout}{completed.stderr}\nrun: python scripts/docs_reference.py"
    )
    http = (ROOT / "docs/reference/http.md").read_text(encoding="utf-8")
    assert "## `POST /api/v1/repos/{owner}/{name}/plans/{sha}`" in http
    cli = (ROOT / "docs/reference/cli.md").read_text(encoding="utf-8")
    assert "### `riskrank backtest`" in cli
    assert "### `riskrank-client plan`" in cli


def test_the_github_examples_use_the_action_s_inputs() -> None:
    action = yaml.safe_load((ROOT / ".github/actions/riskrank/action.yml").read_text())
    page = (ROOT / "docs/ci/github-actions.md").read_text(encoding="utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    steps = [
        step
        for example in examples
        if "jobs:" in example
        for step in yaml.safe_load(example)["jobs"]["test"]["steps"]
        if "riskrank/.github/actions/riskrank@" in step.get("uses", "")
    ]
    runners = [step["with"]["runner"] for step in steps]
    assert runners == ["pytest", "maven", "jest", "go"]
    for step in steps:
        assert set(step["with"]) <= set(action["inputs"])
        assert {"url", "token", "command"} <= set(step["with"])


def test_the_gitlab_examples_extend_the_template() -> None:
    page = (ROOT / "docs/ci/gitlab-ci.md").read_text(encoding="utf-8")
    examples = [yaml.safe_load(text) for text in re.findall(r"```yaml\n(.*?)```", page, re.S)]
    included = [example for example in examples if "include" in example]
    assert [example["test"]["variables"]["RISKRANK_RUNNER"] for example in included] == [
        "pytest",
        "maven",
        "jest",
        "go",
    ]
    for example in included:
        assert example["include"] == [
            {
                "project": "$RISKRANK_PROJECT",
                "ref": "main",
                "file": "ci/gitlab/riskrank.gitlab-ci.yml",
            }
        ]
        assert example["test"]["extends"] == ".riskrank"


def test_the_jenkins_page_shows_the_jenkinsfile_as_it_is() -> None:
    jenkinsfile = (ROOT / "ci/jenkins/Jenkinsfile").read_text(encoding="utf-8")
    pipeline = jenkinsfile[jenkinsfile.index("pipeline {") :]
    page = (ROOT / "docs/ci/jenkins.md").read_text(encoding="utf-8")
    assert f"```groovy\n{pipeline}```" in page


def test_the_readme_links_lead_somewhere() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [target for target in targets if "://" not in target]
    assert "docs/getting-started.md" in local
    missing = [target for target in local if not (ROOT / target).exists()]
    assert missing == []
