"""Create what prefect.yaml's deployments need on a Prefect server: pools, the GPU limit, variables.

- work pools `cpu-pool` and `gpu-pool`: process pools by default; `--type docker|kubernetes` uses
  the job templates in deployments/templates/ (the GPU ones request NVIDIA GPUs);
- the global concurrency limit `gpu` (one slot per GPU; training holds one while on a GPU);
- the variables prefect.yaml reads when it is deployed (`mlops_train_data`, ...).

Idempotent: an existing pool of the same type gets the template again, an existing limit gets the
slots asked for, an existing variable keeps its value (unless `--set` gives one). Run it as
`mlops bootstrap` or `python deployments/bootstrap.py`, with PREFECT_API_URL pointing at the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
POOL_TYPES = ("process", "docker", "kubernetes")
GPU_LIMIT = "gpu"
POOLS: dict[str, tuple[bool, str]] = {
    "cpu-pool": (False, "CPU work: monitoring, promotion, rollback, batch scoring."),
    "gpu-pool": (True, "Training; on a CUDA device each run holds one slot of the `gpu` limit."),
}
# Read by prefect.yaml at `prefect deploy` time: per-environment settings without editing YAML.
VARIABLES: dict[str, Any] = {
    "mlops_train_data": {},  # train-model `data` (DataSpec): {} = all data, e.g. {"last_rows": N}
    "mlops_train_hyperparameters": {},  # train-model `training` (TrainParams): {} = defaults
    "mlops_train_gate": {},  # train-model `gate` (GateSpec): {} = defaults, {"release": "shadow"}
    "mlops_monitor_labels_uri": "",  # monitor-model `labels_uri`: "" = no live performance
}


def job_template(pool_type: str, gpu: bool) -> dict[str, Any]:
    """Return the base job template of a pool: Prefect's for process, ours for docker/kubernetes."""
    if pool_type not in POOL_TYPES:
        raise ValueError(f"pool type must be one of {', '.join(POOL_TYPES)}, not {pool_type!r}")
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template()
    path = TEMPLATES / f"{pool_type}-{'gpu' if gpu else 'cpu'}.json"
    return json.loads(path.read_text())


async def ensure_pool(client: Any, name: str, pool_type: str, gpu: bool, about: str) -> str:
    """Create the work pool, or give an existing one of the same type the current template."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    template = job_template(pool_type, gpu)
    try:
        existing = await client.read_work_pool(name)
    except ObjectNotFound:
        pool = WorkPoolCreate(
            name=name, type=pool_type, description=about, base_job_template=template
        )
        await client.create_work_pool(pool)
        return f"work pool {name} ({pool_type}) created"
    if existing.type != pool_type:
        raise SystemExit(
            f"work pool {name} exists with type {existing.type!r}, not {pool_type!r}: delete it "
            f"first (prefect work-pool delete {name}) or bootstrap with --type {existing.type}"
        )
    await client.update_work_pool(
        name, WorkPoolUpdate(description=about, base_job_template=template)
    )
    return f"work pool {name} ({pool_type}) exists: template updated"


async def ensure_gpu_limit(client: Any, slots: int) -> str:
    """Create the strict `gpu` global concurrency limit, or set its slots."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    try:
        limit = await client.read_global_concurrency_limit_by_name(GPU_LIMIT)
    except ObjectNotFound:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=slots)
        )
        return f"concurrency limit {GPU_LIMIT} created ({slots} slot(s))"
    if limit.limit == slots and limit.active:
        return f"concurrency limit {GPU_LIMIT} exists ({slots} slot(s))"
    await client.update_global_concurrency_limit(
        GPU_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots, active=True)
    )
    return f"concurrency limit {GPU_LIMIT} set to {slots} slot(s)"


async def ensure_variable(client: Any, name: str, default: Any, value: Any = None) -> str:
    """Create the variable with its default; overwrite it only when `value` is given."""
    from prefect.client.schemas.actions import VariableCreate, VariableUpdate

    existing = await client.read_variable_by_name(name)
    if existing is None:
        chosen = default if value is None else value
        await client.create_variable(VariableCreate(name=name, value=chosen, tags=["mlops"]))
        return f"variable {name} = {json.dumps(chosen)} created"
    if value is None or existing.value == value:
        return f"variable {name} = {json.dumps(existing.value)} kept"
    await client.update_variable(VariableUpdate(name=name, value=value))
    return f"variable {name} = {json.dumps(value)} set"


async def bootstrap(
    pool_type: str = "process", gpu_slots: int = 1, values: dict[str, Any] | None = None
) -> list[str]:
    """Create or update the pools, the GPU limit and the variables; return what was done."""
    from prefect.client.orchestration import get_client

    if gpu_slots < 1:
        raise ValueError(f"gpu_slots must be >= 1, got {gpu_slots}")
    values = values or {}
    unknown = sorted(set(values) - set(VARIABLES))
    if unknown:
        raise ValueError(f"unknown variable(s) {unknown}; known: {sorted(VARIABLES)}")
    async with get_client() as client:
        done = [
            await ensure_pool(client, name, pool_type, gpu, about)
            for name, (gpu, about) in POOLS.items()
        ]
        done.append(await ensure_gpu_limit(client, gpu_slots))
        for name, default in VARIABLES.items():
            done.append(await ensure_variable(client, name, default, values.get(name)))
    return done


def parse_values(pairs: list[str]) -> dict[str, Any]:
    """Parse NAME=JSON pairs (a value that is not JSON is taken as a string)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes NAME=VALUE, got {pair!r}")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return values


def main(argv: list[str] | None = None) -> int:
    """Command line: bootstrap the server PREFECT_API_URL points at."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", dest="pool_type", choices=POOL_TYPES, default="process")
    parser.add_argument("--gpu-slots", type=int, default=1, help="slots of the gpu limit")
    parser.add_argument("--set", dest="pairs", action="append", default=[], metavar="NAME=JSON")
    args = parser.parse_args(argv)
    for line in asyncio.run(bootstrap(args.pool_type, args.gpu_slots, parse_values(args.pairs))):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
