"""Draw a backtest's metric per batch as a self-contained SVG line chart (standard library only)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

Result = Mapping[str, Any]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50  # the legend sits in the right margin


def finite_or_none(value: Any) -> float | None:
    """Return value as a finite float, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _runs(points: list[tuple[int, float | None]]) -> list[list[tuple[int, float]]]:
    """Split (index, value) points into runs of consecutive defined values."""
    runs: list[list[tuple[int, float]]] = [[]]
    for index, value in points:
        if value is None:
            runs.append([])
        else:
            runs[-1].append((index, value))
    return [run for run in runs if run]


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Any:
    span = hi - lo or 1.0
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def _axes(xs: list[int], ys: list[float], metric: str) -> tuple[list[str], Any, Any]:
    """Return the axis elements and the x and y scales for the plot area."""
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - pad, hi + pad
    sx, sy = _scale(min(xs, default=0), max(xs, default=1), x0, x1), _scale(lo, hi, y1, y0)
    parts = [
        f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#999"/>'
    ]
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        parts.append(f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    x_lo, x_hi = min(xs, default=0), max(xs, default=1)
    for v in range(x_lo, x_hi + 1, max(1, math.ceil((x_hi - x_lo) / 8))):
        parts.append(f'<text x="{sx(v):.1f}" y="{y1 + 16}" text-anchor="middle">{v}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 10}" text-anchor="middle">batch</text>')
    parts.append(
        f'<text x="16" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {(y0 + y1) / 2})">{html.escape(metric)}</text>'
    )
    return parts, sx, sy


def _marker(kind: str, x: float, y: float, colour: str, attrs: str = "") -> str:
    """Draw one marker: a filled circle (promoted), an x (refused) or a hollow square (failed)."""
    if kind == "promoted":
        return f'<circle class="promoted"{attrs} cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
    if kind == "refused":
        d = f"M{x - 4:.1f} {y - 4:.1f}l8 8m-8 0l8 -8"  # two strokes crossing at (x, y)
        return f'<path class="refused"{attrs} d="{d}" stroke="{colour}" stroke-width="2"/>'
    return (
        f'<rect class="failed"{attrs} x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
        f'fill="white" stroke="{colour}" stroke-width="1.5"/>'
    )


def _series(
    name: str, batches: list[Mapping[str, Any]], metric: str, colour: str, sx: Any, sy: Any
) -> list[str]:
    """Draw one policy: a polyline per run of defined values, and its retraining markers."""
    points = [(int(b["index"]), finite_or_none(b.get(metric))) for b in batches]
    policy = html.escape(name, quote=True)
    parts = [f'<g data-policy="{policy}">']
    for run in _runs(points):
        run = run if len(run) > 1 else run * 2  # a lone value still shows as a round dot
        coords = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in run)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" '
            'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/>'
        )
    for batch, (index, value) in zip(batches, points, strict=True):
        kind = next((k for k in ("promoted", "refused", "failed") if batch.get(k)), None)
        if kind:
            y = sy(value) if value is not None else HEIGHT - BOTTOM
            parts.append(_marker(kind, sx(index), y, colour, f' data-batch="{index}"'))
    return [*parts, "</g>"]


def _legend(names: list[str]) -> list[str]:
    x, parts = WIDTH - RIGHT + 16, ['<g class="legend">']
    entries = [(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(names)]
    for row, (name, colour) in enumerate(entries):
        y = TOP + 10 + row * 18
        parts.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 20}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{x + 26}" y="{y + 4}">{html.escape(name)}</text>')
    notes = (
        ("promoted", "retrained, promoted"),
        ("refused", "refused by the gate"),
        ("failed", "retraining failed"),
    )
    for row, (kind, label) in enumerate(notes, start=len(entries) + 1):
        y = TOP + 10 + row * 18
        parts.append(_marker(kind, x + 10, y, "#333"))
        parts.append(f'<text x="{x + 26}" y="{y + 4}">{label}</text>')
    return [*parts, "</g>"]


def render_svg(result: Result, metric: str | None = None) -> str:
    """Render a line chart of a metric (default: the primary) per batch, one line per policy."""
    metric = metric or result["metric"]
    policies = result["policies"]
    batches = [b for p in policies.values() for b in p["batches"]]
    xs = [int(b["index"]) for b in batches]
    ys = [v for b in batches if (v := finite_or_none(b.get(metric))) is not None]
    axes, sx, sy = _axes(xs, ys, metric)
    title = html.escape(f"{result['model']}: {metric} per batch by policy")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
        *axes,
    ]
    for i, (name, policy) in enumerate(policies.items()):
        parts += _series(name, policy["batches"], metric, PALETTE[i % len(PALETTE)], sx, sy)
    return "\n".join([*parts, *_legend(list(policies)), "</svg>"])
