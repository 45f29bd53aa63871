"""What a study shows: its trials table, optimisation history and parameter importances (SVG)."""

from __future__ import annotations

import html
import math
from typing import Any

import optuna

from mlops.charts import (
    PALETTE,
    finite_or_none,
    frame,
    legend_line,
    marker,
    padded_range,
    polyline,
    scale,
    svg_open,
    y_label,
    y_ticks,
)
from mlops.monitoring.drift_view import svg_image
from mlops.training.tuning import MONITOR

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 620, 44, 250


def trials_table(study: optuna.Study) -> list[dict[str, Any]]:
    """Return one row per trial: number, state, value, duration in seconds and parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if (
            t.datetime_complete and t.datetime_start
        ) else None  # fmt: skip
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            MONITOR: None if t.value is None else round(t.value, 5),
            "seconds": None if seconds is None else round(seconds, 1),
        }
        row |= {k: round(v, 6) if isinstance(v, float) else v for k, v in t.params.items()}
        rows.append(row)
    return rows


def param_importances(study: optuna.Study, seed: int = 0) -> dict[str, float]:
    """Return fANOVA importances of the parameters ({} under two complete trials)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError):  # e.g. every complete trial drew the same values
        return {}
    return {name: float(value) for name, value in found.items()}


def history_svg(study: optuna.Study) -> str:
    """Draw each complete trial's value (dots) and the best so far (line), by trial number."""
    done = [
        (t.number, v)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if (v := finite_or_none(t.value)) is not None
    ]
    parts = svg_open(WIDTH, HEIGHT, f"Optimisation history ({MONITOR}, lower is better)")
    last = max((t.number for t in study.get_trials(deepcopy=False)), default=1)
    sx = scale(0, max(last, 1), LEFT + 8, RIGHT - 8)
    lo, hi = padded_range([v for _, v in done])
    sy = scale(lo, hi, BOTTOM, TOP)
    parts += [frame(LEFT, TOP, RIGHT, BOTTOM), *y_ticks(LEFT, lo, hi, sy)]
    parts.append(y_label(16, (TOP + BOTTOM) / 2, MONITOR))
    parts.append(
        f'<text x="{(LEFT + RIGHT) / 2}" y="{BOTTOM + 34}" text-anchor="middle">trial</text>'
    )
    for n in sorted({0, last // 2, last}):
        parts.append(f'<text x="{sx(n):.1f}" y="{BOTTOM + 16}" text-anchor="middle">{n}</text>')
    best: list[tuple[float, float]] = []
    for n, v in done:
        floor = min(v, best[-1][1]) if best else v
        best.append((n, floor))
        parts.append(marker("promoted", sx(n), sy(v), PALETTE[0]))
    if best:
        parts.append(polyline([(sx(n), sy(v)) for n, v in best], PALETTE[1]))
    parts += legend_line(LEFT + 10, HEIGHT - 12, PALETTE[1], "best so far")
    parts.append(marker("promoted", LEFT + 150, HEIGHT - 12, PALETTE[0]))
    parts.append(f'<text x="{LEFT + 160}" y="{HEIGHT - 8}">complete trial</text>')
    return "\n".join([*parts, "</svg>"])


def importance_svg(importances: dict[str, float]) -> str:
    """Draw the parameters' importances as horizontal bars, largest first."""
    items = sorted(importances.items(), key=lambda kv: -kv[1])
    height = 60 + 26 * max(len(items), 1)
    parts = svg_open(WIDTH, height, "Parameter importances (fANOVA)")
    x0, x1 = 150, WIDTH - 70
    for i, (name, value) in enumerate(items):
        y = 44 + 26 * i
        w = (x1 - x0) * (value if math.isfinite(value) else 0.0)
        parts += [
            f'<text x="{x0 - 8}" y="{y + 13}" text-anchor="end">{html.escape(name)}</text>',
            f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="18" fill="{PALETTE[0]}"/>',
            f'<text x="{x0 + w + 6:.1f}" y="{y + 13}">{value:.2f}</text>',
        ]
    if not items:
        parts.append(f'<text x="{WIDTH / 2}" y="60" text-anchor="middle">no importances</text>')
    return "\n".join([*parts, "</svg>"])


def tuning_markdown(study: optuna.Study, importances: dict[str, float]) -> str:
    """Render the study: counts, best trial, history chart, importances chart, trials table."""
    table = trials_table(study)
    states = [row["state"] for row in table]
    lines = [
        f"# Study `{study.study_name}`",
        "",
        f"{len(table)} trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} "
        f"pruned, {states.count('FAIL')} failed. Trials minimise the best {MONITOR} on the "
        "validation split.",
        "",
    ]
    if states.count("COMPLETE"):
        best = study.best_trial
        lines += [f"Best: trial {best.number}, {MONITOR} {best.value:.5f}, {best.params}", ""]
    lines += [svg_image(history_svg(study), "value per trial and best so far"), ""]
    if importances:
        lines.append(svg_image(importance_svg(importances), "parameter importances"))
    else:
        lines.append("Parameter importances need at least two complete trials that differ.")
    if table:
        columns = list(dict.fromkeys(k for row in table for k in row))
        lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in table]
    return "\n".join(lines) + "\n"
