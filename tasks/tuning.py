"""Tasks of a hyperparameter search: stage the splits, run trials on Dask, report the study."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.logging import get_run_logger
from prefect_dask import DaskTaskRunner

from mlops.contract.spec import Contract
from mlops.settings import get_settings
from mlops.training import tuning
from mlops.training.train import TrainParams, split_by_time
from mlops.training.tuning_report import param_importances, trials_table, tuning_markdown
from tasks.scoring import local_cluster_kwargs


@dataclass(frozen=True)
class StudyRef:
    """Where a study lives, and the seed its next trial's sampler starts from."""

    storage: str
    name: str
    seed: int


@dataclass(frozen=True)
class TrialData:
    """The training and validation splits, as Parquet files every Dask worker can read."""

    train_uri: str
    val_uri: str


@task(name="open-study", cache_policy=NO_CACHE)
def open_study(
    home: str, storage: str | None, study_name: str, seed: int, base: TrainParams
) -> StudyRef:
    """Create or load the study in its RDB storage; a rerun continues it.

    A new study's first trial is `base`'s hyperparameters, so the best is never worse than them
    on validation (when the search space can express them).
    """
    url = tuning.study_storage(home, storage)
    study = tuning.open_study(url, study_name, seed=seed)
    done = len(study.get_trials(deepcopy=False))
    log = get_run_logger()
    log.info("study %s in %s: %d trials so far", study_name, _safe(url), done)
    if tuning.enqueue_base(study, base):
        log.info("its first trial is the given training hyperparameters")
    return StudyRef(url, study_name, seed + done)  # a rerun's samplers draw afresh


def _safe(url: str) -> str:
    """Return a storage URL with its password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@task(name="stage-trial-data", cache_policy=NO_CACHE)
def stage_trial_data(rows: pd.DataFrame, params: TrainParams, folder: str) -> TrialData:
    """Split the rows by time as train-model will, and write train and validation to Parquet."""
    splits = split_by_time(
        rows, val_fraction=params.val_fraction, holdout_fraction=params.holdout_fraction
    )
    data = TrialData(f"{folder.rstrip('/')}/train.parquet", f"{folder.rstrip('/')}/val.parquet")
    for frame, uri in ((splits.train, data.train_uri), (splits.val, data.val_uri)):
        _make_parent(uri)
        frame.to_parquet(uri)
    get_run_logger().info(
        "trials learn %d rows, validate on %d", len(splits.train), len(splits.val)
    )
    return data


def _make_parent(uri: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)


@task(name="run-trial", cache_policy=NO_CACHE)
def run_trial(
    study: StudyRef,
    index: int,
    data: TrialData,
    contract: Contract,
    base: TrainParams,
    deadline: float | None,
) -> tuning.TrialResult | None:
    """Run one trial where Dask puts it; None when the search's deadline has passed."""
    if deadline is not None and time.time() >= deadline:
        return None
    opened = tuning.open_study(study.storage, study.name, seed=study.seed + index)
    train, val = pd.read_parquet(data.train_uri), pd.read_parquet(data.val_uri)
    result = tuning.run_trial(opened, train, val, contract, base, storage=study.storage)
    get_run_logger().info(
        "trial %d %s: %s %s in %.1f s", result.number, result.state, tuning.MONITOR,
        "-" if result.value is None else f"{result.value:.5f}", result.seconds,
    )  # fmt: skip
    return result


def trial_runner(parallel: int) -> DaskTaskRunner:
    """Return a Dask runner: MLOPS_DASK_ADDRESS when set, else `parallel` local processes."""
    address = get_settings().dask_address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(max(parallel, 1)))


def run_trials(
    study: StudyRef,
    data: TrialData,
    contract: Contract,
    base: TrainParams,
    *,
    n_trials: int,
    parallel: int,
    timeout_s: float | None,
) -> list[tuning.TrialResult]:
    """Submit `n_trials` trials to Dask at once; its workers run `parallel` at a time."""
    base = dataclasses.replace(base, devices=1, strategy="auto")  # one process per trial
    deadline = None if timeout_s is None else time.time() + timeout_s
    with trial_runner(parallel) as runner:
        parameters = {"study": study, "data": data, "contract": contract, "base": base}
        futures = [
            runner.submit(run_trial, parameters={**parameters, "index": i, "deadline": deadline})
            for i in range(n_trials)
        ]
        wait(futures)
        results = [f.result(raise_on_failure=False) for f in futures]
    return [r for r in results if isinstance(r, tuning.TrialResult)]


@task(name="report-study", cache_policy=NO_CACHE)
def report_study(study: StudyRef) -> dict[str, Any]:
    """Publish the trials table and the study's charts; return the best trial and counts."""
    opened = tuning.open_study(study.storage, study.name, seed=study.seed)
    importances = param_importances(opened, seed=study.seed)
    create_markdown_artifact(
        key="tuning-study", markdown=tuning_markdown(opened, importances),
        description=f"Study {study.name}: history and parameter importances",
    )  # fmt: skip
    create_table_artifact(key="tuning-trials", table=trials_table(opened), description="Trials")
    counts = tuning.count_states(opened)
    if not counts["complete"]:
        raise RuntimeError(f"study {study.name} has no complete trial: nothing to release")
    best = opened.best_trial
    return {
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "importances": {k: round(v, 4) for k, v in importances.items()},
        "trials": counts,
    }
