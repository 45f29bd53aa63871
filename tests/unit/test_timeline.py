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
