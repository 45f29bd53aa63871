"""Tests of the retrain policy: evidence first (labels, estimate, drift), what holds it back."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mlops.monitoring.policy import EVENTS, PolicyInputs, decide_retrain
from mlops.monitoring.thresholds import RetrainPolicy

NOW = dt.datetime(2026, 1, 16, 12, 0)
POLICY = RetrainPolicy(drift_share=0.3, consecutive_windows=2)


def inputs(**overrides) -> PolicyInputs:
    """Quiet inputs: 1 of 12 features drifting, roc_auc close to the champion's, plenty of rows."""
    values = {
        "now": NOW,
        "new_rows": 50_000,
        "n_features": 12,
        "n_drifted": 1,
        "previous_drift_shares": (0.0, 0.0),
        "metric_value": 0.91,
        "labelled_rows": 2000,
        "champion_metric": 0.92,
        "last_retrain": NOW - dt.timedelta(days=10),
    }
    return PolicyInputs(**{**values, **overrides})


def unlabelled(**overrides) -> PolicyInputs:
    """The same window with no labels (and no estimate): drift is the only evidence left."""
    return inputs(**{"metric_value": None, "labelled_rows": 0, **overrides})


def test_quiet_windows_do_not_retrain_and_say_why():
    decision = decide_retrain(inputs(), POLICY)

    assert (decision.retrain, decision.reason, decision.event) == (False, None, None)
    assert decision.evidence == "labels"
    assert decision.explanation == (
        "retrain: no, because roc_auc 0.91 is within 0.05 of the champion's 0.92; "
        "drift: only 1 of 12 features drifted (8% < 30%)"
    )


def test_drift_in_consecutive_windows_retrains_when_nothing_better_is_known():
    decision = decide_retrain(unlabelled(n_drifted=5, previous_drift_shares=(0.0, 0.4)), POLICY)

    assert (decision.retrain, decision.reason) == (True, "drift")
    assert (decision.event, decision.evidence) == ("mlops.model.drift-detected", "drift")
    assert decision.explanation == (
        "retrain: yes, because 5 of 12 features drifted (42% >= 30%) in 2 consecutive windows "
        "and no labelled rows yet to measure roc_auc"
    )
    assert decision.drift_share == pytest.approx(5 / 12)


def test_drift_in_a_single_window_waits_for_the_next():
    decision = decide_retrain(unlabelled(n_drifted=5, previous_drift_shares=(0.4, 0.1)), POLICY)

    assert not decision.retrain
    assert "in only 1 of the 2 consecutive windows required" in decision.explanation


def test_drift_with_no_history_yet_waits():
    decision = decide_retrain(unlabelled(n_drifted=6, previous_drift_shares=()), POLICY)

    assert not decision.retrain


def test_one_window_suffices_when_the_policy_says_so():
    policy = RetrainPolicy(drift_share=0.3, consecutive_windows=1)

    decision = decide_retrain(unlabelled(n_drifted=4, previous_drift_shares=()), policy)

    assert decision.retrain
    assert "features drifted (33% >= 30%) in the current window" in decision.explanation


def test_three_consecutive_windows_need_two_earlier_drifting_ones():
    policy = RetrainPolicy(drift_share=0.3, consecutive_windows=3)

    assert decide_retrain(unlabelled(n_drifted=4, previous_drift_shares=(0.5, 0.5)), policy).retrain
    assert not decide_retrain(unlabelled(n_drifted=4, previous_drift_shares=(0.5,)), policy).retrain


def test_performance_drop_retrains_with_its_own_event():
    decision = decide_retrain(inputs(metric_value=0.84), POLICY)

    assert (decision.retrain, decision.reason) == (True, "performance")
    assert decision.event == "mlops.model.performance-degraded"
    assert decision.explanation == (
        "retrain: yes, because roc_auc 0.84 on 2000 labelled rows is 0.08 below "
        "the champion's 0.92 (more than 0.05); drift: only 1 of 12 features drifted (8% < 30%)"
    )


