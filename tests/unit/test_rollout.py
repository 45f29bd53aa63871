"""Tests for rollouts: the registry's trial record, sticky canary routing, and the verdicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper, save

from mlops.registry.rollouts import CANARY_STEPS, Rollout
from mlops.registry.store import AliasNotSetError, Registry, RegistryError
from mlops.release.rollout import canary_mask, judge_canary, judge_shadow, route_share

FIXED_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MANIFEST = {"task": "binary", "classes": [0, 1], "decision_threshold": 0.5}


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    reg = Registry(str(tmp_path / "registry"), clock=lambda: FIXED_TIME)
    for _ in range(3):
        reg.register(
            "fraud",
            onnx_path=tmp_path / "model.onnx",
            manifest=dict(MANIFEST),
            reference_profile=b"ref",
            model_card="# card",
        )
    reg.promote("fraud", "v1", actor="t", reason="first")
    return reg


def test_a_shadow_rollout_is_recorded_beside_the_aliases_and_in_the_history(registry):
    state = registry.start_rollout("fraud", "v2", "shadow", actor="ana", reason="try v2")
    assert state.aliases == {"champion": "v1", "shadow": "v2"}
    assert state.rollout["strategy"] == "shadow" and state.rollout["version"] == "v2"
    assert state.rollout["champion"] == "v1"
    assert registry.aliases("fraud").rollout == state.rollout  # read back from the file
    assert registry.get("fraud", "shadow").version == "v2"
    event = registry.history("fraud")[-1]
    assert event["event"] == "rollout_started" and event["to"] == "v2" and event["actor"] == "ana"


def test_one_rollout_at_a_time_and_never_the_champion(registry):
    registry.start_rollout("fraud", "v2", "canary", share=0.05, actor="t", reason="")
    with pytest.raises(RegistryError, match="already has a canary on trial"):
        registry.start_rollout("fraud", "v3", "shadow", actor="t", reason="")
    registry.end_rollout("fraud", "cancelled", actor="t", reason="")
    with pytest.raises(RegistryError, match="is the champion"):
        registry.start_rollout("fraud", "v1", "shadow", actor="t", reason="")
    with pytest.raises(ValueError, match="between 0 and 1"):
        registry.start_rollout("fraud", "v2", "canary", share=1.0, actor="t", reason="")
    with pytest.raises(ValueError, match="shadow or canary"):
        registry.start_rollout("fraud", "v2", "direct", actor="t", reason="")


def test_widening_and_ending_a_canary(registry):
    registry.start_rollout("fraud", "v2", "canary", share=0.05, actor="t", reason="")
    state = registry.widen_rollout("fraud", 0.25, actor="monitor", reason="healthy")
    assert state.rollout["share"] == 0.25 and state.aliases["canary"] == "v2"
    with pytest.raises(AliasNotSetError, match="no rollout of v3"):
        registry.end_rollout("fraud", "rolled_back", version="v3", actor="t", reason="")
    state = registry.end_rollout("fraud", "rolled_back", version="v2", actor="m", reason="worse")
    assert state.rollout is None and state.aliases == {"champion": "v1"}
    event = registry.history("fraud")[-1]
    assert event["event"] == "rollout_rolled_back" and event["from"] == "v2"
    assert event["reason"] == "worse" and event["share"] == 0.25
    with pytest.raises(AliasNotSetError, match="no canary on trial"):
        registry.widen_rollout("fraud", 0.5, actor="t", reason="")


def test_promoting_the_version_on_trial_ends_its_rollout(registry):
    registry.start_rollout("fraud", "v2", "shadow", actor="t", reason="")
    state = registry.promote("fraud", "v2", actor="t", reason="shadow won")
    assert state.rollout is None
    assert state.aliases == {"champion": "v2", "previous": "v1"}


def test_promoting_another_version_keeps_the_trial(registry):
    registry.start_rollout("fraud", "v2", "shadow", actor="t", reason="")
    state = registry.promote("fraud", "v3", actor="t", reason="")
    assert state.rollout["version"] == "v2" and state.aliases["shadow"] == "v2"


def test_canary_steps_widen_then_promote():
    trial = Rollout("canary", "v2", CANARY_STEPS[0])
    shares = []
    while trial.next_share() is not None:
        trial = Rollout("canary", "v2", trial.next_share())
        shares.append(trial.share)
    assert shares == list(CANARY_STEPS[1:])
    assert Rollout("canary", "v2", 0.07).next_share() == 0.1


def test_routing_is_sticky_and_takes_its_share():
    keys = [f"id-{i}" for i in range(20_000)]
    mask = canary_mask(keys, 0.1)
    assert abs(mask.mean() - 0.1) < 0.01
    assert (canary_mask(keys, 0.1) == mask).all()  # the same ids, the same model
    wider = canary_mask(keys, 0.25)
    assert (wider[mask]).all()  # widening keeps every id the canary had
    assert route_share("id-7") == route_share("id-7") and 0 <= route_share(7) < 1


def _log(ids, version, p_true, y):
    """Logged rows of one version: probability p_true on the true class y."""
    p1 = np.where(y == 1, p_true, 1 - p_true)
    return pd.DataFrame(
        {
            "id": ids,
            "model_version": version,
            "label": y,
            "probability_0": 1 - p1,
            "probability_1": p1,
        }
    )


def _paired(n, champion_p, shadow_p, seed=0):
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(int=int(i))) for i in rng.integers(0, 2**63, n)]
    y = rng.integers(0, 2, n)
    noise = rng.uniform(-0.05, 0.05, n)
    return pd.concat([_log(ids, "v1", champion_p + noise, y), _log(ids, "v2", shadow_p + noise, y)])


def _shadow(joined, **kw):
    return judge_shadow(
        joined,
        Rollout("shadow", "v2"),
        "v1",
        {"v1": MANIFEST, "v2": MANIFEST},
        id_column="id",
        target="label",
        **kw,
    )


def test_a_better_shadow_wins_a_worse_one_is_retired_an_equal_one_waits():
    assert _shadow(_paired(400, 0.7, 0.8)).action == "won"
    retired = _shadow(_paired(400, 0.8, 0.7))
    assert retired.action == "retire" and "cannot reach" in retired.reason
    same = _shadow(_paired(400, 0.75, 0.75))
    assert same.action in ("wait", "retire") and same.action != "won"
    few = _shadow(_paired(100, 0.7, 0.9))
    assert few.action == "wait" and few.labelled_rows == 100
    # A margin of 20% cannot be met by a shadow only a little better: it is retired.
    assert _shadow(_paired(2000, 0.7, 0.72), margin=0.2).action == "retire"


def test_a_shadow_is_only_compared_on_the_rows_both_scored():
    joined = _paired(400, 0.7, 0.8)
    only_champion = _log(
        [f"x{i}" for i in range(500)], "v1", np.full(500, 0.99), np.ones(500, dtype=int)
    )
    verdict = _shadow(pd.concat([joined, only_champion]))
    assert verdict.labelled_rows == 400 and verdict.action == "won"


def _canary_window(n, champion_p, canary_p, share, fallback_ids=()):
    rng = np.random.default_rng(1)
    ids = np.array([f"rec-{i}" for i in range(n)])
    y = rng.integers(0, 2, n)
    mine = canary_mask(ids, share)
    frames = [
        _log(ids[~mine], "v1", np.full((~mine).sum(), champion_p), y[~mine]),
        _log(ids[mine], "v2", np.full(mine.sum(), canary_p), y[mine]),
    ]
    served = pd.concat(frames)
    if fallback_ids:
        served.loc[served["id"].isin(fallback_ids), "model_version"] = "v1"
    return served


def _canary(served, share=0.25, **kw):
    return judge_canary(
        served,
        served,
        Rollout("canary", "v2", share),
        "v1",
        {"v1": MANIFEST, "v2": MANIFEST},
        id_column="id",
        target="label",
        **kw,
    )


def test_a_healthy_canary_widens_then_is_promoted_a_worse_one_is_rolled_back():
    verdict = _canary(_canary_window(4000, 0.7, 0.72, 0.25))
    assert verdict.action == "widen" and verdict.next_share == 0.5
    assert _canary(_canary_window(4000, 0.7, 0.7, 0.5), share=0.5).action == "promote"
    worse = _canary(_canary_window(4000, 0.8, 0.6, 0.25))
    assert worse.action == "rollback" and "worse by" in worse.reason
    assert _canary(_canary_window(400, 0.7, 0.6, 0.25)).action == "wait"  # ~100 canary rows


def test_records_the_canary_failed_count_as_its_errors():
    served = _canary_window(4000, 0.7, 0.7, 0.25)
    routed = served[served["model_version"] == "v2"]["id"].tolist()
    verdict = _canary(_canary_window(4000, 0.7, 0.7, 0.25, fallback_ids=routed[:30]))
    assert verdict.action == "rollback" and verdict.fallback_rows == 30
    assert verdict.routed_rows == len(routed) and "failed 30 of" in verdict.reason


def _timed(served, canary_ms, champion_ms, seed=2):
    """Give every served row a request of its own and an answer time around the given medians."""
    rng = np.random.default_rng(seed)
    ms = np.where(served["model_version"] == "v2", canary_ms, champion_ms)
    return served.assign(
        request_id=[f"req-{i}" for i in range(len(served))],
        served_ms=ms * rng.lognormal(0.0, 0.3, len(served)),
    )


def test_a_canary_much_slower_than_the_champion_is_rolled_back_without_labels():
    served = _timed(_canary_window(4000, 0.7, 0.72, 0.25), canary_ms=40.0, champion_ms=4.0)
    verdict = judge_canary(served, served.iloc[0:0], Rollout("canary", "v2", 0.25), "v1",
                           {"v1": MANIFEST, "v2": MANIFEST}, id_column="id",
                           target="label")  # fmt: skip
    assert verdict.action == "rollback" and "95th percentile answer time" in verdict.reason
    assert verdict.latency_p95_ms > 2 * verdict.champion_latency_p95_ms


def test_latency_rolls_back_only_past_both_the_ratio_and_the_floor():
    from mlops.release.canary_latency import LatencyBudget

    healthy = _canary(_timed(_canary_window(4000, 0.7, 0.72, 0.25), 4.5, 4.0))
    assert healthy.action == "widen" and "95th percentile answer time" in healthy.reason
    # Three times slower, but by ~2 ms: below the floor, no client could tell.
    tiny = _canary(_timed(_canary_window(4000, 0.7, 0.72, 0.25), 1.2, 0.4))
    assert tiny.action == "widen" and tiny.latency_p95_ms > 2 * tiny.champion_latency_p95_ms
    strict = _canary(_timed(_canary_window(4000, 0.7, 0.72, 0.25), 1.2, 0.4),
                     latency=LatencyBudget(max_ratio=2.0, floor_ms=0.5))  # fmt: skip
    assert strict.action == "rollback"
    # 30% slower at 40 ms: within the ratio
    assert _canary(_timed(_canary_window(4000, 0.7, 0.72, 0.25), 52.0, 40.0)).action == "widen"


def test_latency_is_not_judged_on_too_few_requests_or_on_rows_without_times():
    few = _timed(_canary_window(4000, 0.7, 0.72, 0.25), canary_ms=40.0, champion_ms=4.0)
    few["request_id"] = np.where(few["model_version"] == "v2", "one-batch", few["request_id"])
    verdict = _canary(few)  # the canary's ~1,000 rows came in one request: one answer time
    assert verdict.action == "widen" and verdict.latency_p95_ms is None
    assert "latency not judged (1 requests answered by v2" in verdict.reason
    old = _canary(_canary_window(4000, 0.7, 0.72, 0.25))  # a log written before served_ms
    assert old.action == "widen" and old.latency_p95_ms is None


def test_the_same_model_twice_does_not_breach_even_with_a_heavy_tail():
    from mlops.release.canary_latency import LatencyBudget, canary_latency

    rng = np.random.default_rng(3)
    budget = LatencyBudget(floor_ms=0.0)  # the ratio alone, on times of one distribution
    breaches = 0
    for look in range(300):
        ms = rng.lognormal(1.0, 1.0, 3100)  # p95 ~ 5x the median
        served = pd.DataFrame({"request_id": [f"{look}-{i}" for i in range(3100)],
                               "model_version": ["v2"] * 100 + ["v1"] * 3000,
                               "served_ms": ms})  # fmt: skip
        breaches += canary_latency(served, "v2", "v1", budget).breach
    assert breaches <= 3  # ~0.1% per look in simulation


def _outcome(registry, version, *, passed=True):
    from mlops.release.gate import GateDecision
    from mlops.release.gating import GateOutcome

    decision = GateDecision(
        promote=passed, metric="roc_auc", challenger=0.9, champion=0.8, champion_version="v1",
        delta=0.1, floor=0.7, max_regression=0.005, floor_passed=True, regression_passed=passed,
        verdict=f"{version} passes" if passed else f"{version} refused",
    )  # fmt: skip
    return GateOutcome(registry.get("fraud", version), decision, registry.aliases("fraud").revision)


def test_a_gated_challenger_goes_on_trial_and_supersedes_the_one_on_trial(registry):
    from mlops.registry.store import ConcurrentUpdateError
    from mlops.release.rollout import put_on_trial

    assert put_on_trial(registry, _outcome(registry, "v2", passed=False), "shadow", share=0,
                        actor="t") is None  # fmt: skip
    trial = put_on_trial(registry, _outcome(registry, "v2"), "shadow", share=0.05, actor="t")
    assert trial is not None and trial.version == "v2" and trial.share == 0.0
    stale = _outcome(registry, "v3")
    registry.set_alias("fraud", "challenger", "v3", actor="t", reason="moves the revision")
    with pytest.raises(ConcurrentUpdateError):
        put_on_trial(registry, stale, "canary", share=0.1, actor="t")
    trial = put_on_trial(registry, _outcome(registry, "v3"), "canary", share=0.1, actor="t")
    assert trial is not None and (trial.version, trial.strategy, trial.share) == (
        "v3",
        "canary",
        0.1,
    )
    events = [(e["event"], e.get("reason")) for e in registry.history("fraud")[-2:]]
    assert events == [("rollout_superseded", "superseded by v3"), ("rollout_started", "v3 passes")]
    assert registry.aliases("fraud").aliases == {
        "champion": "v1",
        "challenger": "v3",
        "canary": "v3",
    }
