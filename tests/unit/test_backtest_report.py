"""Tests of the backtest report: summary rows, markdown, SVG chart, HTML page and written files."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from mlops.backtest.report import (
    render_html,
    render_markdown,
    render_svg,
    summary_rows,
    write_report,
)

SVG = "{http://www.w3.org/2000/svg}"
FLAGS = ("retrained", "promoted", "refused", "failed", "cached")


def _batch(index: int, version: str, auc: float | None, decision: str, **flags: Any) -> dict:
    """Build one batch record; flags not given are False."""
    return {
        "index": index,
        "start": f"2026-03-{1 + 7 * index:02d}T00:00:00",
        "end": f"2026-03-{8 + 7 * index:02d}T00:00:00",
        "rows": 1000,
        "version": version,
        "metric": auc,
        "roc_auc": auc,
        "accuracy": 0.7 + index / 100,
        "f1": None if index == 3 else 0.6,
        "decision": decision,
        "action": "retrain" if flags.get("retrained") or flags.get("failed") else "keep",
        "trigger": flags.pop("trigger", None),
        "new_version": flags.pop("new_version", None),
        **{flag: flags.get(flag, False) for flag in FLAGS},
    }


def _policy(description: str, mean: float, second: float, means: dict, batches: list) -> dict:
    counts = {k: sum(b[k] for b in batches) for k in ("retrained", "promoted", "refused", "failed")}
    return {
        "description": description,
        "mean": mean,
        "mean_second_half": second,
        "means": means,
        "retrains": counts["retrained"],
        "promotions": counts["promoted"],
        "refused": counts["refused"],
        "failed": counts["failed"],
        "compute_s": 12.345,
        "batches": batches,
    }


def _result() -> dict:
    keep = "keep v1: the static policy never retrains"
    static = [_batch(i, "v1", auc, keep) for i, auc in enumerate([0.83, 0.81, None, 0.77])]
    every = [
        _batch(0, "v1", 0.83, "retrain on schedule", retrained=True, promoted=True,
               new_version="v2", trigger="schedule"),
        _batch(1, "v2", 0.85, "retrain on schedule | gate: roc_auc 0.70 below floor 0.75",
               retrained=True, refused=True, new_version="v3", trigger="schedule"),
        _batch(2, "v2", 0.84, "retrain on schedule: contract check on column x failed",
               failed=True, trigger="schedule"),
        _batch(3, "v2", 0.80, "retrain on schedule", retrained=True, promoted=True,
               cached=True, new_version="v4", trigger="schedule"),
    ]  # fmt: skip
    triggered = [
        _batch(0, "v1", 0.83, "keep v1: no drift"),
        _batch(1, "v1", None, "retrain on drift in 3 columns", retrained=True, promoted=True,
               new_version="v2", trigger="drift"),
        _batch(2, "v2", 0.86, "keep v2: no drift"),
        _batch(3, "v2", 0.84, "keep v2: no drift"),
    ]  # fmt: skip
    return {
        "model": "elec",
        "contract": "electricity",
        "data_uri": "data/elec.csv",
        "task": "binary",
        "metric": "roc_auc",
        "higher_is_better": True,
        "metrics": ["roc_auc", "accuracy", "f1"],
        "initial": {"rows": 10000, "start": "2026-01-01T00:00:00", "end": "2026-02-10T00:00:00"},
        "batch_spec": "7d",
        "train_window_rows": 10000,
        "created_at": "2026-11-30T01:00:00+00:00",
        "trainings": {"computed": 3, "reused": 1},
        "policies": {
            "static": _policy(
                "the first model forever", 0.80333, 0.77, _means(0.8033, 0.74), static
            ),
            "every": _policy("retrain every batch", 0.83, 0.82, _means(0.83, 0.7125), every),
            "triggered": _policy(
                "retrain on drift", 0.84333, 0.85, _means(0.8433, 0.71), triggered
            ),
        },
    }


def _means(auc: float, accuracy: float) -> dict:
    return {"roc_auc": auc, "accuracy": accuracy, "f1": 0.6}


def _regression() -> dict:
    result = _result()
    result.update(task="regression", metric="rmse", higher_is_better=False)
    result["metrics"] = ["rmse", "r2", "mae"]
    for name, (rmse, r2, mae) in zip(
        result["policies"], [(3.5, 0.61, 2.0), (2.25, 0.58, 2.5), (2.75, 0.72, 1.5)], strict=True
    ):
        policy = result["policies"][name]
        policy.update(
            mean=rmse, mean_second_half=rmse + 1, means={"rmse": rmse, "r2": r2, "mae": mae}
        )
        for batch in policy["batches"]:
            batch.update(rmse=batch.pop("roc_auc"), r2=batch.pop("accuracy"), mae=batch.pop("f1"))
    return result


def _table_row(markdown: str, first_cell: str) -> list[str]:
    """Return the cells of the first markdown table row whose first cell is first_cell."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row starting with {first_cell!r}")


