"""Tests of the promotion gate: floors, allowed regression, metric direction and its report."""

from __future__ import annotations

import pytest

from mlops.release.gate import (
    DEFAULT_FLOORS,
    GatePolicy,
    ThresholdedScores,
    decide,
    decision_markdown,
    thresholded_scores,
)

AUC = GatePolicy(metric="roc_auc", floor=0.70, max_regression=0.01)


def test_first_model_above_the_floor_is_promoted_as_first_champion() -> None:
    decision = decide(0.85, None, AUC, challenger_version="v1")

    assert decision.promote and decision.floor_passed and decision.regression_passed
    assert decision.delta is None and decision.champion is None
    assert decision.verdict.startswith("v1 is promoted as the first champion")
    assert "0.8500" in decision.verdict


def test_first_model_without_a_floor_is_promoted_with_a_verdict_saying_so() -> None:
    policy = GatePolicy(metric="rmse", floor=None)

    decision = decide(12.0, None, policy, challenger_version="v1")

    assert decision.promote
    assert (
        decision.verdict
        == "v1 is promoted as the first champion: its rmse 12.0000 has no floor to clear."
    )


def test_model_below_the_floor_is_refused_with_the_amount_it_misses_by() -> None:
    decision = decide(0.65, None, AUC, challenger_version="v1")

    assert not decision.promote and not decision.floor_passed
    assert "v1 is not promoted" in decision.verdict
    assert "misses the floor (at least 0.7000) by 0.0500" in decision.verdict


def test_floor_is_checked_even_when_the_challenger_beats_the_champion() -> None:
    decision = decide(0.65, 0.60, AUC, challenger_version="v3", champion_version="v2")

    assert not decision.promote and decision.regression_passed and not decision.floor_passed


def test_regression_beyond_the_allowed_amount_is_refused_naming_both_versions() -> None:
    decision = decide(0.80, 0.83, AUC, challenger_version="v4", champion_version="v3")

    assert not decision.promote and decision.floor_passed and not decision.regression_passed
    assert decision.delta == pytest.approx(-0.03)
    verdict = decision.verdict
    assert verdict.startswith("v4 is not promoted")
    assert "champion v3 (0.8300)" in verdict
    assert "0.8000 is 0.0300 worse" in verdict
    assert "allowed 0.0100" in verdict


def test_regression_within_the_allowed_amount_is_promoted() -> None:
    decision = decide(0.825, 0.83, AUC, challenger_version="v4", champion_version="v3")

    assert decision.promote
    assert decision.delta == pytest.approx(-0.005)
    assert "v4 is promoted" in decision.verdict and "champion v3 0.8300" in decision.verdict
    assert "(-0.0050, allowed regression 0.0100)" in decision.verdict


def test_zero_allowed_regression_refuses_any_loss_and_accepts_a_tie() -> None:
    policy = GatePolicy(metric="roc_auc", floor=0.5, max_regression=0.0)

    assert decide(0.80, 0.80, policy, challenger_version="v2", champion_version="v1").promote
    assert not decide(0.7999, 0.80, policy, challenger_version="v2", champion_version="v1").promote


def test_lower_is_better_metric_uses_the_floor_as_a_maximum() -> None:
    policy = GatePolicy(metric="rmse", floor=10.0, max_regression=0.5)

    passed = decide(9.0, None, policy, challenger_version="v1")
    refused = decide(12.5, None, policy, challenger_version="v1")

    assert passed.promote
    assert not refused.promote
    assert "misses the floor (at most 10.0000) by 2.5000" in refused.verdict


def test_lower_is_better_metric_counts_a_higher_value_as_a_regression() -> None:
    policy = GatePolicy(metric="rmse", floor=None, max_regression=0.5)

    worse = decide(11.0, 10.0, policy, challenger_version="v2", champion_version="v1")
    better = decide(8.0, 10.0, policy, challenger_version="v2", champion_version="v1")

    assert not worse.promote and worse.delta == pytest.approx(-1.0)
    assert "1.0000 worse than champion v1 (10.0000)" in worse.verdict
    assert better.promote and better.delta == pytest.approx(2.0)


def test_resolved_policy_fills_the_task_primary_metric_and_its_default_floor() -> None:
    for task, metric in (("binary", "roc_auc"), ("multiclass", "macro_f1"), ("regression", "r2")):
        resolved = GatePolicy(max_regression=0.02).resolved(task)

        assert resolved == GatePolicy(metric, DEFAULT_FLOORS[metric], 0.02)


def test_resolved_policy_keeps_an_explicit_floor_and_has_none_for_metrics_without_default() -> None:
    assert GatePolicy(metric="roc_auc", floor=0.9).resolved("binary").floor == 0.9
    assert GatePolicy(metric="rmse").resolved("regression").floor is None


