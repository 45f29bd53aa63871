"""Tests of the built-in card-fraud simulator and its scenario ground truth."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from mlops.data.simulate import (
    SIMULATOR_CONTRACT,
    SimulationConfig,
    SimulationResult,
    generate_day,
    labelled_rows,
    scenario_events,
    simulate,
)

ROWS = 500
DTYPES = {"float": "f", "int": "i", "bool": "b", "datetime": "M"}


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return yaml.safe_load(SIMULATOR_CONTRACT.read_text())


@pytest.fixture(scope="module")
def config() -> SimulationConfig:
    return SimulationConfig(rows_per_day=ROWS)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory, config: SimulationConfig) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(str(out), config)
    return out


@pytest.fixture(scope="module")
def days(config: SimulationConfig) -> list[pd.DataFrame]:
    """Each day's features joined with its labels."""
    joined = []
    for day_index in range(config.days):
        features, labels = generate_day(config, day_index)
        joined.append(features.merge(labels, on="transaction_id", validate="1:1"))
    return joined


def _events_by_kind(config: SimulationConfig) -> dict[str, Any]:
    return {event.kind: event for event in scenario_events(config)}


def _day_indices(config: SimulationConfig, start: dt.date, end: dt.date) -> list[int]:
    return [i for i in range(config.days) if start <= config.date_of(i) <= end]


def _index(config: SimulationConfig, day: dt.date) -> int:
    return (day - config.start_date).days


def contract_violations(frame: pd.DataFrame, contract: dict[str, Any]) -> dict[str, int]:
    """Count, per column, the rows failing the contract's nullability and checks."""
    counts: dict[str, int] = {}
    for name, spec in contract["columns"].items():
        if name not in frame:
            continue
        values, checks = frame[name], spec.get("checks", {})
        bad = pd.Series(False, index=frame.index)
        if not spec.get("nullable", False):
            bad |= values.isna()
        present = values.notna()
        if "min" in checks:
            bad |= present & (values < checks["min"])
        if "max" in checks:
            bad |= present & (values > checks["max"])
        if "allowed" in checks:
            bad |= present & ~values.isin(checks["allowed"])
        if "regex" in checks:
            bad |= present & ~values.astype(str).str.contains(checks["regex"], regex=True)
        if checks.get("unique"):
            bad |= values.duplicated(keep=False)
        counts[name] = int(bad.sum())
    return counts


def test_simulate_writes_raw_labels_and_scenario_partitions(
    simulated: Path, config: SimulationConfig
) -> None:
    raw = sorted(p.parent.name for p in simulated.glob("raw/date=*/part-000.parquet"))
    labels = sorted(p.parent.name for p in simulated.glob("labels/date=*/part-000.parquet"))
    dates = [config.date_of(i) for i in range(config.days)]
    assert raw == [f"date={d}" for d in dates]
    delay = dt.timedelta(days=config.label_delay_days)
    assert labels == [f"date={d + delay}" for d in dates]
    assert (simulated / "scenario.json").is_file()
    for path in simulated.glob("raw/*/*.parquet"):
        frame = pd.read_parquet(path)
        assert len(frame) == ROWS
        assert "is_fraud" not in frame
        assert frame["timestamp"].is_monotonic_increasing


def test_simulate_returns_paths_row_counts_and_events(tmp_path: Path) -> None:
    config = SimulationConfig(days=10, rows_per_day=50)
    result = simulate(str(tmp_path), config, progress=True)
    assert isinstance(result, SimulationResult)
    assert result.rows == 500
    assert 0 < result.fraud_rows < 500
    assert len(result.raw_paths) == len(result.label_paths) == 10
    assert all(Path(path).is_file() for path in (*result.raw_paths, *result.label_paths))
    assert result.raw_paths[0].endswith("raw/date=2026-01-01/part-000.parquet")
    assert result.label_paths[-1].endswith("labels/date=2026-01-13/part-000.parquet")
    assert list(result.events) == scenario_events(config)


def test_simulate_writes_to_any_fsspec_url() -> None:
    fs = fsspec.filesystem("memory")
    result = simulate("memory://sim-test", SimulationConfig(days=10, rows_per_day=20))
    try:
        assert fs.exists("/sim-test/scenario.json")
        with fsspec.open(result.raw_paths[3], "rb") as handle:
            assert len(pd.read_parquet(handle)) == 20
    finally:
        fs.rm("/sim-test", recursive=True)


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    config = SimulationConfig(days=10, rows_per_day=100)
    simulate(str(tmp_path / "a"), config)
    simulate(str(tmp_path / "b"), config)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 21
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_different_seed_gives_different_rows(config: SimulationConfig) -> None:
    ours, _ = generate_day(config, 3)
    theirs, _ = generate_day(SimulationConfig(rows_per_day=ROWS, seed=7), 3)
    assert not ours["amount"].equals(theirs["amount"])


