"""Progress without a terminal (a CI log, a pipe, a journal): plain lines on
standard error, `backtest: 400/2136 builds (19%), 1 min 12 s`, instead of
a bar. Rarely: a line once the work has gone past another tenth of it and
at least `every` seconds after the previous line (or the start), so that a
long backtest writes about ten lines and a short import none. Work of
unknown size (pruning) says what it is at, at most every `every` seconds.

Imported only by scheduler.cli.common.progress, when there is no terminal
to draw on (Rich's progress module is not light)."""

from __future__ import annotations

import math
import sys
from typing import Any

from rich.progress import Progress, ProgressColumn, TaskID
from rich.text import Text

# The seconds between two lines at the least; RISKRANK_PROGRESS_SECONDS
# overrides it (scheduler.cli.common).
EVERY_SECONDS = 30.0
TENTHS = 10


def duration(seconds: float) -> str:
    """`12 s`, `1 min 12 s`, `2 h 5 min`: a time taken, as a log reader says it."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class LoggedProgress(Progress):
    """A Progress that draws nothing and writes a plain line now and then
    (see the module docstring): `label` names the work, `unit` what its
    total counts (work of unknown size says its task's description)."""

    def __init__(
        self, *columns: str | ProgressColumn, label: str, unit: str, every: float, **kwargs: Any
    ) -> None:
        super().__init__(*columns, disable=True, **kwargs)
        self.label = label
        self.unit = unit
        self.every = every
        # Per task: the tenth of the work the last line was at, and when.
        self._told: dict[TaskID, tuple[int, float]] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._maybe_tell(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_tell(task_id)

    def _maybe_tell(self, task_id: TaskID) -> None:
        with self._lock:
            task = self._tasks[task_id]
            started = task.start_time if task.start_time is not None else self.get_time()
            tenth, last = self._told.get(task_id, (0, started))
            now = self.get_time()
            if now - last < self.every:
                return
            if task.total:
                reached = min(math.floor(TENTHS * task.completed / task.total), TENTHS)
                if reached <= tenth:
                    return
                percent = math.floor(100 * task.completed / task.total)
                what = f"{task.completed:.0f}/{task.total:.0f} {self.unit} ({percent}%)"
            else:
                reached = tenth
                what = Text.from_markup(task.description).plain
            self._told[task_id] = (reached, now)
            elapsed = duration(now - started)
        sys.stderr.write(f"{self.label}: {what}, {elapsed}\n")
        sys.stderr.flush()
