"""Pieces of hand-written SVG charts (standard library only): scales, axes, lines and markers.

Shared by the backtest's chart (mlops/backtest/plot.py) and monitoring's loop chart
(mlops/monitoring/timeline.py), so that both read alike: same palette, fonts and marker shapes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

X = TypeVar("X", int, float)
Scale = Callable[[float], float]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MARKERS = ("promoted", "refused", "failed", "retrain", "incident")


def finite_or_none(value: Any) -> float | None:
    """Return value as a finite float, or None when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def runs(points: Sequence[tuple[X, float | None]]) -> list[list[tuple[X, float]]]:
    """Split (x, value) points into runs of consecutive defined values."""
    found: list[list[tuple[X, float]]] = [[]]
    for x, value in points:
        if value is None:
            found.append([])
        else:
            found[-1].append((x, value))
    return [run for run in found if run]


def scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Scale:
    """Return the linear map of [lo, hi] onto [out_lo, out_hi] (a flat range maps to out_lo)."""
    span = hi - lo or 1.0
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def padded_range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    """Return the range of values widened by `pad` of its span on each side ((0, 1) if none)."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    margin = (hi - lo) * pad or 0.5
    return lo - margin, hi + margin


def svg_open(width: int, height: int, title: str) -> list[str]:
    """Return the opening tag of a chart, its white background and its centred title.

    The background keeps the black text readable where the page is dark (the Prefect UI's theme).
    """
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">'
        f"{html.escape(title)}</text>",
    ]


def frame(x0: float, y0: float, x1: float, y1: float) -> str:
    """Draw the border of a plot area."""
    return (
        f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#999"/>'
    )


def y_ticks(x0: float, lo: float, hi: float, sy: Scale, count: int = 5) -> list[str]:
    """Label `count` evenly spaced values of [lo, hi] left of the plot area."""
    parts = []
    for i in range(count):
        v = lo + (hi - lo) * i / (count - 1)
        parts.append(f'<text x="{x0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    return parts


def y_label(x: float, y: float, text: str) -> str:
    """Write an axis title turned a quarter left, centred on (x, y)."""
    return (
        f'<text x="{x}" y="{y}" text-anchor="middle" '
        f'transform="rotate(-90 {x} {y})">{html.escape(text)}</text>'
    )


def polyline(coords: Sequence[tuple[float, float]], colour: str, extra: str = "") -> str:
    """Draw a 2-px line through screen points; a lone point still shows as a round dot."""
    coords = coords if len(coords) > 1 else list(coords) * 2
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    return (
        f'<polyline points="{points}" fill="none" stroke="{colour}" '
        f'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"{extra}/>'
    )


def marker(kind: str, x: float, y: float, colour: str, attrs: str = "") -> str:
    """Draw one marker of a kind in MARKERS, centred on (x, y).

    promoted: a filled circle; refused: an x; failed: a hollow square; retrain: a hollow
    triangle; incident: a filled diamond.
    """
    if kind == "promoted":
        return f'<circle class="promoted"{attrs} cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
    if kind == "refused":
        d = f"M{x - 4:.1f} {y - 4:.1f}l8 8m-8 0l8 -8"  # two strokes crossing at (x, y)
        return f'<path class="refused"{attrs} d="{d}" stroke="{colour}" stroke-width="2"/>'
    if kind == "retrain":
        d = f"M{x:.1f} {y - 5:.1f}l5 9h-10z"
        return (
            f'<path class="retrain"{attrs} d="{d}" fill="white" stroke="{colour}" '
            'stroke-width="1.5"/>'
        )
    if kind == "incident":
        d = f"M{x:.1f} {y - 5:.1f}l5 5l-5 5l-5 -5z"
        return f'<path class="incident"{attrs} d="{d}" fill="{colour}"/>'
    return (
        f'<rect class="failed"{attrs} x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" '
        f'fill="white" stroke="{colour}" stroke-width="1.5"/>'
    )


def legend_line(x: float, y: float, colour: str, label: str, dash: str = "") -> list[str]:
    """Draw a legend entry: a short line in a colour (dashed if `dash`) and its label."""
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return [
        f'<line x1="{x}" y1="{y}" x2="{x + 20}" y2="{y}" stroke="{colour}" '
        f'stroke-width="2"{style}/>',
        f'<text x="{x + 26}" y="{y + 4}">{html.escape(label)}</text>',
    ]


def legend_marker(x: float, y: float, kind: str, label: str) -> list[str]:
    """Draw a legend entry: a dark marker of a kind and its label."""
    return [
        marker(kind, x + 10, y, "#333"),
        f'<text x="{x + 26}" y="{y + 4}">{html.escape(label)}</text>',
    ]