def test_performance_outranks_drift_when_both_fire():
    decision = decide_retrain(
        inputs(metric_value=0.8, n_drifted=6, previous_drift_shares=(0.5,)), POLICY
    )

    assert decision.reason == "performance"
    assert decision.triggers == ("performance", "drift")
    assert "; drift: 6 of 12 features drifted" in decision.explanation


def test_performance_needs_enough_labelled_rows():
    decision = decide_retrain(inputs(metric_value=0.5, labelled_rows=120), POLICY)

    assert not decision.retrain
    assert "roc_auc is not judged on only 120 labelled rows (< 500)" in decision.explanation


def test_missing_or_undefined_metrics_do_not_trigger():
    for overrides in (
        {"metric_value": None, "labelled_rows": 0},
        {"metric_value": float("nan")},
        {"champion_metric": None, "metric_value": 0.5},
    ):
        assert not decide_retrain(inputs(**overrides), POLICY).retrain


def test_lower_is_better_metrics_count_a_rise_as_a_drop():
    policy = RetrainPolicy(metric="rmse", max_metric_drop=5.0)

    worse = decide_retrain(inputs(metric_value=30.0, champion_metric=20.0), policy)
    better = decide_retrain(inputs(metric_value=12.0, champion_metric=20.0), policy)

    assert worse.retrain
    assert "rmse 30 on 2000 labelled rows is 10 above the champion's 20" in worse.explanation
    assert not better.retrain


def test_cooldown_holds_a_retrain_back():
    decision = decide_retrain(
        inputs(metric_value=0.8, last_retrain=NOW - dt.timedelta(hours=3)), POLICY
    )

    assert (decision.retrain, decision.reason, decision.event) == (False, None, None)
    assert decision.triggers == ("performance",)
    assert decision.explanation.endswith(
        ", but the last retrain was 3 h ago, within the 24 h cooldown"
    )
    assert decision.explanation.startswith("retrain: no: roc_auc 0.8 on 2000 labelled rows")


def test_cooldown_ends():
    decision = decide_retrain(
        inputs(metric_value=0.8, last_retrain=NOW - dt.timedelta(hours=25)), POLICY
    )

    assert decision.retrain


def test_too_few_new_rows_hold_a_retrain_back():
    decision = decide_retrain(inputs(metric_value=0.86, new_rows=300), POLICY)

    assert not decision.retrain
    assert decision.explanation.endswith("but only 300 new rows since the last training (< 1000)")


def test_decision_serialises_to_json():
    decision = decide_retrain(inputs(metric_value=0.8), POLICY)

    data = json.loads(json.dumps(decision.to_dict(), allow_nan=False))

    assert data["reason"] == "performance"
    assert data["triggers"] == ["performance"]


def test_no_features_tested_is_said_plainly():
    decision = decide_retrain(inputs(n_features=0, n_drifted=0), POLICY)

    assert "no features were tested for drift" in decision.explanation


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("drift_share", 1.5, "drift_share must be in"),
        ("consecutive_windows", 0, "consecutive_windows must be >= 1"),
        ("metric", "accuracy_at_k", "unknown metric 'accuracy_at_k'"),
    ],
)
def test_invalid_policies_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        RetrainPolicy(**{field: value})


def test_a_window_ending_before_the_last_retrain_is_not_held_by_a_zero_cooldown() -> None:
    import datetime as dt

    from mlops.monitoring.policy import PolicyInputs, decide_retrain
    from mlops.monitoring.thresholds import RetrainPolicy

    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    inputs = PolicyInputs(
        now=now, new_rows=5000, n_features=11, n_drifted=5, previous_drift_shares=(0.5,),
        last_retrain=now + dt.timedelta(minutes=5),
    )  # fmt: skip
    assert decide_retrain(inputs, RetrainPolicy(cooldown=dt.timedelta(0))).retrain
    held = decide_retrain(inputs, RetrainPolicy(cooldown=dt.timedelta(hours=1)))
    assert not held.retrain and "cooldown" in held.explanation


