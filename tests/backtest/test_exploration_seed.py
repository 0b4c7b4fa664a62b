"""The closed loop's exploration seed: the same seed replays the same
plans, another draws other exploration samples (and so, from the first
explored test on, a history of its own), and the default is the plain
backtest's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scheduler.backtest.runner import BacktestConfig, BacktestError, run_backtest
from scheduler.ingest.history import read_history
from scheduler.planning.policy import Policy
from tests.backtest.histories import write_builds


def history(path: Path) -> Path:
    rng = np.random.default_rng(3)
    builds = []
    for _ in range(90):
        fails = rng.random(40) < 0.05
        builds.append(
            {f"t{i:02d}": "failed" if fail else "passed" for i, fail in enumerate(fails.tolist())}
        )
    return write_builds(path, builds)


def test_each_exploration_seed_draws_its_own_samples_and_replays_them_alike(
    tmp_path: Path,
) -> None:
    reports = list(read_history(history(tmp_path / "history.jsonl"), "jsonl"))
    base = BacktestConfig(
        warmup=30, retrain_every=0, policy=Policy(mode="fraction", budget=0.3), closed_loop=True
    )

    def selections(config: BacktestConfig) -> list[list[bool]]:
        return [r.selected.tolist() for r in run_backtest(reports, config).records]

    plain = selections(base)
    assert BacktestConfig().exploration_seed == 0
    assert selections(replace(base, exploration_seed=0)) == plain
    other = selections(replace(base, exploration_seed=1))
    assert len(other) == len(plain)
    assert other != plain
    assert BacktestConfig(exploration_seed=2).as_json()["exploration_seed"] == 2
    with pytest.raises(BacktestError, match="exploration_seed must be 0 or more"):
        BacktestConfig(exploration_seed=-1).checked()
