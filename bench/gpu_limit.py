"""Two trainings started together on one GPU: with the `gpu` concurrency limit, and without it.

Each training is its own process (as two flow runs on one worker machine are), trains the same
model on the same rows and holds the limit the way the training task does (`tasks.training
.gpu_slot`) against a temporary Prefect server whose `gpu` limit has one slot, created by the
bootstrap's own code. The result is each pair's wall time and how long the two trainings overlapped:
with the limit the overlap must be zero (the second waits), without it they share the device.
Without a CUDA device the same runs happen on CPU, holding the slot explicitly, so the
serialisation is still measured and the device is said.

    python -m bench.gpu_limit [--days 20] [--rows-per-day 2000] [--epochs 5] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

GPU_LIMIT = "gpu"


def _slot(hold: bool, cuda: bool) -> AbstractContextManager[Any]:
    from prefect.concurrency.sync import concurrency

    from tasks.training import gpu_slot

    if not hold:
        return nullcontext()
    if cuda:  # the training task's own path
        return gpu_slot("gpu")
    return concurrency(GPU_LIMIT, occupy=1, strict=True)  # what gpu_slot does on CUDA


def _train(args: tuple[bool, bool, int, int, int, str]) -> dict[str, Any]:
    """One training in its own process; return when it trained (monotonic clock) and where."""
    hold, cuda, days, rows_per_day, epochs, api = args
    os.environ["PREFECT_API_URL"] = api
    from mlops.contract.loader import load_contract
    from mlops.data.simulate import SimulationConfig, labelled_rows
    from mlops.settings import DEFAULT_CONTRACT
    from mlops.training.train import TrainParams, split_by_time, train_model
    from tasks.training import gpu_slot  # noqa: F401 (imported before the clock starts)

    contract = load_contract(DEFAULT_CONTRACT)
    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=7)
    splits = split_by_time(labelled_rows(config))
    params = TrainParams(
        max_epochs=epochs, patience=epochs, accelerator="gpu" if cuda else "cpu", seed=7
    )
    asked = time.monotonic()
    with _slot(hold, cuda):
        started = time.monotonic()
        model = train_model(splits, contract, params)
        ended = time.monotonic()
    return {"asked": asked, "started": started, "ended": ended, "device": model.device}


def _pair(hold: bool, cuda: bool, days: int, rows: int, epochs: int, api: str) -> dict[str, Any]:
    """Start two trainings together; return the wall time, the overlap and each one's span."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        spans = pool.map(_train, [(hold, cuda, days, rows, epochs, api)] * 2)
    first, second = sorted(spans, key=lambda s: s["started"])
    overlap = max(0.0, min(first["ended"], second["ended"]) - second["started"])
    return {
        "limit": hold,
        "device": first["device"],
        "wall_s": round(max(s["ended"] for s in spans) - min(s["asked"] for s in spans), 2),
        "overlap_s": round(overlap, 2),
        "train_s": [round(s["ended"] - s["started"], 2) for s in (first, second)],
        "second_waited_s": round(second["started"] - second["asked"], 2),
    }


async def _create_limit() -> str:
    from prefect.client.orchestration import get_client

    from deployments.bootstrap import ensure_gpu_limit

    async with get_client() as client:
        return await ensure_gpu_limit(client, 1)


def run(days: int, rows_per_day: int, epochs: int) -> dict[str, Any]:
    """Measure both pairs against a temporary Prefect server; return the results."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    cuda = torch.cuda.is_available()
    with prefect_test_harness(server_startup_timeout=120):
        asyncio.run(_create_limit())
        api = PREFECT_API_URL.value()
        limited = _pair(True, cuda, days, rows_per_day, epochs, api)
        free = _pair(False, cuda, days, rows_per_day, epochs, api)
    return {
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "slots": 1,
        "days": days,
        "rows_per_day": rows_per_day,
        "epochs": epochs,
        "with_limit": limited,
        "without_limit": free,
        "wall_ratio_limit_over_free": round(limited["wall_s"] / free["wall_s"], 2),
    }


def markdown(results: dict[str, Any]) -> str:
    """Render the results as a markdown report."""
    where = results["gpu"] or "no GPU: CPU, the slot held explicitly"
    lines = [
        "# Two trainings at once, with and without the `gpu` limit (1 slot)",
        "",
        f"- Device: {where}; {results['days']} days x {results['rows_per_day']} rows, "
        f"{results['epochs']} epochs each, two processes started together",
        "",
        "| limit | device | wall s | overlap s | second waited s | training s |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("with_limit", "without_limit"):
        r = results[key]
        lines.append(
            f"| {'on' if r['limit'] else 'off'} | {r['device']} | {r['wall_s']} | "
            f"{r['overlap_s']} | {r['second_waited_s']} | {r['train_s'][0]}, {r['train_s'][1]} |"
        )
    lines += ["", f"Wall time with the limit / without: {results['wall_ratio_limit_over_free']}x"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    results = run(args.days, args.rows_per_day, args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_limit.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "gpu_limit.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
