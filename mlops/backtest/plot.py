"""Draw a backtest's metric per batch as a self-contained SVG line chart (standard library only)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from mlops.charts import (
    PALETTE,
    Scale,
    finite_or_none,
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

__all__ = ["finite_or_none", "render_svg"]

Result = Mapping[str, Any]

WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50  # the legend sits in the right margin


def _axes(xs: list[int], ys: list[float], metric: str) -> tuple[list[str], Scale, Scale]:
    """Return the axis elements and the x and y scales for the plot area."""
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    lo, hi = padded_range(ys)
    sx, sy = scale(min(xs, default=0), max(xs, default=1), x0, x1), scale(lo, hi, y1, y0)
    parts = [frame(x0, y0, x1, y1), *y_ticks(x0, lo, hi, sy)]
    x_lo, x_hi = min(xs, default=0), max(xs, default=1)
    for v in range(x_lo, x_hi + 1, max(1, math.ceil((x_hi - x_lo) / 8))):
        parts.append(f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{v}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 10}" text-anchor="middle">batch</text>')
    parts.append(y_label(16, (y0 + y1) / 2, metric))
    return parts, sx, sy


def _series(
    name: str, batches: list[Mapping[str, Any]], metric: str, colour: str, sx: Scale, sy: Scale
) -> list[str]:
    """Draw one policy: a polyline per run of defined values, and its retraining markers."""
    points = [(int(b["index"]), finite_or_none(b.get(metric))) for b in batches]
    policy = html.escape(name, quote=True)
    parts = [f'<g data-policy="{policy}">']
    for run in runs(points):
        parts.append(polyline([(sx(i), sy(v)) for i, v in run], colour))
    for batch, (index, value) in zip(batches, points, strict=True):
        kind = next((k for k in ("promoted", "refused", "failed") if batch.get(k)), None)
        if kind:
            y = sy(value) if value is not None else HEIGHT - BOTTOM
            parts.append(marker(kind, sx(index), y, colour, f' data-batch="{index}"'))
    return [*parts, "</g>"]


def _legend(names: list[str]) -> list[str]:
    x, parts = WIDTH - RIGHT + 16, ['<g class="legend">']
    for row, name in enumerate(names):
        parts += legend_line(x, TOP + 10 + row * 18, PALETTE[row % len(PALETTE)], name)
    notes = (
        ("promoted", "retrained, promoted"),
        ("refused", "refused by the gate"),
        ("failed", "retraining failed"),
    )
    for row, (kind, label) in enumerate(notes, start=len(names) + 1):
        parts += legend_marker(x, TOP + 10 + row * 18, kind, label)
    return [*parts, "</g>"]


def render_svg(result: Result, metric: str | None = None) -> str:
    """Render a line chart of a metric (default: the primary) per batch, one line per policy."""
    metric = metric or result["metric"]
    policies = result["policies"]
    batches = [b for p in policies.values() for b in p["batches"]]
    xs = [int(b["index"]) for b in batches]
    ys = [v for b in batches if (v := finite_or_none(b.get(metric))) is not None]
    axes, sx, sy = _axes(xs, ys, metric)
    parts = [*svg_open(WIDTH, HEIGHT, f"{result['model']}: {metric} per batch by policy"), *axes]
    for i, (name, policy) in enumerate(policies.items()):
        parts += _series(name, policy["batches"], metric, PALETTE[i % len(PALETTE)], sx, sy)
    return "\n".join([*parts, *_legend(list(policies)), "</svg>"])
