"""train-model under a real (temporary) Prefect API, on simulated and on user-shaped data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.parameters import DataSpec, GateSpec
from flows.training import train_model_flow
from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, simulate
from mlops.data.sources import load_dataset
from mlops.data.validate import validate_frame
from mlops.inference.scoring import score_onnx
from mlops.registry.store import Registry
from mlops.release.lineage import data_fingerprint
from mlops.training.train import TrainParams, split_by_time

pytestmark = pytest.mark.slow
TEST_CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
FAST = TrainParams(max_epochs=4, patience=2)


def _artifact_keys(flow_run_id: str) -> set[str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found if a.key}


def test_train_model_registers_a_champion_whose_onnx_reproduces_its_holdout_metric(
    prefect_server: None, mlops_home: str
) -> None:
    simulated = f"{mlops_home}/data/simulated"
    simulate(simulated, SimulationConfig(days=10, rows_per_day=800, scenario="stable", seed=7))

    # Without the refit, the registered ONNX is the model the holdout measured.
    result = train_model_flow(training=dataclasses.replace(FAST, refit=False))

    registry = Registry(f"{mlops_home}/registry")
    champion = registry.get("card-fraud", "champion")
    assert result["promoted"] and champion.version == result["version"] == "v1"
    files = sorted(p.name for p in Path(champion.uri).iterdir())
    assert files == ["manifest.json", "model.onnx", "model_card.md", "reference.bin"]
    manifest = champion.manifest
    assert manifest["verification"]["parity_rows"] >= 1000
    assert manifest["verification"]["max_abs_diff"] <= 1e-4
    assert manifest["training"]["device"] == "cpu"

    # Rebuild the flow's holdout from the raw files and score the registered ONNX on it.
    contract = load_contract(manifest["contract"]["source"])
    loaded = load_dataset(f"{simulated}/raw", contract, labels_uri=f"{simulated}/labels")
    valid = validate_frame(loaded.labeled_frame(), contract).valid
    assert data_fingerprint(valid) == manifest["data"]["fingerprint"]
    holdout = split_by_time(valid).holdout
    assert len(holdout) == manifest["data"]["holdout_rows"]
    scored = score_onnx(registry.read_onnx("card-fraud", "champion"), manifest, holdout, contract)
    for metric, value in manifest["metrics"].items():
        assert scored[metric] == pytest.approx(value, abs=1e-3), metric

    keys = _artifact_keys(manifest["flow_run_id"])
    assert {
        "data-validation",
        "holdout-metrics",
        "slice-metrics",
        "model-card",
        "gate-decision",
    } <= keys

    # A second run on the same data, refitted on every row, is gated against v1 on the same
    # holdout by the figures of its model before the refit: those of v1's identical training.
    again = train_model_flow(training=FAST, gate=GateSpec(max_regression=0.0))
    assert "champion v1" in again["verdict"]
    refitted = registry.get("card-fraud", again["version"]).manifest
    assert refitted["refit"]["rows"] == len(valid)
    assert refitted["refit"]["epochs"] == manifest["training"]["best_epoch"] + 1
    assert refitted["metrics"] == again["metrics"] == manifest["metrics"]
    assert f"its roc_auc {refitted['metrics']['roc_auc']:.4f}" in again["verdict"]
    history = [h["event"] for h in registry.history("card-fraud")]
    assert history.count("registered") == 2


def _penguins(n: int, rng: np.random.Generator) -> pd.DataFrame:
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], size=n, p=[0.45, 0.2, 0.35])
    bill = np.select([species == "Adelie", species == "Chinstrap"], [38.8, 48.8], 47.5)
    flipper = np.select([species == "Adelie", species == "Chinstrap"], [190, 196], 217)
    island = np.where(species == "Gentoo", "Biscoe", rng.choice(["Dream", "Torgersen"], size=n))
    frame = pd.DataFrame(
        {
            "tag": [f"P{i:04d}" for i in range(n)],
            "observed_at": pd.Timestamp("2025-06-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "bill_length_mm": np.clip(bill + rng.normal(0, 2.5, n), 30, 60).round(1),
            "flipper_length_mm": np.clip(flipper + rng.normal(0, 6, n), 170, 240).round(),
            "island": island,
            "banded": rng.random(n) < 0.5,
            "species": species,
            "colour_notes": "n/a",  # a column the contract does not know
        }
    )
    frame = frame.astype({"flipper_length_mm": "Int64"})
    frame.loc[rng.random(n) < 0.05, "flipper_length_mm"] = pd.NA
    return frame


def test_train_model_trains_on_a_second_contract_from_csv_with_bad_rows_quarantined(
    prefect_server: None, mlops_home: str, tmp_path: Path
) -> None:
    frame = _penguins(8000, np.random.default_rng(3))
    frame.loc[[10, 20], "bill_length_mm"] = 999.0  # breaks the contract's max
    frame = frame.sample(frac=1.0, random_state=1)  # files need not be in time order
    folder = tmp_path / "penguins"
    folder.mkdir()
    frame.iloc[:4000].to_csv(folder / "a.csv", index=False)
    frame.iloc[4000:].to_csv(folder / "b.csv", index=False)

    result = train_model_flow(
        model_name="penguins",
        data=DataSpec(contract=str(TEST_CONTRACTS / "penguins.yaml"), data_uri=str(folder)),
        training=FAST,
    )

    assert result["promoted"], result["verdict"]
    assert result["metrics"]["macro_f1"] > 0.8
    champion = Registry(f"{mlops_home}/registry").get("penguins", "champion")
    assert [i["name"] for i in champion.manifest["inputs"]] == [
        "bill_length_mm",
        "flipper_length_mm",
        "island",
        "banded",
    ]
    quarantine = list(Path(mlops_home, "data", "quarantine", "penguins").glob("*.parquet"))
    quarantined = pd.read_parquet(quarantine[0])
    assert sorted(quarantined["tag"]) == ["P0010", "P0020"]
    assert quarantined["_reason"].str.contains("bill_length_mm").all()


def test_train_model_handles_regression_without_timestamp_or_id(
    prefect_server: None, mlops_home: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    n = 8000
    area = rng.uniform(20, 200, n)
    rooms = rng.integers(1, 7, n)
    city = rng.choice(["Lyon", "Paris", "Nantes"], n)
    base = np.select([city == "Paris", city == "Lyon"], [9000, 5000], 3500)
    frame = pd.DataFrame(
        {
            "area_m2": area,
            "rooms": rooms,
            "city": city,
            "price": area * base + rooms * 8000 + rng.normal(0, 20000, n),
        }
    )
    path = tmp_path / "houses.parquet"
    frame.to_parquet(path)

    result = train_model_flow(
        model_name="houses",
        data=DataSpec(contract=str(TEST_CONTRACTS / "house_prices.yaml"), data_uri=str(path)),
        training=TrainParams(max_epochs=15, patience=3),
    )

    assert result["promoted"], result["verdict"]
    assert result["metrics"]["r2"] > 0.8
    manifest = Registry(f"{mlops_home}/registry").get("houses", "champion").manifest
    assert manifest["data"]["window_from"] == "row 0"
    assert json.loads(json.dumps(manifest))["task"] == "regression"


TURN_CONTRACT = """
name: turn
columns:
  ts: {role: timestamp, dtype: datetime}
  x: {role: feature, dtype: float}
  z: {role: feature, dtype: float}
  label: {role: target, dtype: int, task: binary, classes: [0, 1]}
