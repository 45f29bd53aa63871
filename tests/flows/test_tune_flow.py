"""tune-model under a real (temporary) Prefect API: trials on a local Dask cluster, then release."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.parameters import GateSpec, SearchSpec
from flows.tuning import tune_model_flow
from mlops.data.simulate import SimulationConfig, simulate
from mlops.registry.store import Registry
from mlops.training.train import TrainParams

pytestmark = pytest.mark.slow
FAST = TrainParams(max_epochs=4, patience=2, accelerator="cpu", refit=False)
GATE = GateSpec(floor=0.0)  # tiny data: the test is about the path, not the figure
ENDED = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}


def _artifacts(flow_run_id: str) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: str(a.data) for a in found if a.key}


def test_tune_model_runs_trials_on_dask_continues_its_study_and_releases_the_best(
    prefect_server: None, mlops_home: str
) -> None:
    simulate(
        f"{mlops_home}/data/simulated",
        SimulationConfig(days=6, rows_per_day=500, scenario="stable", seed=5),
    )

    result = tune_model_flow(training=FAST, search=SearchSpec(n_trials=4, parallel=2), gate=GATE)

    database = Path(mlops_home, "tuning", "optuna.db")
    study = optuna.load_study(study_name="card-fraud", storage=f"sqlite:///{database}")
    assert len(study.trials) == 4 and {t.state for t in study.trials} <= ENDED
    first = study.trials[0].params  # a new study starts from the given hyperparameters
    assert (first["width"], first["layers"], first["batch_size"]) == (128, 2, FAST.batch_size)
    assert result["trials"]["complete"] + result["trials"]["pruned"] == 4
    assert result["best_value"] == pytest.approx(study.best_value)
    expected_width = study.best_params["width"]
    assert result["params"]["hidden"][0] == expected_width
    assert result["params"]["learning_rate"] == pytest.approx(study.best_params["learning_rate"])

    registry = Registry(f"{mlops_home}/registry")
    version = registry.get("card-fraud", result["version"])
    assert result["version"] == "v1" and result["promoted"], result["verdict"]
    assert registry.get("card-fraud", "champion").version == "v1"
    manifest = version.manifest
    assert manifest["parameters"]["hidden"] == result["params"]["hidden"]
    assert manifest["verification"]["max_abs_diff"] <= 1e-4
    artifacts = _artifacts(manifest["flow_run_id"])
    assert {"tuning-study", "tuning-trials", "holdout-metrics", "gate-decision"} <= set(artifacts)
    assert artifacts["tuning-study"].count("data:image/svg+xml;base64,") >= 1

    # A rerun continues the study: its trials join the first run's, and the gate compares.
    again = tune_model_flow(training=FAST, search=SearchSpec(n_trials=2, parallel=2), gate=GATE)

    study = optuna.load_study(study_name="card-fraud", storage=f"sqlite:///{database}")
    assert len(study.trials) == 6 and {t.state for t in study.trials} <= ENDED
    assert sum(again["trials"].values()) == 6
    assert again["version"] == "v2" and "champion v1" in again["verdict"]
