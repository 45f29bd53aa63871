"""Render a backtest result as a summary table, markdown, an SVG chart and an HTML page."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from mlops.backtest.plot import finite_or_none, render_svg
from mlops.registry.locking import write_atomic
from mlops.training.evaluate import HIGHER_IS_BETTER

Result = Mapping[str, Any]

COUNTS = ("retrains", "promotions", "refused", "failed", "compute_s")
LABELS = {"mean_second_half": "mean, 2nd half", "compute_s": "compute s"}


def _fmt(value: Any, digits: int = 4) -> str:
    """Format a table cell: '-' for missing, a fixed number of decimals for floats."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _round(value: Any, digits: int = 4) -> float | None:
    number = finite_or_none(value)
    return None if number is None else round(number, digits)


def _higher_is_better(result: Result, metric: str) -> bool:
    if metric == result.get("metric"):
        return bool(result.get("higher_is_better", True))
    return HIGHER_IS_BETTER.get(metric, True)


def summary_rows(result: Result) -> list[dict[str, Any]]:
    """Return one row per policy: means, means per metric, retraining counts and compute time."""
    rows = []
    for name, policy in result["policies"].items():
        row: dict[str, Any] = {
            "policy": name,
            "mean": _round(policy.get("mean")),
            "mean_second_half": _round(policy.get("mean_second_half")),
        }
        means = policy.get("means") or {}
        row.update({metric: _round(means.get(metric)) for metric in result["metrics"]})
        row.update({key: policy.get(key, 0) for key in COUNTS[:-1]})
        row["compute_s"] = _round(policy.get("compute_s"), 1)
        rows.append(row)
    return rows


def _best_values(result: Result, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Return the best value of each metric column, for highlighting."""
    primary = result["metric"]
    best = {}
    for column in ["mean", "mean_second_half", *result["metrics"]]:
        values = [v for row in rows if (v := finite_or_none(row.get(column))) is not None]
        if len(set(values)) > 1:  # a tie across all policies has no winner to mark
            higher = _higher_is_better(result, primary if column.startswith("mean") else column)
            best[column] = max(values) if higher else min(values)
    return best


def _summary_table(
    result: Result, rows: list[dict[str, Any]], bold: tuple[str, str], escape: Any = str
) -> list[list[str]]:
    """Return the summary as escaped text cells, header first, wrapping best values in bold."""
    columns = list(rows[0]) if rows else ["policy"]
    best = _best_values(result, rows)
    table = [[escape(LABELS.get(column, column)) for column in columns]]
    for row in rows:
        cells = []
        for column in columns:
            cell = escape(_fmt(row[column], 1 if column == "compute_s" else 4))
            if column in best and row[column] == best[column]:
                cell = f"{bold[0]}{cell}{bold[1]}"
            cells.append(cell)
        table.append(cells)
    return table


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in table]
    lines.insert(1, "|" + "---|" * len(table[0]))
    return lines


def _overview(result: Result) -> str:
    """Say in one paragraph what was replayed and how many trainings were computed."""
    initial, trainings = result["initial"], result.get("trainings") or {}
    batches = max((len(p["batches"]) for p in result["policies"].values()), default=0)
    window = result.get("train_window_rows")
    window_text = "all rows seen so far" if window is None else f"the last {window:,} rows"
    direction = "higher" if result.get("higher_is_better", True) else "lower"
    return (
        f"The first model was trained on {initial['rows']:,} rows ({initial['start']} to "
        f"{initial['end']}); then {batches} batches of {result['batch_spec']} were replayed under "
        f"{len(result['policies'])} policies, each retraining on {window_text}. "
        f"Trainings: {trainings.get('computed', 0)} computed, {trainings.get('reused', 0)} reused "
        f"from identical earlier ones. Primary metric: {result['metric']} ({direction} is better)."
    )


def _decision_text(batch: Mapping[str, Any]) -> str:
    """Return the batch's decision, led by a bold outcome tag derived from its flags."""
    tag = ""
    if batch.get("failed"):
        tag = "**training failed**"
    elif batch.get("promoted"):
        tag = f"**promoted {batch.get('new_version') or '?'}**"
    elif batch.get("refused"):
        tag = f"**refused {batch.get('new_version') or '?'}**"
    parts = [tag, str(batch.get("decision") or "")]
    if batch.get("cached"):
        parts.append("(reused training)")
    return " ".join(part for part in parts if part)


def _policy_section(result: Result, name: str, policy: Mapping[str, Any]) -> list[str]:
    header = ["batch", "start", "rows", "version", *result["metrics"], "decision"]
    table = [header]
    for batch in policy["batches"]:
        metrics = [_fmt(finite_or_none(batch.get(metric))) for metric in result["metrics"]]
        fixed = [batch.get("index"), batch.get("start"), batch.get("rows"), batch.get("version")]
        table.append([_fmt(v) for v in fixed] + metrics + [_decision_text(batch)])
    title = f"## Policy `{name}`: {policy.get('description', '')}"
    return [title, "", *_md_table(table), ""]


def render_markdown(result: Result, plot_name: str | None = "backtest.svg") -> str:
    """Render the backtest as markdown: overview, summary table, plot link, per-batch tables."""
    title = f"# Backtest of `{result['model']}` ({result['contract']}) on `{result['data_uri']}`"
    rows = summary_rows(result)
    lines = [title, "", _overview(result), "", "## Summary", ""]
    lines += [*_md_table(_summary_table(result, rows, ("**", "**"))), ""]
    if plot_name:
        lines += [f"![{result['metric']} per batch by policy]({plot_name})", ""]
    for name, policy in result["policies"].items():
        lines += _policy_section(result, name, policy)
    return "\n".join(lines)


def render_html(result: Result) -> str:
    """Render a standalone HTML page: overview, summary table and one chart per metric."""
    table = _summary_table(result, summary_rows(result), ("<b>", "</b>"), html.escape)
    head = "".join(f"<th>{cell}</th>" for cell in table[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in table[1:])
    charts = "\n".join(f"<figure>{render_svg(result, m)}</figure>" for m in result["metrics"])
    title = html.escape(f"Backtest of {result['model']} ({result['contract']})")
    style = "body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head>\n<body><h1>{title}</h1>\n"
        f"<p>{html.escape(_overview(result))}</p>\n"
        f"<table><tr>{head}</tr>{body}</table>\n{charts}\n</body></html>\n"
    )


def write_report(result: Result, out_dir: str | Path) -> dict[str, Path]:
    """Write backtest.json, .md, .svg and .html into out_dir; return their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "json": ("backtest.json", json.dumps(result, indent=2, default=str)),
        "markdown": ("backtest.md", render_markdown(result, "backtest.svg")),
        "svg": ("backtest.svg", render_svg(result)),
        "html": ("backtest.html", render_html(result)),
    }
    fs, paths = LocalFileSystem(), {}
    for kind, (name, text) in texts.items():
        write_atomic(fs, str(out / name), text.encode())
        paths[kind] = out / name
    return paths
