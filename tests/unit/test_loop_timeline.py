"""The monitoring loop over time (mlops.monitoring.timeline and loop_chart) on a made-up history."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from mlops.monitoring.loop_chart import render_loop_html, render_loop_svg, save_loop_chart
from mlops.monitoring.timeline import loop_windows, render_loop_markdown, retrain_outcomes

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
QUIET = "retrain: no, because only 0 of 11 features drifted (0% < 15%)"


def _perf(version: str, live: float, rows: int, holdout: float, metric: str = "roc_auc") -> dict:
    return {"version": version, "labelled_rows": rows, "metric": metric, "live": live,
            "holdout": holdout, "live_accuracy": 0.9}  # fmt: skip


def _window(hour: int, champion: str, performance: list, drift: float = 0.0, **keys: Any) -> dict:
    """One monitor-model result as record_decision stores it (times as text, like JSON)."""
    end = T0 + timedelta(hours=hour + 1)
    return {
        "model": "card-fraud",
        "champion": champion,
        "window_start": str(end - timedelta(hours=1)),
        "window_end": str(end),
        "drift_share": drift,
        "drifted_features": [],
        "constraints_passed": keys.pop("constraints_passed", True),
        "performance": performance,
        "retrain": keys.pop("retrain", False),
        "reason": keys.pop("reason", None),
        "event": keys.pop("event", None),
        "explanation": keys.pop("explanation", QUIET),
        "triggers": [],
        **keys,
    }


def history() -> list[dict]:
    """v1 decays and is replaced by v2 (better); v3 is refused; then a broken feed."""
    return [
        _window(0, "v1", [_perf("v1", 0.90, 600, 0.92)]),
        _window(1, "v1", []),  # no labels yet
        _window(2, "v1", [_perf("v1", 0.80, 700, 0.92)], 0.36, retrain=True,
                reason="performance", event="mlops.model.performance-degraded",
                explanation="retrain: yes, because roc_auc 0.8 is 0.12 below the champion's"),
        _window(3, "v2", [_perf("v1", 0.79, 640, 0.92)]),  # yesterday's labels: v1's rows
        _window(4, "v2", [_perf("v2", 0.88, 650, 0.90)], 0.09),
        _window(5, "v2", [_perf("v2", 0.87, 620, 0.90)], 0.45, retrain=True, reason="drift",
                event="mlops.model.drift-detected", refused_challengers=0,
                explanation="retrain: yes, because 5 of 11 features drifted"),
        _window(6, "v2", [], 0.45, refused_challengers=1),
        _window(7, "v2", [], 0.27, constraints_passed=False,
                event="mlops.model.data-quality-failed", data_quality={"passed": False},
                explanation="data quality: amount failed its range check"),
    ]  # fmt: skip


REGISTRY = [
    {"event": "registered", "time": "2029-12-31T20:00:00+00:00", "to": "v1"},
    {"event": "promoted", "time": "2029-12-31T20:01:00+00:00", "from": None, "to": "v1"},
    {"event": "registered", "time": "2030-01-01T03:20:00+00:00", "to": "v2"},
    {"event": "promoted", "time": "2030-01-01T03:21:00+00:00", "from": "v1", "to": "v2"},
    {"event": "registered", "time": "2030-01-01T06:20:00+00:00", "to": "v3"},
]


def _marks(svg: str) -> dict[str, list[str]]:
    """Return the decision marks of a chart: kind -> the labels, in order."""
    root = ET.fromstring(svg)
    found: dict[str, list[str]] = {}
    for element in root.iter():
        if "data-window" in element.attrib:
            found.setdefault(element.get("class", ""), []).append(element.get("data-label", ""))
    return found


class _Rows(HTMLParser):
    """Count the rows of the page's windows table."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.rows = False, 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.inside |= tag == "table" and ("class", "windows") in attrs
        self.rows += self.inside and tag == "tr"

    def handle_endtag(self, tag: str) -> None:
        self.inside &= tag != "table"


def _table_rows(page: str) -> int:
    parser = _Rows()
    parser.feed(page)
    return parser.rows - 1  # the header


def test_the_chart_marks_every_decision_once_and_names_the_versions() -> None:
    svg = render_loop_svg(history(), REGISTRY)

    assert _marks(svg) == {
        "retrain": ["performance", "drift"],
        "promoted": ["v2"],
        "refused": ["v3"],
        "incident": ["data quality"],
    }
    root = ET.fromstring(svg)
    versions = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "version"]
    assert versions == ["v1", "v2"]
    assert len([e for e in root.iter(f"{SVG}line") if e.get("class") == "holdout"]) == 2
    outcomes = [e.text for e in root.iter(f"{SVG}text") if e.get("class") == "outcome"]
    assert outcomes == ["v2 vs v1: better (+0.080)"]


def test_without_the_registry_a_refusal_is_read_from_the_refused_count() -> None:
    assert _marks(render_loop_svg(history()))["refused"] == ["a challenger"]
    assert _marks(render_loop_svg(history(), []))["refused"] == ["a challenger"]
    counted = loop_windows(history())
    assert [m.kind for m in counted[6].marks] == ["refused"]
    assert [m.kind for m in counted[7].marks] == ["incident"]


