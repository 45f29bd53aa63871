"""Draw the monitoring loop over time as a self-contained SVG chart and an HTML page.

Top: the champion's live metric per window (a line per version, its holdout figure dashed) on
bands naming the version that served. Middle: a strip of decision marks. Bottom: the drift share.
The x axis is the window end. Rows come from mlops/monitoring/timeline.py.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from fsspec.core import url_to_fs

from mlops.charts import (
    PALETTE,
    Scale,
    frame,
    legend_line,
    legend_marker,
    marker,
    padded_range,
    polyline,
    runs,
    scale,
    svg_open,
    y_label,
    y_ticks,
)
from mlops.monitoring.timeline import (
    MARK_KINDS,
    History,
    LoopWindow,
    loop_windows,
    outcome_sentence,
    retrain_outcomes,
    table_header,
    window_cells,
    window_outcomes,
)
from mlops.registry.locking import write_atomic

WIDTH, HEIGHT = 960, 500
LEFT, RIGHT, TOP = 90, 200, 40  # the legend sits in the right margin
X0, X1 = LEFT, WIDTH - RIGHT
METRIC_Y, STRIP_Y, DRIFT_Y = (TOP, 290), (300, 364), (376, 456)
MARK_COLOURS = {"retrain": "#ff7f0e", "promoted": "#2ca02c", "refused": "#d62728"}
MARK_COLOURS |= {"incident": "#9467bd"}
MARK_NAMES = {
    "retrain": "retrain event",
    "promoted": "new champion",
    "refused": "refused by the gate",
    "incident": "data-quality incident",
}
LANES = {"retrain": "retrain", "promoted": "champion", "refused": "refused"}
LANES |= {"incident": "data quality"}
Events = Sequence[Mapping[str, Any]] | None


def render_loop_svg(history: History, registry_events: Events = None, model: str = "") -> str:
    """Render the loop chart of a monitoring history (oldest first)."""
    rows = loop_windows(history, registry_events)
    model = model or str(next((h.get("model") for h in history if h.get("model")), "model"))
    parts = svg_open(WIDTH, HEIGHT, f"{model}: the monitoring loop over time")
    if not rows:
        middle = (METRIC_Y[0] + DRIFT_Y[1]) / 2
        parts += [frame(X0, METRIC_Y[0], X1, DRIFT_Y[1])]
        parts += [
            f'<text x="{(X0 + X1) / 2}" y="{middle}" text-anchor="middle">no windows yet</text>'
        ]
        return "\n".join([*parts, "</svg>"])
    xs = _positions(rows)
    sx = _x_scale(xs)
    versions = list(dict.fromkeys(r.version for r in rows if r.version))
    colours = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
    parts += _bands(rows, xs, sx, colours)
    parts += _metric_panel(rows, xs, sx, colours)
    parts += _strip(rows, xs, sx)
    parts += _drift_panel(rows, xs, sx)
    parts += _x_axis(rows, xs, sx)
    parts += _legend(versions, colours)
    return "\n".join([*parts, "</svg>"])


def render_loop_html(history: History, registry_events: Events = None, model: str = "") -> str:
    """Render a standalone page: the chart, the retrain outcomes and a table of every window."""
    rows = loop_windows(history, registry_events)
    model = model or str(next((h.get("model") for h in history if h.get("model")), "model"))
    title = html.escape(f"Monitoring loop of {model}")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table_header(rows))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in window_cells(r)) + "</tr>"
        for r in rows
    )
    outcomes = [f"<li>{html.escape(outcome_sentence(o))}</li>" for o in retrain_outcomes(history)]
    listed = f"<ul>{''.join(outcomes)}</ul>" if outcomes else "<p>No champion change yet.</p>"
    empty = "" if rows else "<p>No windows yet.</p>\n"
    style = (
        "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "td:nth-child(3),td:nth-child(4),td:nth-child(5){text-align:right}"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head>\n<body><h1>{title}</h1>\n"
        f"<figure>{render_loop_svg(history, registry_events, model)}</figure>\n"
        f"<h2>Retrain outcomes</h2>\n{listed}\n<h2>Windows</h2>\n{empty}"
        f'<table class="windows"><tr>{head}</tr>{body}</table>\n</body></html>\n'
    )


def save_loop_chart(
    reports_url: str, model: str, history: History, registry_events: Events = None
) -> str:
    """Write `<reports_url>/<model>/loop.svg` and `loop.html` atomically; return the page's URL."""
    folder = f"{reports_url.rstrip('/')}/{model}"
    fs, path = url_to_fs(folder)
    fs.makedirs(path, exist_ok=True)
    write_atomic(fs, f"{path}/loop.svg", render_loop_svg(history, registry_events, model).encode())
    page = render_loop_html(history, registry_events, model).encode()
    write_atomic(fs, f"{path}/loop.html", page)
    return f"{folder}/loop.html" if "://" in folder else fs.unstrip_protocol(f"{path}/loop.html")


