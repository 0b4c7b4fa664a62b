"""The light client starts fast: help and usage never import requests (or
anything else heavy); it is imported once a request is about to be made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
from riskrank_client.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(name for name in ("requests", "urllib3", "xml.etree.ElementTree", "hmac")
               if name in sys.modules)
print("imported:", ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "arguments",
    [["--help"], ["upload", "--help"], ["plan", "--help"], ["event", "--help"], ["--version"]],
    ids=["help", "upload-help", "plan-help", "event-help", "version"],
)
def test_help_imports_nothing_heavy(arguments: list[str], tmp_path: Path) -> None:
    completed = subprocess.run(  # noqa: S603  (our own interpreter, no shell)
        [sys.executable, "-c", PROBE, *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "usage: riskrank-client" in completed.stdout or "riskrank-client 0.1.0" in (
        completed.stdout
    )
    assert completed.stderr.strip().splitlines()[-1] == "imported:"


def test_a_missing_setting_imports_nothing_heavy(tmp_path: Path) -> None:
    # Nothing to send: the warning comes before requests would be imported.
    completed = subprocess.run(  # noqa: S603  (our own interpreter, no shell)
        [sys.executable, "-c", PROBE, "upload", "report.xml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = completed.stderr.strip().splitlines()
    assert lines == [
        "riskrank: nothing uploaded, missing --url/RISKRANK_URL, --token/RISKRANK_TOKEN, "
        "--repo/RISKRANK_REPO, --commit/RISKRANK_COMMIT",
        "imported:",
    ]