def test_unknown_gate_metric_is_rejected_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown gate metric 'auc'; known: \[.*'roc_auc'"):
        GatePolicy(metric="auc").resolved("binary")


def test_decision_markdown_shows_the_table_and_the_verdict() -> None:
    decision = decide(0.80, 0.83, AUC, challenger_version="v4", champion_version="v3")

    text = decision_markdown(decision)

    assert text.startswith("## Gate decision: KEEP CHAMPION")
    assert "| metric | champion | challenger | delta | threshold | result |" in text
    assert "| roc_auc | 0.8300 | 0.8000 | -0.0300 | floor 0.7000 | pass |" in text
    assert (
        "| roc_auc vs champion | 0.8300 | 0.8000 | -0.0300 | regression <= 0.0100 | FAIL |" in text
    )
    assert f"**{decision.verdict}**" in text


def test_decision_markdown_of_a_first_champion_shows_n_a_for_the_missing_champion() -> None:
    text = decision_markdown(decide(0.9, None, AUC, challenger_version="v1"))

    assert text.startswith("## Gate decision: PROMOTE")
    assert "| roc_auc | n/a | 0.9000 | n/a | floor 0.7000 | pass |" in text


def test_decision_to_dict_holds_every_number_behind_the_verdict() -> None:
    found = decide(0.80, 0.83, AUC, challenger_version="v4", champion_version="v3").to_dict()

    assert found["champion_version"] == "v3"
    assert found["floor"] == 0.70 and found["max_regression"] == 0.01
    assert found["promote"] is False


def test_better_auc_with_accuracy_far_below_the_champion_is_refused_naming_accuracy() -> None:
    scores = ThresholdedScores("accuracy", challenger=0.80, champion=0.85)

    decision = decide(
        0.92, 0.90, AUC, challenger_version="v5", champion_version="v4", thresholded=scores
    )

    assert not decision.promote and decision.regression_passed and not decision.decision_passed
    assert decision.decision_metric == "accuracy"
    assert decision.decision_delta == pytest.approx(-0.05)
    assert decision.max_decision_regression == 0.02
    assert decision.verdict.startswith("v5 is not promoted: its accuracy at its own threshold")
    assert "0.8000 is 0.0500 worse than champion v4's (0.8500)" in decision.verdict
    assert "allowed 0.0200" in decision.verdict and "roc_auc" not in decision.verdict


def test_thresholded_metric_within_the_allowed_margin_is_promoted() -> None:
    scores = ThresholdedScores("f1", challenger=0.84, champion=0.85)

    decision = decide(
        0.91, 0.90, AUC, challenger_version="v5", champion_version="v4", thresholded=scores
    )

    assert decision.promote and decision.decision_passed
    assert "its f1 at its own threshold 0.8400 vs 0.8500 (-0.0100" in decision.verdict


def test_the_margin_of_the_thresholded_check_comes_from_the_policy() -> None:
    scores = ThresholdedScores("accuracy", challenger=0.84, champion=0.85)
    strict = GatePolicy(metric="roc_auc", floor=0.7, max_decision_regression=0.005)

    decision = decide(0.91, 0.90, strict, challenger_version="v5", champion_version="v4",
                      thresholded=scores)  # fmt: skip

    assert not decision.promote and "more than the allowed 0.0050" in decision.verdict


def test_every_failing_check_is_named_in_the_verdict() -> None:
    scores = ThresholdedScores("accuracy", challenger=0.70, champion=0.85)

    decision = decide(
        0.80, 0.83, AUC, challenger_version="v5", champion_version="v4", thresholded=scores
    )

    assert "its roc_auc 0.8000 is 0.0300 worse" in decision.verdict
    assert "; and its accuracy at its own threshold 0.7000 is 0.1500 worse" in decision.verdict


def test_a_first_champion_has_no_thresholded_comparison_to_fail() -> None:
    scores = ThresholdedScores("accuracy", challenger=0.60, champion=None)

    decision = decide(0.85, None, AUC, challenger_version="v1", thresholded=scores)

    assert decision.promote and decision.decision_delta is None
    assert "| accuracy at own threshold vs champion | n/a | 0.6000 | n/a |" in decision_markdown(
        decision
    )


def test_decision_markdown_shows_the_thresholded_check() -> None:
    scores = ThresholdedScores("accuracy", challenger=0.80, champion=0.85)
    decision = decide(
        0.92, 0.90, AUC, challenger_version="v5", champion_version="v4", thresholded=scores
    )

    text = decision_markdown(decision)

    assert text.startswith("## Gate decision: KEEP CHAMPION")
    assert (
        "| accuracy at own threshold vs champion | 0.8500 | 0.8000 | -0.0500 | "
        "regression <= 0.0200 | FAIL |" in text
    )


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_have_no_thresholded_check(task: str) -> None:
    scores = {"accuracy": 0.5, "macro_f1": 0.5, "r2": 0.5}
    policy = GatePolicy().resolved(task)

    thresholded = thresholded_scores({"task": task}, scores, {"accuracy": 0.9})
    decision = decide(0.6, 0.6, policy, challenger_version="v2", champion_version="v1",
                      thresholded=thresholded)  # fmt: skip

    assert thresholded is None and decision.promote and decision.decision_metric is None
    assert "| thresholded metric vs champion | n/a | n/a | n/a | n/a | n/a |" in (
        decision_markdown(decision)
    )


@pytest.mark.parametrize(
    ("objective", "metric"), [("f1", "f1"), ("balanced_accuracy", "balanced_accuracy"),
                              ("fixed:0.3", "accuracy"), (None, "accuracy")],
)  # fmt: skip
def test_the_thresholded_metric_is_the_challenger_objective_s(
    objective: str | None, metric: str
) -> None:
    manifest = {"task": "binary", "threshold_objective": objective}
    challenger = {"accuracy": 0.8, "balanced_accuracy": 0.7, "f1": 0.6}
    champion = {"accuracy": 0.81, "balanced_accuracy": 0.71, "f1": 0.61}

    found = thresholded_scores(manifest, challenger, champion)

    assert found == ThresholdedScores(metric, challenger[metric], champion[metric])
    assert thresholded_scores(manifest, challenger, None) == ThresholdedScores(
        metric, challenger[metric], None
    )


def test_resolved_policy_keeps_the_allowed_thresholded_regression() -> None:
    assert (
        GatePolicy(max_decision_regression=0.03).resolved("binary").max_decision_regression == 0.03
    )
