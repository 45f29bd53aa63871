"""tune-model: validate -> trials in parallel on Dask (Optuna study in an RDB) -> report ->
release the best trial's hyperparameters through train-model's path."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.parameters import DataSpec, GateSpec, SearchSpec
from flows.training import prepare_rows, release_model
from mlops.settings import get_settings
from mlops.training.train import TrainParams, params_dict
from mlops.training.tuning import params_of
from tasks.tuning import open_study, report_study, run_trials, stage_trial_data


@flow(name="tune-model", log_prints=True)
def tune_model_flow(
    model_name: str | None = None,
    data: DataSpec | None = None,
    training: TrainParams | None = None,
    search: SearchSpec | None = None,
    gate: GateSpec | None = None,
    max_failing_share: float = 0.05,
    reason: str = "hyperparameter search",
) -> dict[str, Any]:
    """Search hyperparameters with Optuna, then train, register and gate the best trial's."""
    settings, data, gate = get_settings(), data or DataSpec(), gate or GateSpec()
    base, model_name = training or TrainParams(), model_name or settings.model_name
    search = search or SearchSpec()
    study_name = search.study_name or model_name
    run_id = str(flow_run.get_id() or "local")

    # 1. Data: read and validate once, as train-model does; trials read its splits as Parquet
    rows = prepare_rows(data, model_name, run_id, max_failing_share)
    staged = stage_trial_data(
        rows.valid, base, f"{settings.data.rstrip('/')}/tuning/{study_name}/{run_id}"
    )

    # 2. Trials: each asks the study for parameters, trains with pruning, tells its result
    study = open_study(settings.home, search.storage, study_name, search.seed, base)
    results = run_trials(
        study, staged, rows.contract, base,
        n_trials=search.n_trials, parallel=search.parallel, timeout_s=search.timeout_s,
    )  # fmt: skip
    summary = report_study(study)

    # 3. The best trial's hyperparameters through train-model's release path
    best = params_of(summary["best_params"], base)
    released = release_model(
        rows, best, gate, model_name,
        run_id=run_id, reason=f"{reason}: study {study_name} trial {summary['best_trial']}",
        actor=f"tune-model/{run_id}",
    )  # fmt: skip
    return {
        **summary,
        "this_run": {s: sum(r.state == s for r in results) for s in ("COMPLETE", "PRUNED")},
        "params": params_dict(best),
        "version": released["version"],
        "promoted": released["promoted"],
        "verdict": released["verdict"],
        "metrics": released["metrics"],
    }