def test_windows_without_labels_leave_gaps_not_zeros() -> None:
    rows = loop_windows(history())

    assert [r.live for r in rows] == [0.90, None, 0.80, None, 0.88, 0.87, None, None]
    assert [r.version for r in rows] == ["v1"] * 3 + ["v2"] * 5
    assert rows[3].labelled_rows == 0  # v1's late labels are not v2's
    live_lines = [e for e in ET.fromstring(render_loop_svg(history())).iter(f"{SVG}polyline")]
    assert len([e for e in live_lines if e.get("class") == "live"]) == 3  # 0.90 | 0.80 | v2's run


def test_the_page_has_one_table_row_per_window_and_the_outcomes() -> None:
    page = render_loop_html(history(), REGISTRY)

    assert _table_rows(page) == len(history())
    assert "v2 replaced v1: roc_auc 0.880 vs 0.800 (+0.080, better)" in page
    assert "v3 refused by the gate" in page and "data-quality incident" in page
    assert ">failed<" in page and ">45%<" in page


def test_the_summary_shows_the_last_windows_rounded() -> None:
    text = render_loop_markdown(history(), "file:///reports/card-fraud/loop.html", REGISTRY, 3)

    table = [line for line in text.splitlines() if line.startswith("| 2030")]
    assert len(table) == 3 and table[0].startswith("| 2030-01-01 06:00:00 | v2 | 0.870 | 620 | 45%")
    assert "| [v3 refused by the gate] retrain: no" in table[1]
    assert "- v2 replaced v1: roc_auc 0.880 vs 0.800 (+0.080, better)" in text
    # a browser on the Prefect UI cannot follow a file link: the summary says where the page is
    assert text.rstrip().endswith("Loop chart: saved at `/reports/card-fraud/loop.html`")
    served = render_loop_markdown(history(), "https://reports.example/card-fraud/loop.html")
    assert served.rstrip().endswith("[Loop chart](https://reports.example/card-fraud/loop.html)")


def _change(metric: str, old: float | None, new: float | None) -> list[dict]:
    """Two windows of v1 then two of v2, live figures given (None: no labels yet)."""
    windows = []
    for hour, (version, live) in enumerate((("v1", old), ("v1", old), ("v2", new), ("v2", new))):
        performance = [] if live is None else [_perf(version, live, 500, 1.0, metric)]
        windows.append(_window(hour, version, performance))
    return windows


def test_retrain_outcomes_respect_the_metric_direction() -> None:
    def verdict(metric: str, old: float | None, new: float | None) -> str:
        (outcome,) = retrain_outcomes(_change(metric, old, new))
        return outcome["verdict"]

    assert verdict("rmse", 10.0, 8.0) == "better"  # lower is better
    assert verdict("rmse", 8.0, 10.0) == "worse"
    assert verdict("roc_auc", 0.80, 0.88) == "better"
    assert verdict("roc_auc", 0.88, 0.80) == "worse"
    assert verdict("roc_auc", 0.880, 0.875) == "same (within 0.01)"
    assert verdict("rmse", 10.0, None) == "not yet measured"


def test_retrain_outcomes_compare_the_windows_next_to_the_change() -> None:
    (outcome,) = retrain_outcomes(history())

    assert (outcome["from"], outcome["to"], outcome["metric"]) == ("v1", "v2", "roc_auc")
    assert outcome["before"] == 0.80 and outcome["after"] == 0.88  # not 0.90, not 0.87
    assert outcome["at"] == T0 + timedelta(hours=4)
    two = retrain_outcomes(history(), windows=2)[0]
    assert round(two["before"], 4) == round((0.90 * 600 + 0.80 * 700) / 1300, 4)


def test_an_empty_history_draws_a_chart_that_says_so() -> None:
    svg = render_loop_svg([])

    texts = [e.text for e in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "no windows yet" in texts
    assert "No windows yet." in render_loop_html([])
    assert retrain_outcomes([]) == []
    assert "No windows yet." in render_loop_markdown([])


def test_entries_missing_keys_still_draw() -> None:
    sparse = [{"champion": "v1"}, {"window_end": "not a time"}, {"champion": "v2", "retrain": 1}]

    assert _marks(render_loop_svg(sparse)) == {"retrain": ["retrain"], "promoted": ["v2"]}
    assert _table_rows(render_loop_html(sparse)) == 3


def test_save_loop_chart_writes_the_page_and_the_chart(tmp_path: Path) -> None:
    link = save_loop_chart(str(tmp_path / "reports"), "card-fraud", history(), REGISTRY)

    folder = tmp_path / "reports" / "card-fraud"
    assert link == f"file://{folder / 'loop.html'}"
    assert _table_rows((folder / "loop.html").read_text()) == len(history())
    assert _marks((folder / "loop.svg").read_text())["refused"] == ["v3"]
