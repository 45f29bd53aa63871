"""The loop benchmark's criteria on hand-made backtest documents, and its scenarios' truth."""

from __future__ import annotations

from typing import Any

import pytest

from bench.loop_criteria import (
    CRITERIA,
    GroundTruth,
    close_to_every,
    judge,
    never_worse_than_static,
    no_retrain_on_broken,
    quiet_when_stable,
    threshold_holds,
)
from bench.loop_scenarios import build_scenario, ground_truth
from mlops.backtest.plan import Span, plan_batches


def entry(index: int, *, retrain: bool = False, **metrics: float) -> dict[str, Any]:
    """One batch of a policy as the backtest records it."""
    return {"index": index, "action": "retrain" if retrain else "keep", "retrained": retrain,
            **metrics}  # fmt: skip


def policy(mean: float, retrains: int = 0, batches: list | None = None, **means: float) -> dict:
    return {"mean": mean, "means": means, "retrains": retrains, "batches": batches or []}


def document(task: str = "binary", **policies: dict) -> dict[str, Any]:
    metric = {"binary": "roc_auc", "regression": "r2"}[task]
    return {"task": task, "metric": metric, "higher_is_better": True, "policies": policies}


def test_triggered_must_match_static_on_the_primary_metric_and_on_accuracy() -> None:
    static = policy(0.90, accuracy=0.80)
    assert (
        never_worse_than_static(
            document(static=static, triggered=policy(0.90, accuracy=0.80))
        ).status
        == "PASS"
    )
    worse = never_worse_than_static(document(static=static, triggered=policy(0.899, accuracy=0.9)))
    assert worse.status == "FAIL" and "-0.0010" in worse.figure
    less_accurate = document(static=static, triggered=policy(0.95, accuracy=0.79))
    assert never_worse_than_static(less_accurate).status == "FAIL"
    assert never_worse_than_static(document(static=static)).status == "not measured"


def test_a_lower_is_better_primary_metric_counts_lower_as_better() -> None:
    result = document("regression", static=policy(0.5), triggered=policy(0.4))
    result |= {"metric": "rmse", "higher_is_better": False}
    assert never_worse_than_static(result).status == "PASS"
    result["policies"]["triggered"]["mean"] = 0.6
    assert never_worse_than_static(result).status == "FAIL"


@pytest.mark.parametrize(
    ("triggered", "retrains", "status"),
    [(0.905, 10, "PASS"), (0.925, 10, "PASS"), (0.899, 10, "FAIL"), (0.91, 11, "FAIL")],
)
def test_triggered_is_close_to_every_with_at_most_half_its_retrains(
    triggered: float, retrains: int, status: str
) -> None:
    result = document(every=policy(0.91, 20), triggered=policy(triggered, retrains))
    assert close_to_every(result).status == status


def test_regression_is_close_to_every_within_five_percent_of_rmse() -> None:
    every = policy(0.9, 20, rmse=10.0)
    close = document("regression", every=every, triggered=policy(0.1, 10, rmse=10.49))
    far = document("regression", every=every, triggered=policy(0.9, 10, rmse=10.6))
    assert close_to_every(close).status == "PASS"  # judged on RMSE, not on r2
    assert close_to_every(far).status == "FAIL" and "+6.0%" in close_to_every(far).figure


def test_broken_batches_are_left_out_of_the_means_compared() -> None:
    # every learned the broken feed of batch 2 and scored well on batch 3, also broken
    def batches(*aucs: float) -> list:
        return [entry(i, roc_auc=a, accuracy=0.9) for i, a in enumerate(aucs)]

    every = policy(0.0, 4, batches(0.90, 0.90, 0.40, 0.90), accuracy=0.9)
    triggered = policy(0.0, 0, batches(0.90, 0.90, 0.40, 0.41), accuracy=0.9)
    static = policy(0.0, 0, batches(0.90, 0.88, 0.40, 0.40), accuracy=0.9)
    every["mean"], triggered["mean"], static["mean"] = 0.775, 0.6525, 0.645
    result = document(every=every, triggered=triggered, static=static)
    assert close_to_every(result).status == "FAIL"  # the policy means count batch 3 ...
    fair = close_to_every(result, (2, 3))  # ... the criterion does not
    assert fair.status == "PASS" and "without the broken batches (2, 3)" in fair.figure
    assert "roc_auc 0.9000 vs 0.9000" in fair.figure
    assert never_worse_than_static(result, (2, 3)).status == "PASS"


