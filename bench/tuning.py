"""Benchmark the hyperparameter search: parallel vs sequential trials, and what the search buys.

Simulates the stable days of the default scenario, splits them as train-model does, then runs the
same 16-trial Optuna search (same sampler seeds, a SQLite study each, the default
hyperparameters as its first trial as in tune-model) on a local Dask cluster of
2 single-threaded worker processes and of 1, as tune-model's trials run. Wall time counts the
trials only (the cluster is up and its workers have imported the code). Then trains the best
trial's hyperparameters and the default TrainParams on the training split and compares them on
the holdout. Writes bench/results/tuning.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from distributed import Client, LocalCluster

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.simulate import SimulationConfig, simulate
from mlops.data.sources import Window, load_dataset
from mlops.data.validate import validate_frame
from mlops.settings import DEFAULT_CONTRACT
from mlops.training import tuning
from mlops.training.train import (
    TrainParams,
    evaluate_model,
    params_dict,
    split_by_time,
    train_model,
)

RESULTS = Path(__file__).resolve().parent / "results"
STUDY = "bench"


def _trial(storage: str, seed: int, folder: str, base: TrainParams) -> dict[str, Any]:
    """Run one trial in a Dask worker (what tasks.tuning.run_trial does, without Prefect)."""
    study = tuning.open_study(storage, STUDY, seed=seed)
    contract = load_contract(DEFAULT_CONTRACT)
    train, val = (pd.read_parquet(f"{folder}/{name}.parquet") for name in ("train", "val"))
    return dataclasses.asdict(tuning.run_trial(study, train, val, contract, base))


def search(
    workers: int, n_trials: int, folder: Path, base: TrainParams, seed: int
) -> tuple[dict[str, Any], optuna.Study]:
    """Run `n_trials` trials on `workers` local processes; return timings and the study."""
    storage = f"sqlite:///{folder / f'study-{workers}.db'}"
    tuning.enqueue_base(tuning.open_study(storage, STUDY, seed=seed), base)  # as tune-model
    kwargs = {"n_workers": workers, "threads_per_worker": 1, "dashboard_address": ":0"}
    with LocalCluster(processes=True, **kwargs) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        client.run(_warm)  # imports torch, Lightning and Optuna in every worker
        started = time.perf_counter()
        futures = [
            client.submit(_trial, storage, seed + i, str(folder), base, pure=False)
            for i in range(n_trials)
        ]
        results = client.gather(futures)
        wall = time.perf_counter() - started
    study = tuning.open_study(storage, STUDY, seed=seed)
    states = [r["state"] for r in results]
    busy = sum(r["seconds"] for r in results)
    return {
        "workers": workers,
        "wall_s": round(wall, 1),
        "trial_seconds_sum": round(busy, 1),
        "trial_seconds_per_wall_second": round(busy / wall, 2),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "best_val_loss": round(study.best_value, 5),
        "best_params": study.best_params,
    }, study


def _warm() -> None:
    import pytorch_lightning  # noqa: F401

    import mlops.training.tuning  # noqa: F401


def _holdout(splits: Any, contract: Contract, params: TrainParams) -> dict[str, Any]:
    started = time.perf_counter()
    model = train_model(splits, contract, params)
    metrics, _ = evaluate_model(model, contract, splits.holdout)
    return {
        "params": params_dict(params),
        "val_loss": round(model.best_val_loss, 5),
        "epochs": model.epochs,
        "train_s": round(time.perf_counter() - started, 1),
        "holdout": {k: round(v, 5) for k, v in metrics.items()},
    }


def run(days: int, rows_per_day: int, n_trials: int, max_epochs: int, seed: int) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-tuning-"))
    sim = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable")
    simulate(str(work / "sim"), sim)
    contract = load_contract(DEFAULT_CONTRACT)
    loaded = load_dataset(
        str(work / "sim" / "raw"), contract, labels_uri=str(work / "sim" / "labels"),
        window=Window(),
    )  # fmt: skip
    splits = split_by_time(validate_frame(loaded.labeled_frame(), contract).valid)
    splits.train.to_parquet(work / "train.parquet")
    splits.val.to_parquet(work / "val.parquet")
    base = TrainParams(max_epochs=max_epochs, patience=3, accelerator="cpu", refit=False)

    sequential, one = search(1, n_trials, work, base, seed)
    parallel, two = search(2, n_trials, work, base, seed)
    return {
        "rows": {name: len(getattr(splits, name)) for name in ("train", "val", "holdout")},
        "n_trials": n_trials,
        "base": {"max_epochs": max_epochs, "patience": 3},
        "sequential": sequential,
        "parallel": parallel,
        "speedup": round(sequential["wall_s"] / parallel["wall_s"], 2),
        "default": _holdout(splits, contract, base),
        "best_sequential": _holdout(splits, contract, tuning.params_of(one.best_params, base)),
        "best_parallel": _holdout(splits, contract, tuning.params_of(two.best_params, base)),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
    }


def to_markdown(result: dict[str, Any]) -> str:
    """Render the figures as a markdown report."""
    seq, par = result["sequential"], result["parallel"]
    default = result["default"]
    metrics = list(default["holdout"])
    lines = [
        "# Hyperparameter search benchmark",
        "",
        f"- Rows: {result['rows']}; {result['n_trials']} trials of at most "
        f"{result['base']['max_epochs']} epochs (patience {result['base']['patience']}), "
        f"MedianPruner; {result['machine']['cpu_count']} cores",
        "",
        "| Dask workers | wall s | sum of trial s | trial s per wall s | complete | pruned "
        "| best val_loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in (seq, par):
        lines.append(
            f"| {r['workers']} | {r['wall_s']} | {r['trial_seconds_sum']} | "
            f"{r['trial_seconds_per_wall_second']} | {r['complete']} | {r['pruned']} | "
            f"{r['best_val_loss']} |"
        )
    lines += [
        "",
        f"Parallel speedup (wall): {result['speedup']}x. The two searches are not the same trials "
        "(which trials run side by side changes what the sampler and the pruner see), so the "
        "trial seconds each wall second bought compare the workers' throughput.",
        "",
        "| hyperparameters | val_loss | epochs | " + " | ".join(metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]
    rows = (
        ("default TrainParams", default),
        ("best trial, 1 worker", result["best_sequential"]),
        ("best trial, 2 workers", result["best_parallel"]),
    )
    for name, r in rows:
        values = " | ".join(f"{r['holdout'][m]:.4f}" for m in metrics)
        lines.append(f"| {name} | {r['val_loss']} | {r['epochs']} | {values} |")
    lines.append("")
    for name, r in rows[1:]:
        p = r["params"]
        lines.append(
            f"- {name}: learning_rate {p['learning_rate']:.2e}, weight_decay "
            f"{p['weight_decay']:.2e}, dropout {p['dropout']:.2f}, hidden {p['hidden']}, "
            f"batch_size {p['batch_size']}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, run, and write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.days, args.rows_per_day, args.trials, args.max_epochs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuning.json").write_text(json.dumps(result, indent=2))
    (args.out / "tuning.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