def test_drift_alone_does_not_retrain_while_labels_show_no_loss():
    decision = decide_retrain(inputs(n_drifted=8, previous_drift_shares=(0.7, 0.7)), POLICY)

    assert (decision.retrain, decision.event, decision.evidence) == (False, None, "labels")
    assert decision.triggers == ("drift",)
    assert decision.explanation.endswith("which alone is not evidence of harm")


def test_too_few_labels_fall_back_to_the_estimate_before_drift():
    drifting = {"n_drifted": 8, "previous_drift_shares": (0.7,), "labelled_rows": 100}
    holding = decide_retrain(
        inputs(**drifting, estimated_metric=0.90, estimated_reference=0.92), POLICY
    )
    falling = decide_retrain(
        inputs(**drifting, estimated_metric=0.80, estimated_reference=0.92), POLICY
    )

    assert (holding.retrain, holding.evidence) == (False, "estimate")
    assert "the roc_auc its probabilities predict is 0.9 vs 0.92" in holding.explanation
    assert (falling.retrain, falling.reason, falling.evidence) == (
        True, "estimated-performance", "estimate",
    )  # fmt: skip
    assert falling.event == "mlops.model.performance-degraded"
    assert "(down 0.12, more than 0.05)" in falling.explanation


def test_a_window_that_fails_data_checks_raises_an_incident_and_never_retrains():
    decision = decide_retrain(
        inputs(metric_value=0.6, failed_checks=("amount scale: median 4520, spread 100x",)),
        POLICY,
    )

    assert (decision.retrain, decision.reason) == (False, "data-quality")
    assert decision.event == "mlops.model.data-quality-failed"
    assert decision.event not in EVENTS.values()  # the retrain trigger does not fire on it
    assert "amount scale: median 4520" in decision.explanation


def test_each_refused_challenger_adds_a_cooldown_and_the_new_rows_needed():
    dropped = {"metric_value": 0.86, "new_rows": 2500}  # 0.06 below 0.92: above 0.05, not 0.1

    assert decide_retrain(inputs(**dropped, refused_challengers=1), POLICY).retrain
    held = decide_retrain(inputs(**dropped, refused_challengers=2), POLICY)
    assert not held.retrain
    assert held.explanation.endswith(
        "but only 2500 new rows since the last training (< 3000, x3 after 2 refused challengers)"
    )
    late = inputs(**dropped, refused_challengers=1, last_retrain=NOW - dt.timedelta(hours=30))
    assert "within the 2 d cooldown, x2 after 1 refused challenger" in (
        decide_retrain(late, POLICY).explanation
    )
    capped = inputs(
        metric_value=0.86, new_rows=8000, refused_challengers=20,
        last_retrain=NOW - dt.timedelta(days=9),
    )  # fmt: skip
    assert decide_retrain(capped, POLICY).retrain  # at most 8x


def test_a_severe_drop_waives_the_back_off_but_not_the_cooldown():
    severe = {"metric_value": 0.80, "new_rows": 2500, "refused_challengers": 3}  # 0.12 >= 2 x 0.05

    decision = decide_retrain(inputs(**severe), POLICY)
    assert decision.retrain and decision.reason == "performance"
    recent = inputs(**severe, last_retrain=NOW - dt.timedelta(hours=20))
    assert decide_retrain(recent, POLICY).explanation.endswith(
        "within the 24 h cooldown, no back-off: the drop is at least 2x the allowed one"
    )
    assert not decide_retrain(inputs(**{**severe, "metric_value": 0.83}), POLICY).retrain
    estimated = unlabelled(
        estimated_metric=0.7, estimated_reference=0.9, new_rows=2500, refused_challengers=3
    )
    assert decide_retrain(estimated, POLICY).retrain


