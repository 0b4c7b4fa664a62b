"""Long work shows its progress, as a person at a terminal sees it: the
installed `riskrank` under a pseudo-terminal (its standard input, output and
error a pty, as in a shell), on an embedded SQLite database and a history
written here, for an import, a training, an export and a backtest. And without a
terminal (a pipe, a CI log) no bar at all but a plain line on standard
error now and then: standard output stays the command's result."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scheduler.services import training
from tests.backtest.test_served import write_history
from tests.e2e.conftest import RISKRANK, clean_env
from tests.test_cli_outcomes import riskrank

pytestmark = pytest.mark.slow

BUILDS = 40
COLUMNS = 120
# Escape sequences: colours, the cursor hidden and shown, a line erased.
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ELAPSED = r"\d+:\d\d:\d\d"  # Rich's time taken


def alternating(test: int, build: int) -> bool:
    """t00 fails in the even builds and t01 in the odd ones (enough for a
    model to learn, tests/services/test_promotion.py)."""
    return (test, build % 2) in ((0, 0), (1, 1))


def terminal_env(data_dir: Path) -> dict[str, str]:
    """A person's terminal: the size is the pty's, and nothing forces Rich to
    think it writes to one or not."""
    env = clean_env(RISKRANK_DATA_DIR=str(data_dir), TERM="xterm-256color")
    for name in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


def on_screen(*arguments: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`riskrank ARGUMENTS` with a pseudo-terminal of COLUMNS columns as its
    standard input, output and error; its exit code and every byte it drew."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [RISKRANK, *arguments],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        cwd=cwd,
        start_new_session=True,  # the pty its controlling terminal
    )
    os.close(secondary)
    drawn = bytearray()
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the command and its children closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        else:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"riskrank {' '.join(arguments)} still running; it drew:\n{drawn!r}")
        code = process.wait(timeout=30)
    finally:
        os.close(primary)
    return code, drawn.decode(errors="replace")


def frames(drawn: str) -> list[str]:
    """Each drawing of each line, escape sequences out: Rich redraws a live
    line after a carriage return."""
    plain = ESCAPE.sub("", drawn.replace("\r\n", "\n"))
    return [frame.strip() for line in plain.split("\n") for frame in line.split("\r")]


def screen(drawn: str) -> list[str]:
    """The lines left on the screen: of a line drawn again, its last drawing."""
    plain = ESCAPE.sub("", drawn.replace("\r\n", "\n"))
    return [line.rsplit("\r", 1)[-1].strip() for line in plain.split("\n")]


def bar(label: str, done: int, total: int, counted: str) -> re.Pattern[str]:
    """A finished bar: the label, the bar full, `done/total` and what it counts."""
    return re.compile(rf"^{label} ━+ +{done}/{total} {counted}.* {ELAPSED}$")


def shown(pattern: re.Pattern[str], drawn: str) -> bool:
    return any(pattern.match(line) for line in screen(drawn))


def test_long_work_shows_a_bar_on_a_terminal_and_nothing_else_without(
    tmp_path: Path,
) -> None:
    history = write_history(tmp_path / "history.jsonl", BUILDS, alternating)
    env = terminal_env(tmp_path / "data")
    assert riskrank("db", "upgrade", env=env, cwd=tmp_path).returncode == 0

    def backtest_on_screen() -> tuple[int, str]:
        return on_screen(
            "backtest", str(history), "--warmup", "10", "--retrain-every", "10",
            env=env, cwd=tmp_path,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=2) as pool:
        backtest = pool.submit(backtest_on_screen)
        imported = on_screen("import", "acme/app", str(history), "--create", env=env, cwd=tmp_path)
        trained = on_screen("train", "acme/app", env=env, cwd=tmp_path)
        exported = on_screen(
            "export", "acme/app", str(tmp_path / "app.jsonl"), env=env, cwd=tmp_path
        )
        backtested = backtest.result()

    code, drawn = imported
    assert code == 0, drawn
    assert shown(bar("importing", BUILDS, BUILDS, "reports · [0-9,]+ rows/s"), drawn), drawn
    # Drawn from the start, not only once done.
    assert any(re.match(rf"^importing ━+ +0/{BUILDS} reports", f) for f in frames(drawn)), drawn
    assert f"imported {BUILDS} reports" in drawn

    code, drawn = trained
    assert code == 0, drawn
    steps = training.STEPS
    assert shown(bar("training", steps, steps, "steps · model v1"), drawn), drawn
    assert "model v1: " in drawn

    code, drawn = exported
    assert code == 0, drawn
    assert shown(bar("exporting", BUILDS, BUILDS, "reports"), drawn), drawn
    assert f"wrote {BUILDS} reports" in " ".join(screen(drawn))

    code, drawn = backtested
    assert code == 0, drawn
    done = bar("backtest", BUILDS, BUILDS, r"builds · [0-9.,]+ builds/s")
    assert shown(done, drawn), drawn
    assert any(re.match(r"^backtest ━+ +\d+/", frame) for frame in frames(drawn))
    assert f"30 of {BUILDS} builds evaluated" in " ".join(screen(drawn))

    # Without a terminal (pipes): no bar, not even its last drawing, on
    # either stream, but a plain line on standard error now and then; --json
    # is the whole of standard output. Lines at least 30 s apart: this work
    # is shorter, none.
    piped_env = env | {"RISKRANK_PROGRESS_SECONDS": "0"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        retrained = pool.submit(
            riskrank, "train", "acme/app", "--json", env=piped_env, cwd=tmp_path
        )
        reimported = pool.submit(
            riskrank, "import", "acme/other", str(history), "--create", env=env, cwd=tmp_path
        )
        piped = riskrank(
            "backtest", str(history), "--warmup", "10", "--retrain-every", "0",
            env=piped_env, cwd=tmp_path,
        )  # fmt: skip
        again = retrained.result()
        short = reimported.result()
    assert short.returncode == 0, short.explain()
    assert short.stderr == ""
    assert f"imported {BUILDS} reports" in short.stdout
    # An export: a line at each tenth of its reports, the file as asked.
    out = tmp_path / "other.jsonl"
    written = riskrank("export", "acme/other", str(out), env=piped_env, cwd=tmp_path)
    assert written.returncode == 0, written.explain()
    assert progress_lines(written.stderr) == [
        ("export", done, BUILDS, "reports", 100 * done // BUILDS)
        for done in range(BUILDS // 10, BUILDS + 1, BUILDS // 10)
    ], written.stderr
    assert "\x1b[" not in written.stdout + written.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == BUILDS

    assert again.returncode == 0, again.explain()
    assert json.loads(again.stdout)["version"] == 2
    # One line per step: each is another tenth (or more) of the work.
    assert progress_lines(again.stderr) == [
        ("training", done, steps, "steps", 100 * done // steps) for done in range(1, steps + 1)
    ], again.stderr

    assert piped.returncode == 0, piped.explain()
    # The warm-up's 10 builds at once (a quarter), then a line at each
    # further tenth of the 40 builds: 12 (30%), 16, ..., 40.
    reached = [10, *range(12, BUILDS + 1, 4)]
    assert progress_lines(piped.stderr) == [
        ("backtest", done, BUILDS, "builds", 100 * done // BUILDS) for done in reached
    ], piped.stderr
    for output in (piped.stdout, piped.stderr, again.stdout, again.stderr):
        assert "\x1b[" not in output  # no escape sequence: no live drawing
    assert not [line for line in piped.stdout.splitlines() if line.startswith("backtest")]
    assert f"30 of {BUILDS} builds evaluated" in piped.stdout


PLAIN_LINE = re.compile(
    r"^(\w+): (\d+)/(\d+) (\w+) \((\d+)%\), (?:\d+ h \d+ min|(?:\d+ min )?\d+ s)$"
)


def progress_lines(stderr: str) -> list[tuple[str, int, int, str, int]]:
    """The plain progress lines of standard error (every line must be one):
    label, done, total, unit, percent."""
    found = []
    for line in stderr.splitlines():
        match = PLAIN_LINE.match(line)
        assert match, f"not a progress line: {line!r}"
        label, done, total, unit, percent = match.groups()
        found.append((label, int(done), int(total), unit, int(percent)))
    return found