def test_one_retrain_per_twenty_stable_windows_at_most() -> None:
    def result(*retrains: int) -> dict:
        batches = [entry(i, retrain=i in retrains) for i in range(45)]
        return document(triggered=policy(0.9, len(retrains), batches))

    stable = tuple(range(9))
    assert quiet_when_stable(result(3, 20), stable).status == "PASS"  # 20 is not stable
    assert quiet_when_stable(result(3, 5), stable).status == "FAIL"
    assert quiet_when_stable(result(3, 25), tuple(range(40))).status == "PASS"
    assert quiet_when_stable(result(3, 25, 30), tuple(range(40))).status == "FAIL"
    assert quiet_when_stable(result(3), None).status == "n/a"


def test_no_retrain_may_be_decided_on_a_broken_batch() -> None:
    def result(retrain: int) -> dict:
        batches = [entry(i, retrain=i == retrain) for i in range(10)]
        return document(triggered=policy(0.9, 1, batches))

    assert no_retrain_on_broken(result(7), (4, 5, 6)).status == "PASS"
    failed = no_retrain_on_broken(result(5), (4, 5, 6))
    assert failed.status == "FAIL" and failed.short == "1 on 3"
    assert no_retrain_on_broken(result(5), ()).status == "n/a"


def test_the_served_accuracy_may_trail_a_half_cut_by_two_points_at_most() -> None:
    def result(task: str = "binary", **extra: float) -> dict:
        batches = [entry(0, accuracy=0.80) | extra, entry(1, accuracy=0.70) | extra]
        return document(task, triggered=policy(0.9, 0, batches))

    assert threshold_holds(result(accuracy_at_0_5=0.719), balanced=True).status == "PASS"
    failed = threshold_holds(result(accuracy_at_0_5=0.721), balanced=True)
    assert failed.status == "FAIL" and "batch 1" in failed.figure
    assert threshold_holds(result(), balanced=True).status == "not measured"
    assert threshold_holds(result(accuracy_at_0_5=0.9), balanced=False).status == "n/a"
    assert threshold_holds(result("regression"), balanced=True).status == "n/a"


def test_judge_gives_the_five_verdicts_in_order() -> None:
    batches = [entry(0, accuracy=0.8)]
    result = document(
        static=policy(0.9, 0, batches, accuracy=0.8),
        every=policy(0.9, 1, batches, accuracy=0.8),
        triggered=policy(0.9, 0, batches, accuracy=0.8),
    )
    verdicts = judge(result, GroundTruth(stable=(0,), broken=None, balanced=True))
    assert [v.key for v in verdicts] == list(CRITERIA)
    assert [v.status for v in verdicts] == ["PASS", "PASS", "PASS", "n/a", "not measured"]


def test_the_simulator_scenario_knows_its_stable_and_broken_days() -> None:
    scenario = build_scenario("simulator", quick=True)  # 10 days: shift on day 5, incident day 8
    plan = plan_batches(
        scenario.frame, "timestamp", Span.parse(scenario.initial), Span.parse(scenario.batch)
    )
    assert [b.start[:10] for b in plan.batches][:1] == ["2026-01-04"]  # after 3 initial days
    truth = ground_truth(scenario, plan)
    assert (truth.stable, truth.broken, truth.balanced) == ((0, 1), (5,), False)


def test_the_broken_scenario_knows_its_broken_batches() -> None:
    scenario = build_scenario("broken", quick=True)
    plan = plan_batches(
        scenario.frame, "timestamp", Span.parse(scenario.initial), Span.parse(scenario.batch)
    )
    truth = ground_truth(scenario, plan)
    assert (truth.stable, truth.broken, truth.balanced) == (None, (3, 4, 5), True)
    assert plan.batches[3].first == 1500 + 3 * 500
