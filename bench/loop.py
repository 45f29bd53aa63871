"""Say whether the continuous-training loop pays: five criteria on six histories.

Each scenario is replayed by the backtest under `static`, `every` and `triggered` with the
project's defaults (training on CPU, retrain policy, gate); every retrain trains on the newest rows,
as many as the first model had. bench/loop_criteria.py judges each backtest against what the
history's generator knows: which batches are stable, which arrive from a broken feed.

    python -m bench.loop [--quick] [--scenarios simulator,stable] [--reports DIR] [--cache DIR]
                         [--training recency_half_life=1.0 ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.loop_criteria import judge, threshold_gap
from bench.loop_report import markdown
from bench.loop_scenarios import SCENARIOS, Scenario, build_scenario, ground_truth
from mlops.backtest.build import build_backtest
from mlops.backtest.report import summary_rows, write_report
from mlops.settings import quiet_telemetry
from mlops.training.train import TrainParams, params_dict

POLICIES = "static,every,triggered"
# what loop.json keeps of each batch, besides its metrics (--reports writes everything)
BATCH_KEYS = (
    "index", "start", "rows", "version", "action", "trigger", "retrained", "promoted", "refused",
    "failed", "accuracy_at_0_5", "drift_share", "constraints_passed",
)  # fmt: skip


def cpu_training(**overrides: Any) -> TrainParams:
    """The default training, on CPU, with `overrides` (e.g. recency_half_life=1.0)."""
    options: dict[str, Any] = {"accelerator": "cpu", **overrides}
    return TrainParams(**options)  # the rest defaults (mypy cannot see it)


def run_scenario(
    scenario: Scenario, folder: Path, reports: Path | None, training: TrainParams | None = None
) -> dict[str, Any]:
    """Replay the scenario under the three policies; return its figures and verdicts."""
    runner, specs = build_backtest(
        scenario.frame, scenario.contract, initial=scenario.initial, batch=scenario.batch,
        policies=POLICIES, params=training or cpu_training(),
        work_dir=folder / "work" / scenario.name, cache_dir=folder / "cache",
        model_name=scenario.name, data_uri=f"bench.loop:{scenario.name}",
        train_window_rows=scenario.window,
    )  # fmt: skip
    print(f"{scenario.name}: {len(runner.plan.batches)} batches of {runner.plan.batch_spec}, "
          f"first model on {runner.plan.initial_rows:,} rows", flush=True)  # fmt: skip
    started, finished = time.perf_counter(), dict[str, float]()
    result = runner.run(specs, progress=_progress(scenario.name, started, finished))
    wall = round(time.perf_counter() - started, 1)
    if reports is not None:
        write_report(result, reports / scenario.name)
    truth = ground_truth(scenario, runner.plan)
    return {
        "description": scenario.description,
        "task": result["task"], "metric": result["metric"],
        "higher_is_better": result["higher_is_better"],
        "batches": len(runner.plan.batches), "batch_spec": runner.plan.batch_spec,
        "initial_rows": runner.plan.initial_rows, "train_window_rows": scenario.window,
        "truth": asdict(truth), "wall_s": wall, "summary": policy_rows(result, finished),
        "criteria": [v.to_dict() for v in judge(result, truth)], "backtest": compact(result),
    }  # fmt: skip


def policy_rows(result: dict[str, Any], finished: dict[str, float]) -> list[dict[str, Any]]:
    """The backtest's summary rows, with each policy's wall time and worst threshold gap."""
    rows, ends = summary_rows(result), [0.0, *finished.values()]
    spans = zip(finished, itertools.pairwise(ends), strict=True)
    walls = {policy: round(end - begin, 1) for policy, (begin, end) in spans}
    for row in rows:
        gap = threshold_gap(result["policies"][row["policy"]]["batches"])
        row["wall_s"] = walls.get(row["policy"])
        row["threshold_gap"] = None if gap is None else round(gap[0], 4)
    return rows


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """The backtest document with only the metrics, decisions and flags of each batch."""
    keys = (*BATCH_KEYS, *result["metrics"])
    policies = {
        name: {**policy, "batches": [{k: b[k] for k in keys if k in b} for b in policy["batches"]]}
        for name, policy in result["policies"].items()
    }
    return {**result, "policies": policies}


def _progress(scenario: str, started: float, finished: dict[str, float]) -> Any:
    """A backtest progress callback printing one line per policy (updated in place on a tty)."""
    live = sys.stdout.isatty()

    def report(policy: str, done: int, total: int) -> None:
        if done < total and not live:
            return
        elapsed = time.perf_counter() - started
        line = f"  {scenario:<10} {policy:<10} {done:>3}/{total} batches {elapsed:8.1f} s"
        print(("\r" if live else "") + line, end="\n" if done == total else "", flush=True)
        if done == total:
            finished[policy] = elapsed

    return report


def measure(
    names: list[str],
    quick: bool,
    reports: Path | None,
    cache: Path | None = None,
    training: TrainParams | None = None,
) -> dict[str, Any]:
    """Run the named scenarios in one folder (one trainings cache); return figures.

    The folder is temporary unless `cache` names one: kept, a rerun trains only what changed.
    """
    started, scenarios, training = time.perf_counter(), {}, training or cpu_training()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as temporary:
        folder = cache or Path(temporary)
        for name in names:
            scenario = build_scenario(name, quick)
            scenarios[name] = run_scenario(scenario, folder, reports, training)
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "policies": POLICIES.split(","),
        "training": params_dict(training),
        "wall_s": round(time.perf_counter() - started, 1),
        "cache_kept": cache is not None,
        "scenarios": scenarios,
    }


def failures(figures: dict[str, Any]) -> list[str]:
    """One line per failing criterion: scenario, criterion, figures."""
    return [
        f"{name}: {c['title']}: {c['figure']}"
        for name, scenario in figures["scenarios"].items()
        for c in scenario["criteria"]
        if c["status"] == "FAIL"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller batches (~5 min)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--reports", type=Path, help="also write each backtest's report here")
    parser.add_argument(
        "--cache", type=Path, help="keep the trainings here: a rerun trains only what changed"
    )
    parser.add_argument(
        "--training", action="append", default=[], metavar="NAME=VALUE",
        help="a training parameter other than its default (repeatable), e.g. batch_size=128",
    )  # fmt: skip
    args = parser.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        parser.error(f"unknown scenarios {unknown}: use some of {', '.join(SCENARIOS)}")
    quiet_telemetry()
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    overrides = dict(option.partition("=")[::2] for option in args.training)
    try:
        training = cpu_training(**overrides)
    except ValueError as exc:  # pydantic's validation errors (unknown names too) are ValueErrors
        parser.error(f"--training: {exc}")
    figures = measure(names, args.quick, args.reports, args.cache, training)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loop.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    (args.out / "loop.md").write_text(markdown(figures))
    print(markdown(figures, details=False))
    failing = failures(figures)
    print(f"{len(failing)} criteria failed" + "".join(f"\n  FAIL {line}" for line in failing))


if __name__ == "__main__":
    main()