"""


def _turn_rows(n: int, *, turned: bool, seed: int, start: str) -> pd.DataFrame:
    """label = x > 0 (5% noise); after the turn, label = x < 0 over the same inputs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    label = ((x < 0) if turned else (x > 0)) ^ (rng.random(n) < 0.05)
    return pd.DataFrame({
        "ts": pd.Timestamp(start) + pd.to_timedelta(np.arange(n), unit="min"),
        "x": x, "z": rng.normal(size=n), "label": label.astype(np.int64),
    })  # fmt: skip


def test_after_a_turn_of_concept_train_model_learns_the_rows_since_it(
    prefect_server: None, mlops_home: str, tmp_path: Path
) -> None:
    contract = tmp_path / "turn.yaml"
    contract.write_text(TURN_CONTRACT)
    folder = tmp_path / "turn"
    folder.mkdir()
    _turn_rows(3000, turned=False, seed=1, start="2026-01-01").to_parquet(folder / "a.parquet")
    data = DataSpec(contract=str(contract), data_uri=str(folder))
    params = TrainParams(max_epochs=4, patience=2, learning_rate=0.03, hidden=(16,))
    first = train_model_flow(model_name="turn", data=data, training=params)
    assert first["promoted"] and first["version"] == "v1"

    _turn_rows(3000, turned=False, seed=2, start="2026-01-04").to_parquet(folder / "b.parquet")
    _turn_rows(1500, turned=True, seed=3, start="2026-01-07").to_parquet(folder / "c.parquet")
    second = train_model_flow(model_name="turn", data=data, training=params)

    registry = Registry(f"{mlops_home}/registry")
    manifest = registry.get("turn", second["version"]).manifest
    window = manifest["window"]
    # v1 learned the rows up to 2026-01-03: only the 4,500 after them are searched.
    assert window["rows"] == "since change", window
    assert abs(window["change"]["rows_after"] - 1500) < 50, window
    assert manifest["refit"]["rows"] == window["change"]["rows_after"]
    assert manifest["data"]["window_from"] >= "2026-01-07"
    assert second["promoted"], second["verdict"]
    assert "training-window" in _artifact_keys(manifest["flow_run_id"])
    fresh = _turn_rows(2000, turned=True, seed=9, start="2026-01-09")
    served = score_onnx(
        registry.read_onnx("turn", "champion"), manifest, fresh, load_contract(str(contract))
    )
    assert served["accuracy"] > 0.85, served

    # With gate.release = shadow, a challenger that passes goes on trial beside the champion
    lenient = GateSpec(release="shadow", max_regression=1.0, max_decision_regression=1.0, floor=0.0)
    third = train_model_flow(model_name="turn", data=data, training=params, gate=lenient)
    assert not third["promoted"] and third["on_trial"]["strategy"] == "shadow", third["verdict"]
    state = registry.aliases("turn")
    assert state.aliases["champion"] == second["version"]
    assert state.aliases["shadow"] == third["version"] == state.rollout["version"]
