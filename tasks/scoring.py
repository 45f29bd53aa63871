"""Tasks that score data partitions with the champion on a Dask cluster."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.logging import get_run_logger
from prefect_dask import DaskTaskRunner

from mlops import batch_scoring
from mlops.batch_scoring import BatchTarget, Partition, PartitionReport
from mlops.registry.store import Registry
from mlops.settings import Settings, get_settings


class BatchTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner that picks its cluster when a flow run starts, not at import.

    It connects to the scheduler at MLOPS_DASK_ADDRESS when set, and otherwise starts a temporary
    local cluster of single-threaded worker processes (ONNX sessions run one thread each).
    """

    def __enter__(self) -> BatchTaskRunner:
        if self.address is None and self._cluster is None and not self.cluster_kwargs:
            settings = get_settings()
            if settings.dask_address:
                self.address = settings.dask_address
            else:
                self.cluster_kwargs = local_cluster_kwargs(settings.dask_workers)
        super().__enter__()
        return self


def local_cluster_kwargs(workers: int) -> dict[str, Any]:
    """Return the arguments of a local cluster: `workers` processes (0: one per core)."""
    return {
        "n_workers": workers or os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
    }


@dataclass(frozen=True)
class ScoredPartition:
    """A partition's report, with the Dask worker that scored it."""

    report: PartitionReport
    worker: str


@task(name="pin-champion", cache_policy=NO_CACHE)
def pin_champion(
    settings: Settings, model_name: str, contract: str | None, output_uri: str | None
) -> BatchTarget:
    """Resolve the champion once, so that every partition is scored by the same version."""
    champion = Registry(settings.registry).get(model_name, "champion")
    get_run_logger().info("scoring with %s %s", model_name, champion.version)
    return BatchTarget(
        registry_url=absolute_url(settings.registry),
        model_name=model_name,
        version=champion.version,
        contract_uri=absolute_url(contract or settings.contract),
        output_url=absolute_url(output_uri or f"{settings.home.rstrip('/')}/predictions-batch"),
        profiles_url=absolute_url(settings.store("profiles")),
        quarantine_url=absolute_url(settings.quarantine),
        prefer_gpu=settings.prefer_gpu,
        onnx_threads=settings.onnx_threads,
    )


def absolute_url(url: str) -> str:
    """Return a relative local path made absolute, other paths and URLs as they are.

    A worker of an external cluster runs in a folder of its own, where a path relative to the
    flow's working folder (the default MLOPS_HOME, `.mlops`) would name other files.
    """
    return url if "://" in url else os.path.abspath(url)


@task(name="list-partitions", cache_policy=NO_CACHE)
def list_partitions(data_uri: str, only: list[str] | None) -> list[Partition]:
    """List the data files to score, one partition each."""
    found = batch_scoring.list_partitions(data_uri, only)
    get_run_logger().info("%d partitions under %s", len(found), data_uri)
    return found


@task(name="score-partition", task_run_name="score-{partition.name}", cache_policy=NO_CACHE)
def score_partition(partition: Partition, target: BatchTarget) -> ScoredPartition:
    """Validate, predict and profile one partition where Dask runs it."""
    report = batch_scoring.score_partition(partition, target)
    get_run_logger().info(
        "%s: %d rows, %d valid, %d quarantined -> %s",
        report.partition,
        report.rows,
        report.valid,
        report.quarantined,
        report.predictions_uri,
    )
    return ScoredPartition(report, dask_worker())


def dask_worker() -> str:
    """Return the address of the Dask worker running this code ("in-process" outside Dask)."""
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return "in-process"


def gather_scored(
    futures: list[PrefectFuture[ScoredPartition]], partitions: list[Partition]
) -> tuple[list[ScoredPartition], dict[str, str]]:
    """Wait for every partition; return the scored ones and the error of each failed one."""
    wait(futures)
    scored, failed = [], {}
    for partition, future in zip(partitions, futures, strict=True):
        state = future.state
        if state.is_completed():
            scored.append(future.result())
        else:
            failed[partition.name] = str(state.message or state.name)
    return scored, failed


@task(name="summarize-batch", cache_policy=NO_CACHE)
def summarize_batch(
    target: BatchTarget, scored: list[ScoredPartition], failed: dict[str, str]
) -> dict[str, Any]:
    """Publish the per-partition summary with totals; fail when a partition failed."""
    rows = [{**asdict(s.report), "worker": s.worker} for s in scored]
    rows += [{"partition": name, "error": error} for name, error in failed.items()]
    totals = {
        "rows": sum(s.report.rows for s in scored),
        "valid": sum(s.report.valid for s in scored),
        "quarantined": sum(s.report.quarantined for s in scored),
    }
    total_row = {"partition": f"total ({len(scored)} scored, {len(failed)} failed)", **totals}
    description = (
        f"{target.model_name} {target.version} scored {totals['rows']} rows in {len(scored)} "
        f"partitions: {totals['valid']} valid, {totals['quarantined']} quarantined"
    )
    create_table_artifact(key="batch-scoring", table=[*rows, total_row], description=description)
    get_run_logger().info(description)
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(scored) + len(failed)} partitions failed: "
            + "; ".join(f"{name}: {error}" for name, error in failed.items())
        )
    return {"model": target.model_name, "version": target.version, **totals}