def test_generate_day_alone_matches_that_day_of_a_full_run(
    simulated: Path, config: SimulationConfig
) -> None:
    for day_index in (0, 17, 24):
        features, labels = generate_day(config, day_index)
        day = config.date_of(day_index)
        arrival = day + dt.timedelta(days=config.label_delay_days)
        written = pd.read_parquet(simulated / f"raw/date={day}/part-000.parquet")
        written_labels = pd.read_parquet(simulated / f"labels/date={arrival}/part-000.parquet")
        pd.testing.assert_frame_equal(features, written)
        pd.testing.assert_frame_equal(labels, written_labels)


def test_labels_join_one_to_one_and_arrive_after_the_delay(config: SimulationConfig) -> None:
    features, labels = generate_day(config, 5)
    joined = features.merge(labels, on="transaction_id", validate="1:1")
    assert len(joined) == len(features) == len(labels)
    assert set(labels.columns) == {"transaction_id", "is_fraud", "label_time"}
    lag = joined["label_time"] - joined["timestamp"]
    assert (lag == pd.Timedelta(days=config.label_delay_days)).all()
    assert set(labels["is_fraud"]) <= {0, 1}


def test_fraud_rate_is_between_two_and_four_percent(days: list[pd.DataFrame]) -> None:
    rate = pd.concat(days)["is_fraud"].mean()
    assert 0.02 <= rate <= 0.04


def test_raw_columns_follow_the_contract_order_and_dtypes(
    days: list[pd.DataFrame], config: SimulationConfig, contract: dict[str, Any]
) -> None:
    columns = contract["columns"]
    features, _ = generate_day(config, 24)
    assert list(features.columns) == [c for c, s in columns.items() if s["role"] != "target"]
    for name, spec in columns.items():
        for frame in (days[0], features) if spec["role"] != "target" else (days[0],):
            if spec["dtype"] == "string":
                assert pd.api.types.is_string_dtype(frame[name]), name
            else:
                assert frame[name].dtype.kind == DTYPES[spec["dtype"]], name
    assert sum(spec.get("slice", False) for spec in columns.values()) in (1, 2)
    assert all("description" in spec and "example" in spec for spec in columns.values())


def test_scenario_json_matches_the_config(simulated: Path, config: SimulationConfig) -> None:
    document = json.loads((simulated / "scenario.json").read_text())
    assert document["seed"] == 42
    assert document["days"] == 30
    assert document["start_date"] == "2026-01-01"
    assert document["rows_per_day"] == ROWS
    assert document["label_delay_days"] == 3
    assert document["scenario"] == "drift"
    events = document["events"]
    assert [e["kind"] for e in events] == [
        "covariate_shift",
        "concept_drift",
        "data_quality",
        "recovery",
    ]
    assert [e.to_dict() for e in scenario_events(config)] == events
    last = config.date_of(config.days - 1).isoformat()
    for event in events:
        assert "2026-01-01" < event["start"] <= event["end"] <= last
        assert event["columns"] and event["description"]


def test_default_timeline_places_events_at_fixed_dates() -> None:
    spans = {e.kind: (e.start.day, e.end.day) for e in scenario_events(SimulationConfig())}
    assert spans == {
        "covariate_shift": (15, 30),
        "concept_drift": (21, 30),
        "data_quality": (25, 26),
        "recovery": (27, 30),
    }


@pytest.mark.parametrize("n_days", [10, 11, 15, 20, 45, 90])
def test_events_fit_any_number_of_days(n_days: int) -> None:
    config = SimulationConfig(days=n_days)
    events = _events_by_kind(config)
    last = config.date_of(n_days - 1)
    assert config.start_date < events["covariate_shift"].start < events["concept_drift"].start
    assert events["concept_drift"].start < events["data_quality"].start
    assert events["data_quality"].end < events["recovery"].start <= last


def test_a_story_shorter_than_the_world_places_its_events_and_keeps_its_last_state() -> None:
    from mlops.data.scenario import day_conditions

    story = SimulationConfig(days=20)
    longer = SimulationConfig(days=24, story_days=20)
    spans = {e.kind: (e.start.day, e.end.day) for e in scenario_events(longer)}
    assert spans == {
        "covariate_shift": (10, 24),
        "concept_drift": (14, 24),
        "data_quality": (17, 18),
        "recovery": (19, 24),
    }
    for day in range(20):
        assert day_conditions(longer, day) == day_conditions(story, day)
    assert all(day_conditions(longer, day) == day_conditions(story, 19) for day in range(20, 24))
    # the same days generate the same rows: only the world goes on longer
    pd.testing.assert_frame_equal(generate_day(longer, 15)[0], generate_day(story, 15)[0])
    with pytest.raises(ValueError, match="story_days"):
        SimulationConfig(days=20, story_days=24)


def test_stable_scenario_has_no_events() -> None:
    assert scenario_events(SimulationConfig(scenario="stable")) == []


def test_invalid_config_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="days must be >= 10"):
        SimulationConfig(days=5)
    with pytest.raises(ValueError, match="scenario must be one of"):
        SimulationConfig(scenario="chaos")  # type: ignore[arg-type]
    assert SimulationConfig(days=5, scenario="stable").days == 5


