"""Render bench/loop.py's figures as markdown: verdicts, one section per scenario, how to rerun."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.loop_criteria import (
    CLOSE_ABSOLUTE,
    CLOSE_RELATIVE,
    CRITERIA,
    STABLE_WINDOWS_PER_RETRAIN,
    THRESHOLD_SLACK,
)

Figures = Mapping[str, Any]

DEFINITIONS = (
    "triggered's mean primary metric (direction respected) is no worse than static's, and so is "
    "its mean accuracy on binary tasks.",
    f"triggered's mean primary metric is within {CLOSE_ABSOLUTE} of every's (classification), or "
    f"its mean RMSE within {CLOSE_RELATIVE:.0%} of every's (regression), with at most half of "
    "every's retrains. In 1 and 2 the means leave out the batches of a broken feed (criterion "
    "4's): a policy that retrains on a broken feed learns the fault and then scores well on the "
    "next broken batch, which says nothing about the concept (on the simulator, every's model "
    "trained over the first broken day scores ROC AUC 0.88 on the second, the others 0.41).",
    f"at most 1 triggered retrain per {STABLE_WINDOWS_PER_RETRAIN} stable windows (1 below "
    f"{STABLE_WINDOWS_PER_RETRAIN}): the whole `stable` history, and the simulator's batches "
    "before its first drift day.",
    "triggered decides no retrain on a batch from a broken feed: `broken`'s broken batches and "
    "the simulator's feed-incident days, as the generators place them.",
    f"on balanced binary labels, triggered's accuracy on each batch is at most {THRESHOLD_SLACK} "
    "below the accuracy its probabilities give with a 0.5 cut (`accuracy_at_0_5`).",
)

TABLES = (
    "Per policy, `compute s` is the backtest's own figure (a training reused from the cache counts "
    "its original time); `wall s` is how long the policy's replay took in this run (static's "
    "includes training the first model, which the others reuse)."
)


def markdown(figures: Figures, *, details: bool = True) -> str:
    """The verdicts table; with `details`, then the criteria, each scenario and how to rerun."""
    mode = "--quick sizes" if figures["quick"] else "default sizes"
    lines = [
        "# Does the retraining loop pay?",
        "",
        f"{len(figures['scenarios'])} histories replayed under {', '.join(figures['policies'])} "
        f"({mode}, training on CPU, the project's default retrain policy and gate), "
        f"{figures['wall_s']:.0f} s in all, {figures['created_at']}.",
        *(
            [
                "",
                "The trainings cache was kept from earlier runs (`--cache`): wall times count "
                "only the trainings not found there.",
            ]
            if figures.get("cache_kept")
            else []
        ),
        "",
        *_table(_verdicts(figures)),
        "",
    ]
    if details:
        lines += ["Criteria:", ""]
        lines += [f"{n}. {text}" for n, text in enumerate(DEFINITIONS, start=1)]
        lines += ["", TABLES, ""]
        for name, scenario in figures["scenarios"].items():
            lines += scenario_section(name, scenario)
        lines += _reproduce()
    return "\n".join(lines) + "\n"


def scenario_section(name: str, scenario: Figures) -> list[str]:
    """One scenario: its history and ground truth, its verdicts, its figures per policy."""
    truth = scenario["truth"]
    known = [
        f"stable windows: {_indices(truth['stable'])}" if truth["stable"] is not None else "",
        f"broken batches: {_indices(truth['broken'])}" if truth["broken"] is not None else "",
        f"balanced labels: {'yes' if truth['balanced'] else 'no'}",
    ]
    setup = (
        f"{scenario['batches']} batches of {scenario['batch_spec']} after a first model on "
        f"{scenario['initial_rows']:,} rows; retrains on the newest "
        f"{scenario['train_window_rows']:,} rows. Ground truth: "
        + "; ".join(k for k in known if k)
        + f". Wall time {scenario['wall_s']:.0f} s."
    )
    verdicts = [["criterion", "result", "figures"]]
    verdicts += [[c["title"], c["status"], c["figure"]] for c in scenario["criteria"]]
    return [f"## `{name}`", "", scenario["description"], "", setup, "", *_table(verdicts), "",
            *_table(_policy_rows(scenario)), ""]  # fmt: skip


def _verdicts(figures: Figures) -> list[list[str]]:
    table = [["scenario", *CRITERIA.values()]]
    for name, scenario in figures["scenarios"].items():
        cells = {c["key"]: _cell(c) for c in scenario["criteria"]}
        table.append([f"`{name}`", *(cells.get(key, "-") for key in CRITERIA)])
    return table


def _cell(criterion: Mapping[str, str]) -> str:
    status = criterion["status"]
    shown = f"**{status}**" if status == "FAIL" else status
    return f"{shown} {criterion['short']}" if criterion.get("short") else shown


def _policy_rows(scenario: Figures) -> list[list[str]]:
    metric = scenario["metric"]
    columns = {"policy": "policy", "mean": metric, "mean_second_half": f"{metric}, 2nd half"}
    columns |= {m: m for m in scenario["backtest"]["metrics"] if m != metric}
    columns |= {"retrains": "retrains", "promotions": "promoted", "refused": "refused",
                "failed": "failed", "compute_s": "compute s", "wall_s": "wall s"}  # fmt: skip
    if scenario["task"] == "binary":
        columns["threshold_gap"] = "worst acc - acc@0.5"
    table = [list(columns.values())]
    for row in scenario["summary"]:
        table.append([_fmt(row.get(key), 1 if key.endswith("_s") else 4) for key in columns])
    return table


def _reproduce() -> list[str]:
    return [
        "## How to reproduce",
        "",
        "```bash",
        "make bench-loop                                  # all six, default sizes (~20 min)",
        ".venv/bin/python -m bench.loop --quick           # fewer, smaller batches (~5 min)",
        ".venv/bin/python -m bench.loop --scenarios stable,broken --reports /tmp/loop",
        "```",
        "",
        "The histories are seeded (the simulator with seed 11, tests/support/histories.py with "
        "seed 0); trainings are seeded too, but wall times depend on the machine. `loop.json` "
        "keeps each backtest document (`scenarios.<name>.backtest`, as `mlops backtest` writes "
        "it, with only the metrics, decisions and flags of each batch), from which "
        "`bench.loop_criteria.judge` recomputes the verdicts; `--reports DIR` also writes each "
        "complete backtest report (JSON, markdown, SVG, HTML). On a machine shared with other "
        "jobs, `OMP_NUM_THREADS=1` keeps torch's threads from waiting on each other, which "
        "otherwise makes each training several times slower.",
    ]


def _indices(values: Sequence[int] | None) -> str:
    """Batch indices as ranges: 0-8, 19, 20."""
    if not values:
        return "none"
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(rows: Iterable[Sequence[Any]]) -> list[str]:
    rows = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
    ]