def _positions(rows: Sequence[LoopWindow]) -> list[float]:
    """Place windows by their end time, or by their order when an end is missing or out of order."""
    times = [r.end.timestamp() for r in rows if r.end]
    if len(times) == len(rows) and times == sorted(times):
        return times
    return [float(r.index) for r in rows]


def _x_scale(xs: Sequence[float]) -> Scale:
    """Scale positions onto the plot, half a mean step of room at each side."""
    lo, hi = min(xs), max(xs)
    half = (hi - lo) / (len(xs) - 1) / 2 if len(xs) > 1 and hi > lo else 1.0
    return scale(lo - half, hi + half, X0, X1)


def _bands(
    rows: Sequence[LoopWindow], xs: Sequence[float], sx: Scale, colours: dict[str, str]
) -> list[str]:
    """Shade the span of each run of windows served by one version, and name it."""
    parts = []
    edges = [X0, *((sx(a) + sx(b)) / 2 for a, b in pairwise(xs)), X1]
    start = 0
    for i in range(1, len(rows) + 1):
        if i < len(rows) and rows[i].version == rows[start].version:
            continue
        version, left, right = rows[start].version, edges[start], edges[i]
        if version:
            colour, name = colours[version], html.escape(version, quote=True)
            parts.append(
                f'<rect class="band" data-version="{name}" x="{left:.1f}" y="{TOP}" '
                f'width="{right - left:.1f}" height="{DRIFT_Y[1] - TOP}" fill="{colour}" '
                'fill-opacity="0.08"/>'
            )
            parts.append(
                f'<text class="version" x="{(left + right) / 2:.1f}" y="{TOP + 14}" '
                f'text-anchor="middle" fill="{colour}">{html.escape(version)}</text>'
            )
        start = i
    return parts


def _metric_panel(
    rows: Sequence[LoopWindow], xs: Sequence[float], sx: Scale, colours: dict[str, str]
) -> list[str]:
    """Draw the champion's live metric, a line per version, and each version's holdout figure."""
    y0, y1 = METRIC_Y
    holdouts = {r.version: r.holdout for r in rows if r.holdout is not None}
    values = [r.live for r in rows if r.live is not None] + list(holdouts.values())
    lo, hi = padded_range([v for v in values if v is not None])
    hi += (hi - lo) * 0.2  # headroom for the version names and the retrain outcomes
    sy = scale(lo, hi, y1, y0)
    metric = next((r.metric for r in rows if r.metric), None) or "live metric"
    parts = [frame(X0, y0, X1, y1), *y_ticks(X0, lo, hi, sy), y_label(16, (y0 + y1) / 2, metric)]
    for version, colour in colours.items():
        points = [
            (x, r.live if r.version == version else None) for x, r in zip(xs, rows, strict=True)
        ]
        for run in runs(points):
            parts.append(polyline([(sx(x), sy(v)) for x, v in run], colour, ' class="live"'))
        parts += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(v):.1f}" r="2.5" fill="{colour}"/>'
            for x, v in points
            if v is not None
        ]
        holdout = holdouts.get(version)
        spans = [x for x, r in zip(xs, rows, strict=True) if r.version == version]
        if holdout is not None and spans:
            left, right = sx(min(spans)) - 8, sx(max(spans)) + 8
            parts.append(
                f'<line class="holdout" x1="{left:.1f}" y1="{sy(holdout):.1f}" x2="{right:.1f}" '
                f'y2="{sy(holdout):.1f}" stroke="{colour}" stroke-dasharray="5 3"/>'
            )
    return parts + _outcome_notes(rows, xs, sx, y0 + 28)


