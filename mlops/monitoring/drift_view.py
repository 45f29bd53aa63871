"""Show a window's drift report to people: the verdict first, then why, in rounded figures.

`drift_table` is the table artifact (one row per column, drifting columns first), `drift_svg` a
bar chart of each column's effect size against its threshold, and `drift_markdown` puts them in
one Markdown page with the chart embedded, so that the Prefect UI shows the whole report without
reaching any file the run wrote.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from mlops.charts import frame, svg_open
from mlops.monitoring.drift import DriftReport, DriftRow, DriftThresholds

VERDICTS = {"drift": "drifted", "possible": "possible", "none": "stable"}
ORDER = ("drifted", "possible", "stable", "not tested")
COLOURS = {"drifted": "#d62728", "possible": "#ff7f0e", "stable": "#2ca02c", "not tested": "#999"}
EFFECT_NAMES = {"ks": "KS D", "chi-square": "Hellinger"}
CHART_WIDTH, ROW_HEIGHT, LABEL_WIDTH, CHART_TOP = 760, 22, 190, 44
MAX_RATIO = 10.0  # bars are drawn on a log scale of effect / threshold, from 1/10 to 10


def verdict(row: DriftRow) -> str:
    """Return "drifted", "possible" (significant, too small to act on), "stable" or "not tested"."""
    if row.p_value is None or row.effect_size is None:
        return "not tested"
    return VERDICTS[row.category]


def round_figure(value: float | None, digits: int = 3) -> float | None:
    """Round to `digits` significant digits (None stays None)."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def p_text(p_value: float) -> str:
    """Write a p-value the way people read it: "< 0.001" below a thousandth."""
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def reason(row: DriftRow, thresholds: DriftThresholds) -> str:
    """Say why the column got its verdict: its effect size and p-value against the thresholds."""
    if row.p_value is None or row.effect_size is None:
        return row.note or "not tested"
    limit = thresholds.effect_threshold(row.kind)
    large = row.effect_size >= limit
    significant = row.p_value < thresholds.alpha
    effect = f"{EFFECT_NAMES[row.test]} {row.effect_size:.3f} {'>=' if large else '<'} {limit:g}"
    p_value = p_text(row.p_value)
    chance = f"p {p_value} {'<' if significant else '>='} {thresholds.alpha:g}"
    if not significant:
        return f"{chance}: no significant difference"
    if not large:
        return f"{effect}: significant ({chance}) but too small to act on"
    return f"{effect} and {chance}"


def drift_table(report: DriftReport) -> list[dict[str, Any]]:
    """Return one row per column for a table artifact: verdict and why first, figures rounded.

    Drifted columns come first, then possible, stable and untested ones; within each, the larger
    effect (relative to its threshold) first.
    """
    rows = sorted(report.rows, key=lambda row: _sort_key(row, report.thresholds))
    return [
        {
            "verdict": verdict(row),
            "column": row.feature,
            "why": reason(row, report.thresholds),
            "role": row.role,
            "test": row.test,
            "statistic": round_figure(row.statistic),
            "p_value": None if row.p_value is None else p_text(row.p_value),
            "effect_size": round_figure(row.effect_size),
            "hellinger": round_figure(row.hellinger),
            "note": row.note,
        }
        for row in rows
    ]


def drift_headline(report: DriftReport) -> str:
    """Say in one line what drifted: "2 of 5 features drifted (40%): amount, channel; ..."."""
    drifted = report.drifted_features
    count = f"{len(drifted)} of {report.n_features} features drifted ({report.share_drifted:.0%})"
    named = f": {', '.join(drifted)}" if drifted else ""
    outputs = "the model's outputs drifted" if report.prediction_drifted else "outputs stable"
    return f"{count}{named}; {outputs}"


