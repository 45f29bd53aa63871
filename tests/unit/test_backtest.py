"""The backtest replays honestly: no look-ahead, policies do what they say, trainings are shared."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops.backtest.build import build_backtest
from mlops.backtest.plan import Span, plan_batches
from mlops.backtest.policies import PolicySpec, parse_policies
from mlops.monitoring.thresholds import RetrainPolicy
from stack.cli import app
from tests.support.histories import (
    growing_regression,
    low_volume_binary,
    recurring_binary,
    write_history,
)
from tests.support.synthetic import FAST

PARAMS = dataclasses.replace(FAST, max_epochs=4, hidden=(32,))


def run(history, tmp_path: Path, policies: str, **options):
    runner, specs = build_backtest(
        history.frame, history.contract, initial=options.pop("initial", history.initial_rows),
        batch=options.pop("batch", history.batch_rows), policies=policies, params=PARAMS,
        work_dir=tmp_path / "work", cache_dir=options.pop("cache_dir", tmp_path / "cache"),
        **options,
    )  # fmt: skip
    return runner.run(specs), runner


# -- planning ------------------------------------------------------------------------------------


def test_sizes_are_rows_or_durations() -> None:
    assert Span.parse("5000") == Span(rows=5000) and Span.parse(12) == Span(rows=12)
    assert Span.parse("28d").duration == pd.Timedelta(days=28)
    assert Span.parse("12h").duration == pd.Timedelta(hours=12)
    assert str(Span.parse("2w")) == "14d"
    for bad in ("0", "-3", "28 days", "d", "0d"):
        with pytest.raises(ValueError):
            Span.parse(bad)


def test_duration_batches_follow_event_time_and_skip_gaps() -> None:
    times = pd.to_datetime(
        [
            "2026-01-01 00:00",
            "2026-01-02 00:00",
            "2026-01-03 00:00",
            "2026-01-03 12:00",
            "2026-01-08 00:00",
            "2026-01-09 00:00",
        ]
    )
    frame = pd.DataFrame({"ts": times, "x": range(6)})

    plan = plan_batches(frame, "ts", Span.parse("2d"), Span.parse("2d"))

    assert plan.initial_rows == 2
    # aligned to 01-03: [03, 05), [05, 07) is empty and skipped, [07, 09), [09, 11)
    assert [(b.first, b.stop) for b in plan.batches] == [(2, 4), (4, 5), (5, 6)]
    assert plan.batches[1].start == "2026-01-08T00:00:00"


def test_duration_spans_start_on_the_boundary_of_their_unit() -> None:
    times = pd.date_range("2026-03-01 07:30", periods=96, freq="h")  # 4 days from 07:30
    frame = pd.DataFrame({"ts": times})

    plan = plan_batches(frame, "ts", Span.parse("1d"), Span.parse("1d"))

    # the first day runs to midnight (16.5 h of rows), then whole calendar days
    assert plan.initial_rows == 17
    assert [b.rows for b in plan.batches] == [24, 24, 24, 7]
    assert plan.batches[0].start == "2026-03-02T00:30:00"
    rows_first = plan_batches(frame, "ts", Span.parse("10"), Span.parse("12h"))
    # 12 h is whole hours: batches run from the hour of the first batch row (17:00)
    assert [b.rows for b in rows_first.batches][:2] == [12, 12]


def test_durations_need_a_timestamp_and_a_batch_must_remain() -> None:
    frame = pd.DataFrame({"x": range(10)})
    with pytest.raises(ValueError, match="durations need a timestamp column"):
        plan_batches(frame, None, Span.parse("3d"), Span.parse("5"))
    with pytest.raises(ValueError, match="no batch is left"):
        plan_batches(frame, None, Span.parse("10"), Span.parse("5"))
    plan = plan_batches(frame, None, Span.parse("4"), Span.parse("4"))
    assert [(b.first, b.stop) for b in plan.batches] == [(4, 8), (8, 10)]
    assert (plan.batches[0].start, plan.batches[0].end) == (4, 7)  # row numbers without time


def test_policies_parse_and_schedule() -> None:
    specs = parse_policies("static, every,periodic:3,triggered")
    assert [s.kind for s in specs] == ["static", "every", "periodic", "triggered"]
    periodic = specs[2]
    assert [periodic.scheduled(i) for i in range(6)] == [False, False, True, False, False, True]
    assert not specs[0].scheduled(0) and specs[1].scheduled(0)
    for bad in ("sometimes", "periodic:0", "periodic:x", "static,static", ""):
        with pytest.raises(ValueError):
            parse_policies(bad)
    assert PolicySpec.parse("periodic:2").description == "retrain after every 2 batches"


# -- replay ----------------------------------------------------------------------------------------


def test_static_every_and_periodic_do_what_they_say_without_look_ahead(tmp_path: Path) -> None:
    history = recurring_binary(batches=4, batch_rows=500, initial_rows=2000)

    result, _ = run(history, tmp_path, "static,every,periodic:2", train_window_rows=2000)

    static, every, periodic = (result["policies"][p] for p in ("static", "every", "periodic:2"))
    assert static["retrains"] == 0 and {b["version"] for b in static["batches"]} == {"v1"}
    assert [b["retrained"] for b in every["batches"]] == [True] * 4
    assert [b["retrained"] for b in periodic["batches"]] == [False, True, False, True]
    for policy in result["policies"].values():
        for batch in policy["batches"]:
            first = 2000 + 500 * batch["index"]
            trained_first, trained_stop = batch["trained_on"]
            assert trained_stop <= first  # the predicting model never saw this batch or later
            assert trained_stop - trained_first <= 2000
            assert batch["rows"] == 500 and batch["metric"] == batch["roc_auc"]
    assert every["promotions"] + every["refused"] + every["failed"] == every["retrains"]
    # periodic:2 retrains after batches 1 and 3 on the same windows as every; a training is
    # shared only where both champions learned no more of it than its training split (what the
    # champion learned moves the holdout and the gate): here every's fresher champions did
    for i in (1, 3):
        rows = re.search(r"trained on rows \d+-\d+", periodic["batches"][i]["decision"])
        assert rows is not None and rows[0] in every["batches"][i]["decision"]
    assert [b["cached"] for b in periodic["batches"] if b["retrained"]] == [False, False]
    assert result["trainings"] == {"computed": 7, "reused": 0}  # the first model is shared


def test_identical_trainings_are_reused_across_runs(tmp_path: Path) -> None:
    history = recurring_binary(batches=2, batch_rows=500, initial_rows=2000)
    first, _ = run(history, tmp_path, "every", train_window_rows=2000)

    again, runner = run(history, tmp_path, "every", train_window_rows=2000)

    assert first["trainings"] == {"computed": 3, "reused": 0}
    assert again["trainings"] == {"computed": 0, "reused": 3}
    assert [b["cached"] for b in again["policies"]["every"]["batches"]] == [True, True]

    def comparable(policy: dict) -> dict:
        batches = [{k: v for k, v in b.items() if k != "cached"} for b in policy["batches"]]
        return {**policy, "compute_s": None, "batches": batches}

    assert comparable(first["policies"]["every"]) == comparable(again["policies"]["every"])
    other = dataclasses.replace(PARAMS, seed=8)  # other parameters: another training
    assert runner.cache.key(history.initial) != type(runner.cache)(
        tmp_path / "cache", history.contract, other, data_uri=""
    ).key(history.initial)


def test_a_training_that_fails_its_checks_keeps_the_champion(tmp_path: Path) -> None:
    history = low_volume_binary(batches=2, batch_rows=500, initial_rows=3000)

    # 900 rows are too few for the export's parity check (1,000): every retrain fails
    result, _ = run(history, tmp_path, "every", train_window_rows=900, initial=3000)

    every = result["policies"]["every"]
    assert every["failed"] == 2 and every["promotions"] == 0
    assert {b["version"] for b in every["batches"]} == {"v1"}
    assert "parity needs at least 1000 rows" in every["batches"][0]["decision"]


def test_triggered_retrains_on_a_performance_drop_of_a_regression_target(tmp_path: Path) -> None:
    history = growing_regression(batches=10, batch_rows=700, initial_rows=4000)
    rules = RetrainPolicy(
        drift_share=0.5, consecutive_windows=2, max_metric_drop=0.1, min_labelled_rows=300,
        min_new_rows=500, metric="r2", cooldown=pd.Timedelta(hours=0).to_pytimedelta(),
    )  # fmt: skip

    result, _ = run(history, tmp_path, "static,triggered", retrain=rules, train_window_rows=4000)

    static, triggered = result["policies"]["static"], result["policies"]["triggered"]
    assert result["metrics"] == ["r2", "rmse", "mae"]
    assert static["batches"][-1]["rmse"] > 2 * static["batches"][0]["rmse"]  # the target grew
    fired = [b for b in triggered["batches"] if b["retrained"]]
    assert fired and all(b["trigger"] == "performance" for b in fired)
    assert all(b["decision"].startswith("retrain: yes, because r2") for b in fired)
    quiet = [b for b in triggered["batches"] if not b["retrained"]]
    assert all(b["decision"].startswith("retrain: no") for b in quiet)
    assert triggered["means"]["rmse"] < static["means"]["rmse"]


def test_the_cli_backtests_a_csv_without_timestamps(tmp_path: Path) -> None:
    history = recurring_binary(batches=2, batch_rows=500, initial_rows=2000)
    data, contract = write_history(history, tmp_path / "in", fmt="csv", with_timestamp=False)
    out = tmp_path / "report"

    outcome = CliRunner().invoke(
        app,
        ["backtest", "--data-uri", str(data), "--contract", str(contract),
         "--initial-rows", "2000", "--batch-rows", "500", "--policies", "static,triggered",
         "--max-epochs", "3", "--accelerator", "cpu", "--out", str(out),
         "--cache-dir", str(tmp_path / "cache")],
        env={"MLOPS_HOME": str(tmp_path / "home")},
    )  # fmt: skip

    assert outcome.exit_code == 0, outcome.output
    assert sorted(p.name for p in out.iterdir()) == [
        "backtest.html", "backtest.json", "backtest.md", "backtest.svg",
    ]  # fmt: skip
    report = json.loads((out / "backtest.json").read_text())
    assert report["initial"] == {"rows": 2000, "start": 0, "end": 1999}
    assert [b["start"] for b in report["policies"]["triggered"]["batches"]] == [2000, 2500]
    assert "static" in outcome.output and "triggered" in outcome.output


def test_the_cli_refuses_ambiguous_sizes(tmp_path: Path) -> None:
    history = recurring_binary(batches=1, batch_rows=500, initial_rows=2000)
    data, contract = write_history(history, tmp_path, fmt="parquet")
    outcome = CliRunner().invoke(
        app,
        ["backtest", "--data-uri", str(data), "--contract", str(contract),
         "--initial-rows", "2000", "--initial", "3d", "--batch", "1d"],
    )  # fmt: skip
    assert outcome.exit_code == 2
    assert "give exactly one of --initial-rows N or --initial DURATION" in outcome.output


def test_new_rows_accumulate_across_batches_until_a_retrain(tmp_path: Path) -> None:
    # 700-row batches under a 2,500-row minimum: counting one batch alone, the loop could never
    # retrain; across batches it may once the fourth batch brings the count to 2,800
    history = growing_regression(batches=6, batch_rows=700, initial_rows=4000)
    rules = RetrainPolicy(
        drift_share=0.5, consecutive_windows=2, max_metric_drop=0.0, min_labelled_rows=300,
        min_new_rows=2500, metric="r2", cooldown=pd.Timedelta(hours=0).to_pytimedelta(),
    )  # fmt: skip

    result, _ = run(history, tmp_path, "triggered", retrain=rules, train_window_rows=4000)

    batches = result["policies"]["triggered"]["batches"]
    blocked = [
        b for b in batches
        if re.search(r"but only (1400|2100) new rows since the last training", b["decision"])
    ]  # fmt: skip
    assert blocked, [b["decision"] for b in batches]
    later = [b for b in batches if b["index"] > blocked[0]["index"] and b["retrained"]]
    assert later and later[0]["version"] == blocked[0]["version"] == "v1"
    assert "new rows" not in later[0]["decision"].split(";")[0]  # not held back any more
