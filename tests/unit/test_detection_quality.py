"""Detection quality of drift, constraints and the retrain policy on the simulator's ground truth.

The reference of a seed is the profile of its first 14 days (stable in both scenarios: the drift
scenario's events begin on day 14); a monitoring window is one simulated day of 5000 rows. These
tests pin the calibration of `DriftThresholds` and `RetrainPolicy` defaults.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import pytest

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.scenario import ScenarioName, SimulationConfig, drift_timeline
from mlops.data.simulate import SIMULATOR_CONTRACT, generate_day
from mlops.monitoring.constraints import check_constraints
from mlops.monitoring.drift import feature_drift
from mlops.monitoring.policy import PolicyInputs, RetrainDecision, decide_retrain
from mlops.monitoring.profile import ProfileView, merge_profiles, profile_frame
from mlops.monitoring.thresholds import RetrainPolicy

SEEDS = (1, 2, 3, 4)
ROWS = 5000
REFERENCE_DAYS = range(14)
STABLE_WINDOWS = range(14, 19)  # 5 windows x 4 seeds = 20 stable windows
TIMELINE = drift_timeline(30)
INCIDENT_DAYS = (TIMELINE.incident_start, TIMELINE.incident_end)


@cache
def _contract() -> Contract:
    return load_contract(SIMULATOR_CONTRACT)


@cache
def _window(seed: int, scenario: ScenarioName, day: int) -> ProfileView:
    """Profile the feature columns of one simulated day."""
    config = SimulationConfig(rows_per_day=ROWS, seed=seed, scenario=scenario)
    features, _ = generate_day(config, day)
    return profile_frame(features[list(_contract().feature_names)])


@cache
def _reference(seed: int) -> ProfileView:
    return merge_profiles(_window(seed, "stable", day) for day in REFERENCE_DAYS)


def _walk(seed: int, windows: list[ProfileView], policy: RetrainPolicy) -> list[RetrainDecision]:
    """Run drift and the retrain policy over consecutive daily windows, as the monitor would."""
    decisions, shares = [], []
    start = dt.datetime(2026, 1, 15)
    for index, window in enumerate(windows):
        report = feature_drift(_reference(seed), window, _contract())
        inputs = PolicyInputs(
            now=start + dt.timedelta(days=index + 1),
            new_rows=ROWS * (index + 1),
            n_features=report.n_features,
            n_drifted=len(report.drifted_features),
            previous_drift_shares=tuple(shares),
        )
        decisions.append(decide_retrain(inputs, policy))
        shares.append(report.share_drifted)
    return decisions


def test_timeline_matches_what_these_tests_assume():
    assert TIMELINE.shift_start == 14
    assert INCIDENT_DAYS == (24, 25)


def test_stable_windows_trigger_at_most_one_drift_retrain():
    policy = RetrainPolicy()
    decisions = [
        decision
        for seed in SEEDS
        for decision in _walk(
            seed, [_window(seed, "stable", day) for day in STABLE_WINDOWS], policy
        )
    ]

    assert len(decisions) == 20
    assert sum(d.reason == "drift" for d in decisions) <= 1
    assert max(d.drift_share for d in decisions) < 0.3


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_shift_triggers_a_drift_retrain_by_day_15(seed):
    # The shift begins at 00:00 on day 14 (Jan 15) and ramps until day 18. "First full window
    # after the onset" means day 14 itself: the first whole day of shifted rows, and the first
    # window the model trained on days 0-13 serves. With two consecutive drifting windows
    # required, days 14 and 15 must both drift, so the retrain decision comes with the day-15
    # window (Jan 16): one day of the ramp (20% of the shift) is too weak to act on alone.
    windows = [_window(seed, "drift", day) for day in (14, 15)]

    day14, day15 = _walk(seed, windows, RetrainPolicy())

    assert day14.drift_share >= RetrainPolicy().drift_share
    assert not day14.retrain
    assert "in only 1 of the 2 consecutive windows required" in day14.explanation
    assert day15.retrain
    assert day15.reason == "drift"
    assert day15.event == "mlops.model.drift-detected"
    assert "in 2 consecutive windows" in day15.explanation


def test_covariate_shift_drifts_the_shifted_columns():
    report = feature_drift(_reference(1), _window(1, "drift", 15), _contract())

    assert {"amount", "channel", "card_present"} <= set(report.drifted_features)


@pytest.mark.parametrize("day", INCIDENT_DAYS)
def test_data_quality_incident_fails_the_constraints(day):
    report = check_constraints(_window(1, "drift", day), _contract(), reference=_reference(1))

    failed = {(row.column, row.constraint) for row in report.failures}
    assert {
        ("merchant_category", "not_null"),
        ("customer_age", "min"),
        ("channel", "allowed"),
        ("amount", "scale"),
    } <= failed
    assert "mobile_wallet" in next(r.observed for r in report.failures if r.column == "channel")


def test_incident_shows_as_a_new_category_in_drift():
    report = feature_drift(_reference(1), _window(1, "drift", INCIDENT_DAYS[0]), _contract())

    channel = next(row for row in report.rows if row.feature == "channel")
    assert channel.drifted
    assert channel.note == "new categories: mobile_wallet"


@pytest.mark.parametrize("seed", SEEDS)
def test_stable_and_shifted_days_pass_every_constraint(seed):
    reference = _reference(seed)
    windows = [_window(seed, "stable", day) for day in STABLE_WINDOWS]
    windows += [_window(seed, "drift", day) for day in (14, 15)]

    reports = [check_constraints(window, _contract(), reference=reference) for window in windows]

    assert [report.summary() for report in reports if not report.passed] == []