def drift_svg(report: DriftReport, title: str = "Drift of each column") -> str:
    """Draw each tested column's effect size over its threshold as a bar on a log scale.

    The bar crosses the "threshold" line when the effect is large enough to act on; its colour is
    the verdict, which also needs the p-value below alpha.
    """
    rows = sorted(report.rows, key=lambda row: _sort_key(row, report.thresholds))
    height = CHART_TOP + ROW_HEIGHT * max(len(rows), 1) + 50
    x0, x1 = LABEL_WIDTH, CHART_WIDTH - 120
    parts = svg_open(CHART_WIDTH, height, title)
    bottom = CHART_TOP + ROW_HEIGHT * max(len(rows), 1)
    parts.append(frame(x0, CHART_TOP, x1, bottom))

    def at(ratio: float) -> float:
        clipped = min(max(ratio, 1 / MAX_RATIO), MAX_RATIO)
        return x0 + (math.log10(clipped) + 1) / 2 * (x1 - x0)

    for tick in (0.1, 0.3, 1.0, 3.0, 10.0):
        x = at(tick)
        parts.append(
            f'<line x1="{x:.1f}" y1="{CHART_TOP}" x2="{x:.1f}" y2="{bottom}" '
            f'stroke="{"#333" if tick == 1 else "#ddd"}"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}x</text>')
    parts.append(
        f'<text x="{(x0 + x1) / 2}" y="{bottom + 34}" text-anchor="middle">'
        "effect size / its threshold (log scale)</text>"
    )
    for index, row in enumerate(rows):
        y = CHART_TOP + ROW_HEIGHT * index
        label = verdict(row)
        name = html.escape(row.feature if row.role == "feature" else f"{row.feature} (output)")
        parts.append(
            f'<text x="{x0 - 8}" y="{y + 15}" text-anchor="end">{name}</text>'
            f'<text x="{x1 + 8}" y="{y + 15}" fill="{COLOURS[label]}">{label}</text>'
        )
        if row.effect_size is None:
            continue
        ratio = row.effect_size / report.thresholds.effect_threshold(row.kind)
        parts.append(
            f'<rect x="{x0}" y="{y + 4}" width="{max(at(ratio) - x0, 1):.1f}" '
            f'height="{ROW_HEIGHT - 8}" fill="{COLOURS[label]}">'
            f"<title>{html.escape(reason(row, report.thresholds))}</title></rect>"
        )
    return "\n".join([*parts, "</svg>"])


def svg_image(svg: str, alt: str) -> str:
    """Return a Markdown image of an SVG embedded as a data URI (no file or server to reach)."""
    encoded = base64.b64encode(svg.encode()).decode()
    return f"![{alt}](data:image/svg+xml;base64,{encoded})"


def drift_markdown(report: DriftReport, baseline: str, full_report: str = "") -> str:
    """Render the drift report: the verdict, the chart, the table; then where the full one is.

    `baseline` names what the window is compared with; `full_report` is a sentence or link to
    whylogs' HTML report (omitted when empty).
    """
    table = drift_table(report)
    columns = ["verdict", "column", "why", "statistic", "p_value", "hellinger"]
    lines = [
        f"## {drift_headline(report)}",
        "",
        f"The window's served rows against {baseline}. A column drifts when its difference is "
        f"both significant (p < {report.thresholds.alpha:g}) and large enough to act on (KS D >= "
        f"{report.thresholds.ks_statistic:g} for numeric columns, Hellinger >= "
        f"{report.thresholds.hellinger:g} for categorical ones).",
        "",
        svg_image(drift_svg(report), "effect size of each column against its threshold"),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in table]
    if full_report:
        lines += ["", full_report]
    return "\n".join(lines) + "\n"


def saved_at(url: str, what: str) -> str:
    """Point at a saved report: a link a browser can follow (http, https), else where it lies.

    A file:// link in the Prefect UI would name the disk of whichever worker wrote it, and
    browsers do not open file links from web pages, so local and object-store paths are text.
    """
    if url.startswith(("http://", "https://")):
        return f"[{what}]({url})"
    return f"{what}: saved at `{url.removeprefix('file://')}`"


def _cell(value: Any) -> str:
    """Write a table cell: "-" for None, pipes escaped."""
    return "-" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _sort_key(row: DriftRow, thresholds: DriftThresholds) -> tuple[int, float]:
    """Order by verdict, then by effect over threshold, largest first."""
    ratio = (
        0.0 if row.effect_size is None else row.effect_size / thresholds.effect_threshold(row.kind)
    )
    return ORDER.index(verdict(row)), -ratio
