"""The drift report people read: the verdict first, why, rounded figures, an embedded chart."""

from __future__ import annotations

import base64
import re

from mlops.monitoring.drift import DriftReport, DriftRow, DriftThresholds
from mlops.monitoring.drift_view import (
    drift_headline,
    drift_markdown,
    drift_svg,
    drift_table,
    reason,
    round_figure,
    saved_at,
)

THRESHOLDS = DriftThresholds(alpha=0.05, ks_statistic=0.02, hellinger=0.015)


def _row(feature: str, kind: str, scores: tuple[float, ...] = (), **extra: object) -> DriftRow:
    """A feature's row: (statistic, p-value, effect size, hellinger) and any other field."""
    test = "ks" if kind == "numeric" else "chi-square"
    figures = dict(zip(("statistic", "p_value", "effect_size", "hellinger"), scores, strict=False))
    drifted = extra.get("category") == "drift"
    return DriftRow(feature, kind, "feature", test, **figures, drifted=drifted, **extra)  # type: ignore[arg-type]


REPORT = DriftReport(
    rows=(
        # significant, but below its effect threshold: a possible drift
        _row("hour", "numeric", (0.012345678, 0.0312345, 0.012345678, 0.0101), category="possible"),
        _row("amount", "numeric", (0.0834567, 1.2e-40, 0.0834567, 0.1123), category="drift"),
        _row("merchant", "categorical", (3.21, 0.7123, 0.00456, 0.00456)),
        _row(
            "channel",
            "categorical",
            (812.0, 1e-9, 0.04123, 0.04123),
            category="drift",
            note="new categories: kiosk",
        ),
        _row("device", "categorical", note="only nulls in window"),
        DriftRow("prediction", "categorical", "output", "chi-square", 2.0, 0.4, 0.003, 0.003),
    ),
    thresholds=THRESHOLDS,
)


def test_the_table_leads_with_the_verdict_and_orders_drifted_columns_first() -> None:
    table = drift_table(REPORT)

    assert list(table[0])[:3] == ["verdict", "column", "why"]
    assert [(r["verdict"], r["column"]) for r in table] == [
        ("drifted", "amount"),  # KS D 0.083 is 4.2x its threshold, channel's 0.041 is 2.7x
        ("drifted", "channel"),
        ("possible", "hour"),
        ("stable", "merchant"),
        ("stable", "prediction"),
        ("not tested", "device"),
    ]


def test_each_verdict_says_why_against_the_thresholds() -> None:
    by_column = {r["column"]: r["why"] for r in drift_table(REPORT)}

    assert by_column["amount"] == "KS D 0.083 >= 0.02 and p < 0.001 < 0.05"
    assert by_column["hour"] == (
        "KS D 0.012 < 0.02: significant (p 0.031 < 0.05) but too small to act on"
    )
    assert by_column["merchant"] == "p 0.712 >= 0.05: no significant difference"
    assert by_column["device"] == "only nulls in window"
    assert reason(REPORT.rows[3], THRESHOLDS) == "Hellinger 0.041 >= 0.015 and p < 0.001 < 0.05"


def test_figures_are_rounded_to_three_significant_digits() -> None:
    figures = [
        value
        for row in drift_table(REPORT)
        for key, value in row.items()
        if key in {"statistic", "effect_size", "hellinger"} and value is not None
    ]
    assert figures and all(len(re.sub(r"[^0-9]", "", f"{v:g}").lstrip("0")) <= 3 for v in figures)
    assert round_figure(0.0834567) == 0.0835 and round_figure(812.0) == 812.0
    assert round_figure(None) is None and round_figure(0.0) == 0.0
    assert {r["p_value"] for r in drift_table(REPORT)} == {
        "< 0.001",
        "0.031",
        "0.712",
        "0.400",
        None,
    }


def test_the_headline_names_the_drifted_features_and_the_outputs() -> None:
    assert (
        drift_headline(REPORT) == "2 of 5 features drifted (40%): amount, channel; outputs stable"
    )


def test_the_chart_draws_a_bar_per_tested_column_past_the_threshold_line_when_large() -> None:
    svg = drift_svg(REPORT)
    bars = re.findall(r'<rect x="(\d+)" y="[\d.]+" width="([\d.]+)"[^>]*fill="(#\w+)"', svg)
    threshold_x = float(re.findall(r'<line x1="([\d.]+)"[^>]*stroke="#333"', svg)[0])

    assert len(bars) == 5  # the untested column has a label but no bar
    ends = {colour: float(x) + float(width) for x, width, colour in bars}
    assert ends["#d62728"] > threshold_x > ends["#2ca02c"]  # drifted past it, stable short of it


def test_the_markdown_embeds_the_chart_and_points_at_the_saved_page_without_a_file_link() -> None:
    where = saved_at("/srv/mlops/reports/fraud/drift-20300101T000000Z.html", "whylogs' report")
    text = drift_markdown(REPORT, "v1's training data", where)

    assert text.startswith("## 2 of 5 features drifted (40%): amount, channel")
    image = re.search(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", text)
    assert image and base64.b64decode(image.group(1)).decode().startswith("<svg")
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + 6
    assert "](" not in where and "`/srv/mlops/reports/fraud/drift-20300101T000000Z.html`" in where
    assert saved_at("https://x.example/r.html", "report") == "[report](https://x.example/r.html)"
    assert saved_at("s3://bucket/r.html", "report") == "report: saved at `s3://bucket/r.html`"
    assert saved_at("file:///srv/r.html", "report") == "report: saved at `/srv/r.html`"
