"""The demo's day-by-day timeline (stack.timeline)."""

from __future__ import annotations

from mlops.data.simulate import SimulationConfig
from stack.timeline import DayRow, live_figures, render_timeline, short_decision


def test_timeline_says_decisions_and_live_metrics_briefly() -> None:
    assert short_decision({"retrain": True, "reason": "drift"}) == "retrain: drift"
    held = {"retrain": False, "triggers": ["performance", "drift"]}
    assert short_decision(held) == "held: perf+drift"
    assert short_decision({"retrain": False, "triggers": []}) == "no"
    live = [
        {"labelled_rows": 10, "live": 0.5, "live_accuracy": 0.9},
        {"labelled_rows": 900, "live": 0.81234, "live_accuracy": 0.97},
    ]
    assert live_figures(live) == ("0.812", "0.970")
    assert live_figures([]) == ("pending", "")
    # A shadow scored the same rows: the day's figure is the version that answered
    shadowed = [
        {"version": "v1", "labelled_rows": 900, "live": 0.7, "live_accuracy": 0.95},
        {"version": "v2", "labelled_rows": 900, "live": 0.9, "live_accuracy": 0.97},
    ]
    assert live_figures(shadowed, ["v1"]) == ("0.700", "0.950")
    assert live_figures(shadowed, ["v2"]) == ("0.900", "0.970")
    config = SimulationConfig(days=20, rows_per_day=10)
    rows = [DayRow(11, config.date_of(11), 3000, 0, ["v1"], 0.36, ["amount"], "no")]
    rows[0].trial = "v2 shadow"
    table = render_timeline(rows, config)
    assert table.row_count == 1
    assert list(table.columns[4].cells) == ["v1 +v2 shadow"]


def test_the_demo_says_how_close_the_last_days_came_back_to_the_level_before_the_drift() -> None:
    from rich.console import Console

    from stack.timeline import recovery

    config = SimulationConfig(days=24, story_days=20, rows_per_day=10)  # drift from day 14
    aucs = {8: 0.90, 9: 0.92, 12: 0.91, 13: 0.58, 20: 0.89, 21: 0.93, 22: 0.92, 23: None}
    rows = []
    for index, auc in aucs.items():
        live = [] if auc is None else [
            {"version": "v1", "labelled_rows": 3000, "live": auc},
            {"version": "v9", "labelled_rows": 3000, "live": 0.99},  # a shadow: not served
        ]  # fmt: skip
        rows.append(DayRow(index, config.date_of(index), 3000, 0, ["v1"], 0.1, [], "no", "", live))

    said = recovery(rows, config)

    assert said == (
        "Live ROC AUC before the concept drift: 0.910 (mean of 3 days); on the last 3 labelled "
        "days (21-23): 0.890, 0.930, 0.920, at most 0.020 below it"
    )
    assert recovery(rows, config, last=5).endswith(
        "(14-23): 0.580, 0.890, 0.930, 0.920, at most 0.330 below it"
    )
    assert recovery(rows, SimulationConfig(days=20, scenario="stable")) == ""
    wide = Console(width=126, record=True)
    wide.print(render_timeline(rows, config))
    lines = wide.export_text().splitlines()
    assert any(line.startswith("9 ") for line in lines)  # no column is cut to nothing
