"""The histories bench/loop.py replays, their sizes, and what their generators know of each batch.

`simulator` is the simulator's drift scenario (covariate shift, concept drift, a broken feed) in
daily batches; the others come from tests/support/histories.py. Ground truth comes from the
generators (the simulator's timeline, `broken_feed_batches`), never from a policy's view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from bench.loop_criteria import GroundTruth
from mlops.backtest.plan import Batch, Plan
from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.scenario import SimulationConfig, scenario_events
from mlops.data.simulate import labelled_rows
from mlops.settings import DEFAULT_CONTRACT
from tests.support.histories import (
    History,
    broken_feed_batches,
    broken_feed_binary,
    growing_regression,
    low_volume_binary,
    recurring_binary,
    stable_binary,
)

SCENARIOS = ("simulator", "recurring", "growing", "low-volume", "stable", "broken")
BALANCED = (0.4, 0.6)  # the positive share of binary labels called balanced
# (batches, batch_rows, initial_rows) of each history: by default (the histories' own defaults),
# then with --quick. The whole run takes about 20 minutes on 2 cores by default, 5 with --quick.
SIZES = {
    "recurring": ((24, 1000, 6000), (6, 500, 1500)),
    "growing": ((24, 700, 6000), (4, 500, 1500)),
    "low-volume": ((30, 500, 3000), (6, 500, 1500)),
    "stable": ((24, 1000, 6000), (6, 500, 1500)),
    "broken": ((24, 1000, 6000), (7, 500, 1500)),
}
# (days, rows_per_day, initial days) of the simulator: by default, then with --quick
SIMULATOR_SIZES = ((30, 2000, 5), (10, 1000, 3))


@dataclass(frozen=True)
class Scenario:
    """A labelled history, how to cut it, and what its generator knows about each batch."""

    name: str
    description: str
    frame: pd.DataFrame
    contract: Contract
    initial: str | int
    batch: str | int
    window: int  # rows a retrain trains on
    stable: Callable[[Batch], bool] | None = None  # a window without drift
    broken: Callable[[Batch], bool] | None = None  # a batch from a broken feed


def simulator(quick: bool) -> Scenario:
    """The simulator's drift scenario in daily batches; stable until its first drift day."""
    days, per_day, initial_days = SIMULATOR_SIZES[quick]
    config = SimulationConfig(days=days, rows_per_day=per_day, seed=11)
    events = scenario_events(config)
    drifts = [e.start for e in events if e.kind in ("covariate_shift", "concept_drift")]
    incidents = [e for e in events if e.kind == "data_quality"]

    def day(batch: Batch) -> dt.date:
        return dt.date.fromisoformat(str(batch.start)[:10])

    description = (
        f"{days} simulated days of {per_day:,} card transactions (3% fraud): "
        + "; ".join(f"{e.kind} {e.start}..{e.end}" for e in events if e.kind != "recovery")
    )
    return Scenario(
        "simulator", description, labelled_rows(config), load_contract(DEFAULT_CONTRACT),
        initial=f"{initial_days}d", batch="1d", window=initial_days * per_day,
        stable=lambda b: day(b) < min(drifts),
        broken=lambda b: any(e.covers(day(b)) for e in incidents),
    )  # fmt: skip


def from_history(name: str, history: History, **truth: Callable[[Batch], bool]) -> Scenario:
    """A scenario of one of tests/support/histories.py, cut into its own batches."""
    return Scenario(
        name, history.description, history.frame, history.contract,
        initial=history.initial_rows, batch=history.batch_rows, window=history.initial_rows,
        **truth,
    )  # fmt: skip


def build_scenario(name: str, quick: bool) -> Scenario:
    """Generate the named scenario at its default size, or a smaller one with `quick`."""
    if name == "simulator":
        return simulator(quick)
    if name not in SIZES:
        raise ValueError(f"unknown scenario {name!r}: use {', '.join(SCENARIOS)}")
    batches, batch_rows, initial_rows = SIZES[name][quick]
    size = {"batches": batches, "batch_rows": batch_rows, "initial_rows": initial_rows}
    if name == "recurring":
        return from_history(name, recurring_binary(**size))
    if name == "growing":
        return from_history(name, growing_regression(**size))
    if name == "low-volume":
        return from_history(name, low_volume_binary(**size))
    if name == "stable":
        return from_history(name, stable_binary(**size), stable=lambda b: True)
    history = broken_feed_binary(**size)
    bad = set(broken_feed_batches(history.n_batches))
    return from_history(name, history, broken=lambda b: b.index in bad)


def ground_truth(scenario: Scenario, plan: Plan) -> GroundTruth:
    """Name the stable and broken batches of the plan, and say whether the labels are balanced."""

    def pick(test: Callable[[Batch], bool] | None) -> tuple[int, ...] | None:
        return None if test is None else tuple(b.index for b in plan.batches if test(b))

    balanced = False
    if scenario.contract.task == "binary":
        share = float(scenario.frame[scenario.contract.target.name].mean())
        balanced = BALANCED[0] <= share <= BALANCED[1]
    return GroundTruth(pick(scenario.stable), pick(scenario.broken), balanced)
