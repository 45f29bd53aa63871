"""Time a backtest: 30 batches x 3 policies on 10,000-row training windows, default training.

The simulator's drifting history (the default source) is replayed with `static`, `every` and
`triggered`, first with an empty trainings cache and then again with the cache it filled (the run
a team makes when it tries other thresholds). The ratio of the two is the saving of the cache; the
first run's wall time is the figure to keep under 15 minutes on 2 cores.

    python -m bench.backtest [--batches 30] [--batch-rows 1000] [--window 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mlops.backtest.build import build_backtest
from mlops.backtest.report import summary_rows, write_report
from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, labelled_rows
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams

POLICIES = "static,every,triggered"


def measure(batches: int, batch_rows: int, window: int) -> dict[str, Any]:
    """Run the backtest twice (cold and warm cache); return timings and the cold run's result."""
    rows_needed = window + batches * batch_rows
    per_day = 2000
    config = SimulationConfig(days=-(-rows_needed // per_day), rows_per_day=per_day, seed=11)
    frame = labelled_rows(config).iloc[:rows_needed]
    contract = load_contract(DEFAULT_CONTRACT)
    params = TrainParams(accelerator="cpu")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as folder:
        for label in ("cold cache", "warm cache"):
            runner, specs = build_backtest(
                frame, contract, initial=window, batch=batch_rows, policies=POLICIES,
                params=params, work_dir=Path(folder) / "work", cache_dir=Path(folder) / "cache",
                model_name="bench", data_uri="simulator", train_window_rows=window,
            )  # fmt: skip
            started = time.perf_counter()
            result = runner.run(specs)
            runs.append({"run": label, "wall_s": round(time.perf_counter() - started, 1),
                         "trainings": result["trainings"], "result": result})  # fmt: skip
        shutil.rmtree(Path(folder) / "work", ignore_errors=True)
    cold, warm = runs
    return {
        "batches": batches,
        "batch_rows": batch_rows,
        "train_window_rows": window,
        "policies": POLICIES.split(","),
        "training": "default TrainParams on CPU (<= 25 epochs, early stopping)",
        "runs": [{k: v for k, v in r.items() if k != "result"} for r in runs],
        "warm_over_cold": round(warm["wall_s"] / cold["wall_s"], 3),
        "summary": summary_rows(cold["result"]),
        "result": cold["result"],
    }


def markdown(figures: dict[str, Any]) -> str:
    """Render the timings and the summary as markdown."""
    cold, warm = figures["runs"]
    lines = [
        "# Backtest: time to replay",
        "",
        f"{figures['batches']} batches of {figures['batch_rows']} rows x "
        f"{len(figures['policies'])} policies ({', '.join(figures['policies'])}) on "
        f"{figures['train_window_rows']:,}-row training windows of the simulator's drifting "
        f"history; {figures['training']}.",
        "",
        "| run | wall s | trainings computed | trainings reused |",
        "|---|---|---|---|",
        *(
            f"| {r['run']} | {r['wall_s']} | {r['trainings']['computed']} | "
            f"{r['trainings']['reused']} |"
            for r in (cold, warm)
        ),
        "",
        f"Warm / cold: {figures['warm_over_cold']:.3f} (the same backtest again, e.g. with other "
        "thresholds, costs only the predictions and the monitoring of each batch).",
        "",
        "| policy | mean | 2nd half | retrains | promoted | refused | compute s |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['policy']} | {r['mean']} | {r['mean_second_half']} | {r['retrains']} | "
            f"{r['promotions']} | {r['refused']} | {r['compute_s']} |"
            for r in figures["summary"]
        ),
        "",
        "![roc_auc per batch](backtest.svg)",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    figures = measure(args.batches, args.batch_rows, args.window)
    args.out.mkdir(parents=True, exist_ok=True)
    result = figures.pop("result")
    with tempfile.TemporaryDirectory() as folder:
        written = write_report(result, Path(folder))
        shutil.copy(written["svg"], args.out / "backtest.svg")
    (args.out / "backtest.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    (args.out / "backtest.md").write_text(markdown(figures))
    print(markdown(figures))


if __name__ == "__main__":
    main()
