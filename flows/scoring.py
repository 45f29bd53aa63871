"""score-batch: pin the champion -> list partitions -> score each on Dask -> summarize."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from mlops.settings import get_settings
from tasks.scoring import (
    BatchTaskRunner,
    gather_scored,
    list_partitions,
    pin_champion,
    score_partition,
    summarize_batch,
)


@flow(name="score-batch", task_runner=BatchTaskRunner(), log_prints=True)
def score_batch_flow(
    data_uri: str | None = None,
    model_name: str | None = None,
    contract: str | None = None,
    output_uri: str | None = None,
    partitions: list[str] | None = None,
) -> dict[str, Any]:
    """Score every partition of a data URI with the champion's ONNX, in parallel on Dask.

    Args:
        data_uri: CSV/Parquet file or folder, local or fsspec URL; each file is one partition
            (default: the simulator's raw data under MLOPS_HOME).
        model_name: Registry name of the model (default: MLOPS_MODEL_NAME).
        contract: Path or URL of the data contract YAML (default: MLOPS_CONTRACT).
        output_uri: Where predictions go, as <output_uri>/<model>/<partition>.parquet
            (default: <MLOPS_HOME>/predictions-batch).
        partitions: Partition names or relative paths to score (default: all).
    """
    settings = get_settings()
    model_name = model_name or settings.model_name
    data_uri = data_uri or f"{settings.data.rstrip('/')}/simulated/raw"

    # 1. Pin one version for the whole batch, and list the partitions
    target = pin_champion(settings, model_name, contract, output_uri)
    found = list_partitions(data_uri, partitions)

    # 2. Validate, predict and profile each partition on the Dask cluster
    futures = score_partition.map(found, target=unmapped(target))
    scored, failed = gather_scored(list(futures), found)

    # 3. Summarize (fails the run when a partition failed)
    return summarize_batch(target, scored, failed)
