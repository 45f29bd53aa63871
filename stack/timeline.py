"""The demo's day-by-day timeline: traffic, drift, live metrics from delayed labels, decisions."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import JustifyMethod
from rich.table import Table

from mlops.data.scenario import SimulationConfig, scenario_events

EVENT_TAGS = {
    "covariate_shift": "shift",
    "concept_drift": "fraud",
    "data_quality": "broken",
    "recovery": "fixed",
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
    trial: str = ""  # the version on trial while the day was served ("v2 shadow")


def short_decision(monitor: dict[str, Any]) -> str:
    """Say a monitor-model result in a few words: retrain: why, held: why, or no."""
    if monitor.get("retrain"):
        return f"retrain: {_short(monitor.get('reason') or '')}"
    if monitor.get("reason") == "data-quality":
        return "no: broken feed"
    triggers = [
        t
        for t in monitor.get("triggers") or []
        if t != "drift" or monitor.get("evidence", "drift") == "drift"
    ]  # drift beside labels or an estimate only explains
    return f"held: {'+'.join(_short(t) for t in triggers)}" if triggers else "no"


def _short(trigger: str) -> str:
    return "perf" if trigger == "performance" else trigger


def world_legend(config: SimulationConfig) -> str:
    """Describe the scenario's events with their days (1-based) and tags, in one line."""
    first = config.date_of(0)
    parts = []
    for event in scenario_events(config):
        start, end = (event.start - first).days + 1, (event.end - first).days + 1
        tag = EVENT_TAGS.get(event.kind, event.kind)
        parts.append(f"{tag} = {event.kind.replace('_', ' ')} (days {start}-{end})")
    return "World: " + "; ".join(parts)


def world_events(config: SimulationConfig, day: dt.date) -> str:
    """Tag the scenario's events in force on a day ("" when the world is as it was)."""
    tags = [
        EVENT_TAGS[e.kind]
        for e in scenario_events(config)
        if e.covers(day) and e.kind in EVENT_TAGS
    ]
    return ",".join(dict.fromkeys(tags))


def live_figures(live: list[dict[str, Any]], versions: list[str] | None = None) -> tuple[str, str]:
    """Return the live ROC AUC and accuracy of a day: the answering version with most rows.

    A shadow scores the same rows as the champion: its figures are not what clients got.
    """
    answered = [row for row in live if versions is None or row["version"] in versions] or live
    if not answered:
        return "pending", ""
    best = max(answered, key=lambda row: row["labelled_rows"])
    auc, accuracy = best.get("live"), best.get("live_accuracy")
    return (
        f"{auc:.3f}" if auc is not None else "n/a",
        f"{accuracy:.3f}" if accuracy is not None else "n/a",
    )


def served_auc(row: DayRow) -> float | None:
    """Return the live ROC AUC of what clients got on a day (None before its labels landed)."""
    answered = [r for r in row.live if r["version"] in row.versions and r.get("live") is not None]
    if not answered:
        return None
    return float(max(answered, key=lambda r: r["labelled_rows"])["live"])


def recovery(rows: list[DayRow], config: SimulationConfig, last: int = 3) -> str:
    """Compare the live ROC AUC before the concept drift with that of the last labelled days."""
    if config.scenario != "drift":
        return ""
    drift_day = config.timeline().drift_start
    before = [a for r in rows if r.index < drift_day and (a := served_auc(r)) is not None]
    after = [(r.index + 1, a) for r in rows if r.index >= drift_day
             and (a := served_auc(r)) is not None][-last:]  # fmt: skip
    if not before or not after:
        return ""
    level = sum(before) / len(before)
    gap = level - min(a for _, a in after)
    figures = ", ".join(f"{a:.3f}" for _, a in after)
    return (
        f"Live ROC AUC before the concept drift: {level:.3f} (mean of {len(before)} days); on the "
        f"last {len(after)} labelled days ({after[0][0]}-{after[-1][0]}): {figures}, at most "
        f"{max(gap, 0.0):.3f} below it"
    )


def render_timeline(rows: list[DayRow], config: SimulationConfig) -> Table:
    """Build the timeline table of the replayed days (about 125 columns wide)."""
    table = Table(
        title="Timeline: live metrics come from the labels that arrived a day later",
        caption=world_legend(config),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    for column in ("day", "world", "served", "refused", "model", "drift", "top drift"):
        justify: JustifyMethod = "right" if column in {"served", "refused"} else "left"
        width = 12 if column == "top drift" else None
        table.add_column(column, justify=justify, no_wrap=True, max_width=width)
    for column in ("AUC", "acc"):
        table.add_column(column, no_wrap=True)
    # what was decided and what followed wrap within their column, so that no other is cut
    table.add_column("decision", max_width=18)
    table.add_column("then", ratio=1)
    for row in rows:
        auc, accuracy = live_figures(row.live, row.versions)
        table.add_row(
            str(row.index + 1),
            world_events(config, row.date),
            str(row.served),
            str(row.refused),
            ",".join(row.versions) + (f" +{row.trial}" if row.trial else ""),
            f"{row.drift_share:.0%}" if row.drift_share is not None else "",
            row.drifted[0] if row.drifted else "",
            auc,
            accuracy,
            row.decision,
            row.action,
        )
    return table
