"""The demo's day-by-day timeline: traffic, drift, live metrics from delayed labels, decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from mlops.scenario import SimulationConfig, scenario_events

EVENT_NAMES = {
    "covariate_shift": "spending shift",
    "concept_drift": "new fraud pattern",
    "data_quality": "feed incident",
    "recovery": "feed recovered",
}


@dataclass
class DayRow:
    """One replayed day: what was served, what monitoring saw and decided, what followed."""

    index: int
    date: dt.date
    served: int
    refused: int
    versions: list[str]
    drift_share: float | None = None
    drifted: list[str] = field(default_factory=list)
    decision: str = ""
    action: str = ""
    live: list[dict[str, Any]] = field(default_factory=list)


def short_decision(monitor: dict[str, Any]) -> str:
    """Say a monitor-model result in a few words: retrain (why), held (why), or no."""
    if monitor.get("retrain"):
        return f"retrain ({monitor.get('reason')})"
    triggers = monitor.get("triggers") or []
    return f"held ({', '.join(triggers)})" if triggers else "no"


def world_events(config: SimulationConfig, day: dt.date) -> str:
    """Name the scenario's events in force on a day ("" when the world is stable)."""
    names = [EVENT_NAMES.get(e.kind, e.kind) for e in scenario_events(config) if e.covers(day)]
    return ", ".join(dict.fromkeys(names))


def live_figures(live: list[dict[str, Any]]) -> tuple[str, str]:
    """Return the live ROC AUC and accuracy of a day (the rows-weighted first version's)."""
    if not live:
        return "pending", ""
    best = max(live, key=lambda row: row["labelled_rows"])
    auc, accuracy = best.get("live"), best.get("live_accuracy")
    return (
        f"{auc:.3f}" if auc is not None else "n/a",
        f"{accuracy:.3f}" if accuracy is not None else "n/a",
    )


def render_timeline(rows: list[DayRow], config: SimulationConfig) -> Table:
    """Build the timeline table of the replayed days."""
    table = Table(title="Timeline (live metrics from labels that arrived later)")
    for column in ("day", "date", "world", "served", "refused", "model", "drift", "drifted"):
        table.add_column(column, justify="right" if column in {"served", "refused"} else "left")
    for column in ("live AUC", "live acc", "decision", "then"):
        table.add_column(column)
    for row in rows:
        auc, accuracy = live_figures(row.live)
        drift = f"{row.drift_share:.0%}" if row.drift_share is not None else ""
        table.add_row(
            str(row.index + 1),
            row.date.isoformat(),
            world_events(config, row.date),
            str(row.served),
            str(row.refused),
            ",".join(row.versions),
            drift,
            ", ".join(row.drifted[:3]) + (" ..." if len(row.drifted) > 3 else ""),
            auc,
            accuracy,
            row.decision,
            row.action,
        )
    return table