def test_summary_rows_hold_one_rounded_row_per_policy() -> None:
    rows = summary_rows(_result())

    assert [row["policy"] for row in rows] == ["static", "every", "triggered"]
    every = rows[1]
    assert every["mean"] == 0.83 and every["mean_second_half"] == 0.82
    assert (every["roc_auc"], every["accuracy"], every["f1"]) == (0.83, 0.7125, 0.6)
    assert (every["retrains"], every["promotions"], every["refused"], every["failed"]) == (
        3,
        2,
        1,
        1,
    )
    assert rows[0]["mean"] == 0.8033 and rows[0]["compute_s"] == 12.3


def test_markdown_states_what_was_replayed_and_bolds_the_best_mean() -> None:
    markdown = render_markdown(_result())

    assert markdown.startswith("# Backtest of `elec` (electricity) on `data/elec.csv`")
    assert "10,000 rows" in markdown and "4 batches of 7d" in markdown
    assert "3 computed, 1 reused" in markdown
    assert _table_row(markdown, "triggered")[1:3] == ["**0.8433**", "**0.8500**"]
    assert _table_row(markdown, "static")[1:4] == ["0.8033", "0.7700", "0.8033"]
    assert _table_row(markdown, "static")[4:6] == ["**0.7400**", "0.6000"]  # f1 tie: no bold
    assert _table_row(markdown, "every")[-5:] == ["3", "2", "1", "1", "12.3"]
    assert "![roc_auc per batch by policy](backtest.svg)" in markdown
    assert "![" not in render_markdown(_result(), plot_name=None)


def test_markdown_lists_every_decision_with_markers_from_its_flags() -> None:
    markdown = render_markdown(_result())

    assert "keep v1: the static policy never retrains" in markdown
    assert "| **promoted v2** retrain on schedule |" in markdown
    refused = "**refused v3** retrain on schedule \\| gate: roc_auc 0.70 below floor 0.75"
    assert refused in markdown
    assert "**training failed** " in markdown and "column x failed" in markdown
    assert "**promoted v4** " in markdown and "(reused training)" in markdown
    assert "retrain on schedule | gate" not in markdown


def test_markdown_renders_undefined_metrics_as_a_dash() -> None:
    section = render_markdown(_result()).split("## Policy `static`")[1].split("## Policy")[0]

    rows = [line for line in section.splitlines() if line.startswith("| 2 |")]
    assert rows and rows[0].split(" | ")[4] == "-"  # batch, start, rows, version, roc_auc


def test_markdown_bolds_the_lowest_error_for_a_regression_model() -> None:
    markdown = render_markdown(_regression())

    every, triggered = _table_row(markdown, "every"), _table_row(markdown, "triggered")
    assert every[1] == "**2.2500**" and every[3] == "**2.2500**"  # mean and rmse: lowest wins
    assert triggered[4] == "**0.7200**" and triggered[5] == "**1.5000**"  # r2 high, mae low
    assert "(lower is better)" in markdown


def test_svg_is_valid_xml_with_a_line_per_run_and_a_marker_per_event() -> None:
    root = ET.fromstring(render_svg(_result()))

    groups = {g.get("data-policy"): g for g in root.iter(f"{SVG}g") if g.get("data-policy")}
    assert list(groups) == ["static", "every", "triggered"]
    lines = {name: len(g.findall(f"{SVG}polyline")) for name, g in groups.items()}
    assert lines == {"static": 2, "every": 1, "triggered": 2}  # None values break the line
    assert len(groups["static"].findall(f"{SVG}polyline")[1].get("points", "").split()) == 2

    def markers(tag: str, kind: str) -> list[str | None]:
        found = [(n, e) for n, g in groups.items() for e in g.iter(f"{SVG}{tag}")]
        return [f"{n}:{e.get('data-batch')}" for n, e in found if e.get("class") == kind]

    assert markers("circle", "promoted") == ["every:0", "every:3", "triggered:1"]
    assert markers("path", "refused") == ["every:1"]
    assert markers("rect", "failed") == ["every:2"]


def test_svg_legend_explains_policies_and_markers_and_escapes_text() -> None:
    result = _result()
    result["model"] = "elec <v2> & co"
    svg = render_svg(result, metric="accuracy")
    root = ET.fromstring(svg)

    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "elec <v2> & co: accuracy per batch by policy" in texts
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    labels = [t.text for t in legend.iter(f"{SVG}text")]
    assert labels[:3] == ["static", "every", "triggered"]
    assert {"retrained, promoted", "refused by the gate", "retraining failed"} <= set(labels)
    assert root.get("width") == "900" and root.get("height") == "420"


def test_html_page_has_the_summary_and_one_chart_per_metric() -> None:
    page = render_html(_result())

    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg ") == 3
    assert "<td><b>0.8433</b></td>" in page and "<td>every</td>" in page


def test_write_report_writes_four_files_and_the_json_round_trips(tmp_path: Path) -> None:
    result = _result()
    original = copy.deepcopy(result)

    paths = write_report(result, tmp_path / "report" / "elec")

    assert set(paths) == {"json", "markdown", "svg", "html"}
    assert sorted(p.name for p in paths["json"].parent.iterdir()) == [
        "backtest.html",
        "backtest.json",
        "backtest.md",
        "backtest.svg",
    ]
    assert json.loads(paths["json"].read_text()) == original
    assert paths["markdown"].read_text() == render_markdown(original)
    ET.fromstring(paths["svg"].read_text())