def _outcome_notes(
    rows: Sequence[LoopWindow], xs: Sequence[float], sx: Scale, sy_top: float
) -> list[str]:
    """Write each champion change's verdict next to where it happened."""
    parts = []
    for n, outcome in enumerate(window_outcomes(rows)):
        verdict = outcome["verdict"]
        if outcome.get("delta") is not None:
            verdict = f"{verdict} ({outcome['delta']:+.3f})"
        text = html.escape(f"{outcome['to']} vs {outcome['from']}: {verdict}")
        y = sy_top + 12 * (n % 2)  # alternate rows so that close changes stay readable
        x = sx(xs[outcome["window_index"]]) + 4
        parts.append(f'<text class="outcome" x="{x:.1f}" y="{y}" font-size="11">{text}</text>')
    return parts


def _strip(rows: Sequence[LoopWindow], xs: Sequence[float], sx: Scale) -> list[str]:
    """Mark each decision on its own row of the strip: retrain, new champion, refused, incident."""
    y0, y1 = STRIP_Y
    step = (y1 - y0) / len(MARK_KINDS)
    lanes = {kind: y0 + step * (i + 0.5) for i, kind in enumerate(MARK_KINDS)}
    parts = [frame(X0, y0, X1, y1)]
    for kind, y in lanes.items():
        parts.append(
            f'<text x="{X0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{LANES[kind]}</text>"
        )
    for x, row in zip(xs, rows, strict=True):
        for mark in row.marks:
            tip = html.escape(f"{MARK_NAMES[mark.kind]}: {mark.label}")
            attrs = f' data-window="{row.index}" data-label="{html.escape(mark.label, quote=True)}"'
            parts.append(
                f"<g><title>{tip}</title>"
                f"{marker(mark.kind, sx(x), lanes[mark.kind], MARK_COLOURS[mark.kind], attrs)}</g>"
            )
    return parts


def _drift_panel(rows: Sequence[LoopWindow], xs: Sequence[float], sx: Scale) -> list[str]:
    """Draw the share of drifted features per window, on 0-100%."""
    y0, y1 = DRIFT_Y
    sy = scale(0.0, 1.0, y1, y0)
    parts = [frame(X0, y0, X1, y1), y_label(16, (y0 + y1) / 2, "drift share")]
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{X0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.0%}</text>')
    points = [(x, r.drift_share) for x, r in zip(xs, rows, strict=True)]
    for run in runs(points):
        parts.append(polyline([(sx(x), sy(v)) for x, v in run], "#555", ' class="drift"'))
    return parts


def _x_axis(rows: Sequence[LoopWindow], xs: Sequence[float], sx: Scale) -> list[str]:
    """Label up to 7 windows, spread evenly, with their end time (or their number)."""
    days = {r.end.date() for r in rows if r.end}
    shown = sorted({round(i * (len(rows) - 1) / 6) for i in range(7)}) if len(rows) > 1 else [0]
    parts = []
    for i in shown:
        end = rows[i].end
        text = f"#{i + 1}" if end is None else f"{end:%H:%M:%S}" if len(days) == 1 else ""
        text = text or f"{end:%m-%d %H:%M}"
        parts.append(
            f'<text x="{sx(xs[i]):.1f}" y="{DRIFT_Y[1] + 16}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<text x="{(X0 + X1) / 2}" y="{HEIGHT - 10}" text-anchor="middle">window end (UTC)</text>'
    )
    return parts


def _legend(versions: Sequence[str], colours: dict[str, str]) -> list[str]:
    x, parts = X1 + 16, ['<g class="legend">']
    entries = [(f"{v} live", colours[v], "") for v in versions]
    entries += [("holdout (per version)", "#333", "5 3"), ("drift share", "#555", "")]
    for row, (label, colour, dash) in enumerate(entries):
        parts += legend_line(x, TOP + 10 + row * 18, colour, label, dash)
    for row, kind in enumerate(MARK_KINDS, start=len(entries) + 1):
        parts += legend_marker(x, TOP + 10 + row * 18, kind, MARK_NAMES[kind])
    return [*parts, "</g>"]
