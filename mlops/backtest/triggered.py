"""One policy's state during a replay, and the triggered policy's decision on a batch.

`triggered` decides with monitor-model's code: a whylogs profile of the batch as serving logs
it, drift and constraints against the champion's reference profile, live performance on the
batch's labels, an estimate from the outputs, and the retrain policy, with the cooldown measured
in event time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops.backtest.policies import PolicySpec
from mlops.contract.spec import Contract
from mlops.inference.model import LoadedModel
from mlops.monitoring.estimate import estimate_window
from mlops.monitoring.policy import decide_retrain
from mlops.monitoring.profile import profile_frame, profile_from_bytes
from mlops.monitoring.thresholds import RetrainPolicy
from mlops.monitoring.window import assess_window, early_live_metric, window_policy_inputs
from mlops.registry.store import Registry

NO_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # `now` of a history without timestamps


@dataclass
class PolicyRun:
    """One policy's state while it is replayed."""

    spec: PolicySpec
    registry: Registry
    champion: str = ""
    drift_shares: list[float] = field(default_factory=list)  # the champion's windows so far
    performance: list[list[dict[str, Any]]] = field(default_factory=list)  # same windows, labelled
    last_retrain: dt.datetime | None = None  # event time of the last registration
    rows_since_training: int = 0  # batch rows since the last registration
    refused: int = 0  # challengers refused since the champion's promotion (the back-off)
    previous: str | None = None  # the champion before the last promotion (retrain outcomes)
    broken: set[int] = field(default_factory=set)  # batches that failed their data checks
    trained_on: dict[str, tuple[int, int]] = field(default_factory=dict)  # version -> rows
    compute_s: float = 0.0
    batches: list[dict[str, Any]] = field(default_factory=list)
    loaded: LoadedModel | None = None


def decide_triggered(
    run: PolicyRun,
    index: int,
    rows: pd.DataFrame,
    outputs: pd.DataFrame,
    performance: list[dict[str, Any]],
    entry: dict[str, Any],
    *,
    champion: LoadedModel,
    model_name: str,
    contract: Contract,
    rules: RetrainPolicy,
    now: dt.datetime | None,
) -> tuple[bool, str | None, str]:
    """Return (retrain?, reason, one sentence) for batch `index`, as monitor-model decides.

    Records the batch's drift share and performance in `run` (and the batch in `run.broken`
    when its data checks failed), and the figures behind the decision in `entry`. Without
    timestamps (`now` None) there is no cooldown.
    """
    request = [c for c in contract.request_names if c in rows.columns]
    served = profile_frame(pd.concat([rows[request], outputs], axis=1))  # as serving logs
    reference = profile_from_bytes(run.registry.read_reference_profile(model_name, run.champion))
    drift, constraints = assess_window(reference, served, contract)
    if not constraints.passed:  # kept out of the policy's later training windows
        run.broken.add(index)
    estimate = estimate_window(reference, served, champion.manifest, rules.metric)
    inputs = window_policy_inputs(
        now=now or NO_TIME,
        served=served,
        drift=drift,
        performance=performance,
        champion=run.champion,
        metric=rules.metric,
        previous_drift_shares=run.drift_shares,
        last_retrain=run.last_retrain if now is not None else None,
        new_rows=run.rows_since_training,
        constraints=constraints,
        estimate=estimate,
        refused_challengers=run.refused,
        live_baseline=early_live_metric(
            run.performance, run.champion, rules.metric, rules.min_labelled_rows
        ),
        manifest=champion.manifest,
    )
    decision = decide_retrain(inputs, rules)
    run.drift_shares.append(drift.share_drifted)
    run.performance.append(performance)
    entry |= {"drift_share": round(drift.share_drifted, 4),
              "constraints_passed": constraints.passed, "evidence": decision.evidence,
              "estimate": estimate.to_dict() if estimate else None}  # fmt: skip
    if decision.reason == "data-quality":
        entry["data_quality"] = list(inputs.failed_checks)
    return decision.retrain, decision.reason, decision.explanation