def test_a_severe_drop_needs_only_the_new_rows_that_measured_it():
    # A batch smaller than min_new_rows right after a refused challenger: the champion fails.
    severe = inputs(metric_value=0.6, new_rows=730, labelled_rows=730, refused_challengers=1)
    assert decide_retrain(severe, POLICY).retrain
    fewer = inputs(metric_value=0.6, new_rows=400, labelled_rows=730, refused_challengers=1)
    assert decide_retrain(fewer, POLICY).explanation.endswith(
        "only 400 new rows since the last training (< 500, no back-off: the drop is at least 2x "
        "the allowed one)"
    )
    mild = inputs(metric_value=0.86, new_rows=730, labelled_rows=730)  # 0.06: not severe
    assert decide_retrain(mild, POLICY).explanation.endswith(
        "only 730 new rows since the last training (< 1000)"
    )


def test_the_live_metric_is_held_to_the_better_of_holdout_and_first_live_windows():
    # A refitted champion's holdout figure understates it: a fall from its first live window
    # counts from there.
    fell = decide_retrain(
        inputs(metric_value=0.80, champion_metric=0.78, live_baseline=0.88), POLICY
    )
    assert fell.retrain and fell.reason == "performance"
    assert (
        "roc_auc 0.8 on 2000 labelled rows is 0.08 below the champion's first live windows' "
        "0.88 (more than 0.05)" in fell.explanation
    )
    # A first window worse than the holdout does not loosen the rule.
    held = decide_retrain(
        inputs(metric_value=0.84, champion_metric=0.92, live_baseline=0.80), POLICY
    )
    assert held.retrain and "0.08 below the champion's 0.92" in held.explanation
    better = decide_retrain(inputs(metric_value=0.95, live_baseline=0.94), POLICY)
    assert not better.retrain
    assert "roc_auc 0.95 is no worse than the champion's first live windows' 0.94" in (
        better.explanation
    )
    # For a metric where lower is better, "better" is lower.
    rmse = RetrainPolicy(metric="rmse", max_metric_drop=5.0)
    assert decide_retrain(
        inputs(metric_value=27.0, champion_metric=30.0, live_baseline=20.0), rmse
    ).retrain


def test_a_champion_trained_after_a_change_catches_up_once_the_new_rows_doubled():
    young = {"catch_up_rows": 3000, "metric_value": 0.88, "champion_metric": 0.86}
    waiting = decide_retrain(inputs(**young, new_rows=2999), POLICY)
    assert (waiting.retrain, waiting.triggers) == (False, ())
    due = decide_retrain(inputs(**young, new_rows=3000), POLICY)
    assert (due.retrain, due.reason, due.event) == (True, "catch-up", "mlops.model.catch-up-due")
    assert due.evidence == "labels" and due.triggers == ("catch-up",)
    assert due.explanation.startswith(
        "retrain: yes, because the champion learned only 3,000 rows of the concept that changed "
        "before its training, and 3,000 rows have been served since"
    )
    assert "roc_auc 0.88 is no worse than the champion's 0.86" in due.explanation
    # a champion that was not trained on a change it found (None) never catches up
    assert not decide_retrain(inputs(new_rows=10**6), POLICY).retrain


def test_a_catch_up_is_held_back_like_any_retrain_and_never_runs_on_a_broken_feed():
    young = {"catch_up_rows": 3000, "new_rows": 9000}
    cooling = decide_retrain(inputs(**young, last_retrain=NOW - dt.timedelta(hours=1)), POLICY)
    assert not cooling.retrain and "cooldown" in cooling.explanation
    refused = decide_retrain(inputs(**young, refused_challengers=1), POLICY)
    assert not refused.retrain and "catch-up" not in refused.triggers  # it had its chance
    few = decide_retrain(inputs(catch_up_rows=500, new_rows=800), POLICY)
    assert not few.retrain and "only 800 new rows" in few.explanation  # min_new_rows still holds
    broken = decide_retrain(inputs(**young, failed_checks=("amount scale: median 7136",)), POLICY)
    assert (broken.retrain, broken.reason) == (False, "data-quality")


def test_a_drop_still_decides_as_a_drop_when_a_catch_up_is_also_due():
    decision = decide_retrain(
        inputs(catch_up_rows=3000, metric_value=0.80, champion_metric=0.92), POLICY
    )
    assert (decision.retrain, decision.reason) == (True, "performance")