def test_covariate_shift_moves_amounts_and_channel_mix(
    days: list[pd.DataFrame], config: SimulationConfig
) -> None:
    events = _events_by_kind(config)
    shift, incident = events["covariate_shift"], events["data_quality"]
    before = pd.concat(days[: _index(config, shift.start)])
    broken = _day_indices(config, incident.start, incident.end)
    after_days = range(_index(config, shift.start) + 5, config.days)
    after = pd.concat([days[i] for i in after_days if i not in broken])
    assert after["amount"].median() > 1.2 * before["amount"].median()
    online = (after["channel"] == "online").mean() - (before["channel"] == "online").mean()
    assert online > 0.08
    assert after["card_present"].mean() < before["card_present"].mean() - 0.08


def test_concept_drift_makes_contactless_fraud_in_mx_and_br_jump(
    days: list[pd.DataFrame], config: SimulationConfig
) -> None:
    drift_start = _events_by_kind(config)["concept_drift"].start
    frame = pd.concat(days)
    segment = (frame["channel"] == "contactless") & frame["country"].isin(["MX", "BR"])
    drifted = frame["timestamp"].dt.date >= drift_start
    before = frame.loc[segment & ~drifted, "is_fraud"].mean()
    after = frame.loc[segment & drifted, "is_fraud"].mean()
    assert before < 0.05
    assert after > 0.25


def test_incident_days_break_the_contract_in_the_named_columns_only(
    days: list[pd.DataFrame], config: SimulationConfig, contract: dict[str, Any]
) -> None:
    incident = _events_by_kind(config)["data_quality"]
    broken = _day_indices(config, incident.start, incident.end)
    assert broken
    for day_index, frame in enumerate(days):
        violations = contract_violations(frame, contract)
        if day_index not in broken:
            assert not any(violations.values()), (day_index, violations)
            continue
        failing = {column for column, count in violations.items() if count}
        assert {"merchant_category", "customer_age", "channel"} <= failing
        assert failing <= set(incident.columns)
        assert frame["merchant_category"].isna().any()
        assert (frame["customer_age"] < 18).any()
        assert (~frame["channel"].isin(contract["columns"]["channel"]["checks"]["allowed"])).any()
        assert sum(violations.values()) < 0.15 * len(frame)


def test_incident_reports_amounts_in_cents(
    days: list[pd.DataFrame], config: SimulationConfig
) -> None:
    incident = _events_by_kind(config)["data_quality"]
    broken = _day_indices(config, incident.start, incident.end)
    normal = np.median([days[i]["amount"].median() for i in range(broken[0] - 3, broken[0])])
    for day_index in broken:
        assert days[day_index]["amount"].median() / normal > 50
    assert days[broken[-1] + 1]["amount"].median() / normal < 2


def _model_inputs(frame: pd.DataFrame, contract: dict[str, Any]) -> pd.DataFrame:
    """Encode the contract's features for a tree model; merchant_id has too many values for it."""
    inputs = {}
    for name, spec in contract["columns"].items():
        if spec["role"] != "feature" or name == "merchant_id":
            continue
        allowed = spec.get("checks", {}).get("allowed")
        inputs[name] = pd.Categorical(frame[name], allowed) if allowed else frame[name]
    return pd.DataFrame(inputs).astype({"card_present": int})


def test_fraud_is_learnable_on_stable_data(contract: dict[str, Any]) -> None:
    config = SimulationConfig(days=14, rows_per_day=2000, scenario="stable")
    frames = []
    for day_index in range(config.days):
        features, labels = generate_day(config, day_index)
        frames.append(features.merge(labels, on="transaction_id"))
    train, test = pd.concat(frames[:10]), frames[13]
    model = HistGradientBoostingClassifier(random_state=0)
    model.fit(_model_inputs(train, contract), train["is_fraud"])
    scores = model.predict_proba(_model_inputs(test, contract))[:, 1]
    assert roc_auc_score(test["is_fraud"], scores) >= 0.8


def test_labelled_rows_joins_each_day_with_its_label_in_time_order() -> None:
    config = SimulationConfig(days=10, rows_per_day=50, scenario="stable", seed=4)

    rows = labelled_rows(config)
    first_three = labelled_rows(config, days=3)

    assert len(rows) == 500 and rows.index.equals(pd.RangeIndex(500))
    assert "label_time" not in rows and set(rows["is_fraud"].unique()) <= {0, 1}
    assert rows["timestamp"].is_monotonic_increasing
    features, labels = generate_day(config, 9)
    expected = labels.set_index("transaction_id")["is_fraud"]
    last_day = rows.tail(50).set_index("transaction_id")
    pd.testing.assert_series_equal(last_day["is_fraud"], expected.loc[last_day.index])
    assert list(last_day.index) == list(features["transaction_id"])
    pd.testing.assert_frame_equal(first_three, rows.head(150))
