"""The monitoring loop over time, read from monitor-model's history: one row per window.

Each history entry is one monitor-model run (a dict, oldest first). Every key is optional: a row
shows what its entry has. Decisions become marks: a retrain event, a new champion, a challenger
refused by the gate (when the registry's events or `refused_challengers` tell) and a data-quality
incident. `retrain_outcomes` says whether each new champion did better live than the one it
replaced. The chart and the page are drawn by mlops/monitoring/loop_chart.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops.charts import finite_or_none
from mlops.monitoring.drift_view import saved_at
from mlops.training.evaluate import metric_delta

History = Sequence[Mapping[str, Any]]
MARGIN = 0.01  # live metrics closer than this are "the same"
MARK_KINDS = ("retrain", "promoted", "refused", "incident")


@dataclass(frozen=True)
class Mark:
    """One decision in a window: its kind (one of MARK_KINDS) and a short label."""

    kind: str
    label: str


@dataclass(frozen=True)
class LoopWindow:
    """One monitored window: who served it, how it did live, how it drifted, what was decided."""

    index: int
    end: datetime | None
    version: str
    metric: str | None
    live: float | None
    labelled_rows: int
    holdout: float | None
    drift_share: float | None
    constraints_passed: bool | None
    decision: str
    marks: tuple[Mark, ...] = ()


def loop_windows(
    history: History, registry_events: Sequence[Mapping[str, Any]] | None = None
) -> list[LoopWindow]:
    """Return one row per history entry, with the marks of its decisions.

    A refused challenger is read from `registry_events` (the registry's history: a version
    registered that never became champion) when there are any, else from a rise of the entries'
    `refused_challengers` count.
    """
    refusals = (
        _refusals_from_registry(history, registry_events)
        if registry_events
        else _refusals_from_counts(history)
    )
    rows, previous = [], None
    for index, entry in enumerate(history):
        version = str(entry.get("champion") or "")
        marks = []
        if entry.get("retrain"):
            marks.append(Mark("retrain", str(entry.get("reason") or "retrain")))
        if version and previous and version != previous:
            marks.append(Mark("promoted", version))
        marks += [Mark("refused", name) for name in refusals.get(index, [])]
        if _is_incident(entry):
            marks.append(Mark("incident", "data quality"))
        previous = version or previous
        row = _version_row(entry, version)
        rows.append(
            LoopWindow(
                index=index,
                end=as_time(entry.get("window_end")),
                version=version,
                metric=row.get("metric"),
                live=finite_or_none(row.get("live")),
                labelled_rows=int(row.get("labelled_rows") or 0),
                holdout=finite_or_none(row.get("holdout")),
                drift_share=finite_or_none(entry.get("drift_share")),
                constraints_passed=entry.get("constraints_passed"),
                decision=str(entry.get("explanation") or ""),
                marks=tuple(marks),
            )
        )
    return rows


def retrain_outcomes(history: History, windows: int = 1) -> list[dict[str, Any]]:
    """Compare each new champion's live metric with the one it replaced, around the change.

    The new champion's first `windows` labelled windows against the old champion's last
    `windows` labelled windows before the change (labelled-rows-weighted means); the verdict
    respects the metric's direction: better, worse, same (within MARGIN) or not yet measured.
    """
    return window_outcomes(loop_windows(history), windows)


def window_outcomes(rows: Sequence[LoopWindow], windows: int = 1) -> list[dict[str, Any]]:
    """Return `retrain_outcomes` of rows from `loop_windows` (`window_index`: the change's row)."""
    changes = [r.index for r in rows if any(m.kind == "promoted" for m in r.marks)]
    outcomes = []
    for n, i in enumerate(changes):
        old, new = _last_champion(rows, i), rows[i].version
        before = [r for r in rows[:i] if r.version == old and _labelled(r)][-windows:]
        stop = changes[n + 1] if n + 1 < len(changes) else len(rows)
        after = [r for r in rows[i:stop] if r.version == new and _labelled(r)][:windows]
        metric = next((r.metric for r in before + after if r.metric), None)
        was, now = _weighted(before), _weighted(after)
        outcome: dict[str, Any] = {"window_index": i, "at": rows[i].end, "from": old, "to": new}
        outcome |= {"metric": metric, "before": was, "after": now, "delta": None}
        if metric is None or was is None or now is None:
            missing = "not yet measured" if now is None else f"{old} was not measured"
            outcomes.append(outcome | {"verdict": missing})
            continue
        delta = metric_delta(metric, now, was)
        verdict = "better" if delta > MARGIN else "worse" if delta < -MARGIN else None
        outcomes.append(outcome | {"delta": delta, "verdict": verdict or f"same (within {MARGIN})"})
    return outcomes


def outcome_sentence(outcome: Mapping[str, Any]) -> str:
    """Say a retrain outcome in one line, with both figures when measured."""
    head = f"{outcome['to']} replaced {outcome['from']}"
    if outcome.get("delta") is None:
        return f"{head}: {outcome['verdict']}"
    return (
        f"{head}: {outcome['metric']} {outcome['after']:.3f} vs {outcome['before']:.3f} "
        f"({outcome['delta']:+.3f}, {outcome['verdict']})"
    )


def describe_mark(mark: Mark) -> str:
    """Say a mark in a few words: "v2 became champion", "v3 refused by the gate"."""
    if mark.kind == "promoted":
        return f"{mark.label} became champion"
    if mark.kind == "refused":
        return f"{mark.label} refused by the gate"
    if mark.kind == "incident":
        return "data-quality incident"
    return f"retrain event ({mark.label})"


def window_cells(row: LoopWindow) -> list[str]:
    """Return a window's table cells, rounded: end, version, live, rows, drift, checks, decision."""
    marks = "; ".join(describe_mark(m) for m in row.marks if m.kind != "retrain")
    return [
        f"{row.end:%Y-%m-%d %H:%M:%S}" if row.end else "-",
        row.version or "-",
        f"{row.live:.3f}" if row.live is not None else "-",
        str(row.labelled_rows),
        f"{row.drift_share:.0%}" if row.drift_share is not None else "-",
        _checks(row.constraints_passed),
        " ".join(part for part in (f"[{marks}]" if marks else "", row.decision) if part),
    ]


def table_header(rows: Sequence[LoopWindow]) -> list[str]:
    """Return the header of the windows' table, naming the live metric."""
    metric = next((r.metric for r in rows if r.metric), None) or "metric"
    names = ["window end", "version", f"live {metric}", "labelled rows", "drift", "constraints"]
    return [*names, "decision"]


def render_loop_markdown(
    history: History,
    link: str | None = None,
    registry_events: Sequence[Mapping[str, Any]] | None = None,
    last: int = 10,
    chart: str = "",
) -> str:
    """Render the "Loop so far" part of a summary: the last windows, the outcomes, the chart.

    `chart`: the chart as Markdown (an embedded image), shown above where its page lies.
    """
    rows = loop_windows(history, registry_events)[-last:]
    lines = ["### Loop so far", ""]
    if not rows:
        lines += ["No windows yet.", ""]
    else:
        table = [table_header(rows), *(window_cells(r) for r in rows)]
        cells = [[c.replace("|", "\\|").replace("\n", " ") for c in row] for row in table]
        lines += ["| " + " | ".join(row) + " |" for row in cells[:1]]
        lines += ["|" + "---|" * len(cells[0])]
        lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        lines.append("")
    outcomes = retrain_outcomes(history)
    lines += [f"- {outcome_sentence(o)}" for o in outcomes] or ["No champion change yet."]
    if chart:
        lines += ["", chart]
    if link:
        lines += ["", saved_at(link, "Loop chart")]
    return "\n".join(lines) + "\n"


def profile_windows_text(starts: Sequence[Any]) -> str:
    """Say which profile windows were merged: "3 profile windows from A to B" (their starts)."""
    times = sorted(t for t in (as_time(s) for s in starts) if t is not None)
    if not times:
        return "No profile window overlaps the monitoring window."
    first, last = f"{times[0]:%Y-%m-%d %H:%M:%S}", f"{times[-1]:%Y-%m-%d %H:%M:%S}"
    if len(times) == 1:
        return f"1 profile window, starting {first} UTC."
    return f"{len(times)} profile windows from {first} to {last} UTC (their starts)."


def as_time(value: Any) -> datetime | None:
    """Read a history time (a datetime or its ISO text) as an aware UTC datetime; None if not."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _checks(passed: Any) -> str:
    return "passed" if passed is True else "failed" if passed is False else "-"


def _version_row(entry: Mapping[str, Any], version: str) -> Mapping[str, Any]:
    rows = entry.get("performance") or []
    return next((r for r in rows if isinstance(r, Mapping) and r.get("version") == version), {})


def _is_incident(entry: Mapping[str, Any]) -> bool:
    """Tell a data-quality incident: its event, or a failed `data_quality` verdict."""
    if "data-quality" in str(entry.get("event") or ""):
        return True
    quality = entry.get("data_quality")
    if isinstance(quality, Mapping):
        return quality.get("passed", quality.get("ok")) is False
    return quality is False


def _refusals_from_registry(
    history: History, events: Sequence[Mapping[str, Any]]
) -> dict[int, list[str]]:
    """Place each registered version that never became champion at the first window after it."""
    champions = {str(h.get("champion")) for h in history} | {
        str(e.get("to")) for e in events if e.get("event") in ("promoted", "rolled_back")
    }
    ends = [as_time(h.get("window_end")) for h in history]
    found: dict[int, list[str]] = {}
    for event in events:
        version, at = str(event.get("to") or ""), as_time(event.get("time"))
        if not history or event.get("event") != "registered" or version in champions:
            continue
        later = [
            i for i, end in enumerate(ends) if at is not None and end is not None and end >= at
        ]
        found.setdefault(later[0] if later else len(history) - 1, []).append(version)
    return found


def _refusals_from_counts(history: History) -> dict[int, list[str]]:
    """Mark a window whose `refused_challengers` count rose under the same champion."""
    found: dict[int, list[str]] = {}
    for i in range(1, len(history)):
        now, before = history[i], history[i - 1]
        count, earlier = now.get("refused_challengers"), before.get("refused_challengers")
        same = now.get("champion") == before.get("champion")
        if same and isinstance(count, int) and isinstance(earlier, int) and count > earlier:
            found[i] = ["a challenger"] * (count - earlier)
    return found


def _last_champion(rows: Sequence[LoopWindow], i: int) -> str:
    return next(r.version for r in reversed(rows[:i]) if r.version)


def _labelled(row: LoopWindow) -> bool:
    return row.live is not None and row.labelled_rows > 0


def _weighted(rows: Sequence[LoopWindow]) -> float | None:
    """Return the labelled-rows-weighted mean of the rows' live metric (None if none)."""
    total = sum(r.labelled_rows for r in rows)
    if not total:
        return None
    value = sum((r.live or 0.0) * r.labelled_rows for r in rows) / total
    return value if math.isfinite(value) else None
