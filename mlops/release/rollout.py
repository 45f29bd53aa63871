"""Try a challenger on live traffic before it takes over: shadow and canary rollouts.

A rollout is one record beside the aliases (``Registry.start_rollout``):

- **shadow**: serving answers from the champion only and scores the same records with the
  challenger off the response path; both versions' predictions go to the prediction log. The
  challenger wins when its loss on the same labelled records is lower by `margin` (relative) and
  by `z` standard errors of the paired differences; it loses when even the top of that interval
  falls short of the margin.
- **canary**: a `share` of the records is answered by the challenger, chosen by a hash of the
  record's id (one id always gets the same model). It is rolled back when it fails more often
  than `max_error_rate` (records routed to it but answered by the champion because it raised),
  when it answers slower than the champion in the same window (`canary_latency`), or when its
  loss on its labelled records is worse than the champion's on theirs, in the same window, by
  `breach_z` standard errors; with enough labelled records and no breach its share widens along
  `CANARY_STEPS`, and after the last step it is promoted.

Promoting wants strong evidence (a changed model answers everyone), rolling back wants little
(a false rollback costs a delay, a missed one costs users): hence `z` 3 and `breach_z` 2. The
decisions are re-taken on every monitoring run over all rows since the rollout started (or since
the canary's last step), so they are sequential looks; 3 standard errors keeps the chance that
an equal shadow wins by noise under about 1% over dozens of looks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlops.registry.rollouts import CANARY_STEPS, STRATEGIES, Rollout, canary_mask, route_share
from mlops.registry.store import ConcurrentUpdateError, Registry
from mlops.release.canary_latency import LatencyBudget, canary_latency
from mlops.release.gating import GateOutcome
from mlops.training.change import paired_z, row_losses

__all__ = [
    "CANARY_STEPS",
    "STRATEGIES",
    "LatencyBudget",
    "Rollout",
    "Verdict",
    "canary_mask",
    "judge_canary",
    "judge_shadow",
    "put_on_trial",
    "route_share",
]

SHADOW_Z = 3.0
BREACH_Z = 2.0
MIN_LABELLED_ROWS = 200
MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Verdict:
    """What the evidence says about a rollout, with every number behind it."""

    strategy: str
    version: str
    action: str  # wait | won | retire | widen | promote | rollback
    reason: str
    labelled_rows: int = 0  # shadow: paired rows; canary: the canary's labelled rows
    champion_rows: int = 0  # canary: the champion's labelled rows in the same window
    champion_loss: float | None = None
    challenger_loss: float | None = None
    z: float | None = None  # challenger better than champion, in standard errors
    routed_rows: int = 0  # canary: served rows whose id routes to it
    fallback_rows: int = 0  # canary: of those, answered by the champion (the canary raised)
    share: float = 0.0
    next_share: float | None = None
    latency_p95_ms: float | None = None  # canary: its answers' 95th percentile, this window
    champion_latency_p95_ms: float | None = None  # canary: the champion's, same window

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _losses(rows: pd.DataFrame, target: str, manifest: dict[str, Any]) -> np.ndarray:
    from mlops.monitoring.performance import outputs_from_log

    return row_losses(
        manifest["task"], rows[target], outputs_from_log(rows, manifest), manifest.get("classes")
    )


def judge_shadow(
    joined: pd.DataFrame,
    rollout: Rollout,
    champion: str,
    manifests: dict[str, dict[str, Any]],
    *,
    id_column: str,
    target: str,
    margin: float = 0.0,
    min_rows: int = MIN_LABELLED_ROWS,
    z: float = SHADOW_Z,
) -> Verdict:
    """Compare champion and shadow on the same labelled records (paired by id).

    `joined`: served rows with their label (`performance.join_labels`), both versions' rows.
    """
    verdict = Verdict("shadow", rollout.version, "wait", "")
    mine = joined[joined["model_version"] == rollout.version]
    theirs = joined[joined["model_version"] == champion]
    pairs = _last_per_id(theirs, id_column).merge(
        _last_per_id(mine, id_column), on="_key", suffixes=("", "_shadow")
    )
    n = len(pairs)
    if n < min_rows:
        reason = f"{n} labelled rows scored by both, fewer than {min_rows}"
        return replace(verdict, labelled_rows=n, reason=reason)
    shadow_rows = pairs[[c for c in pairs.columns if c.endswith("_shadow")]]
    shadow_rows = shadow_rows.rename(columns=lambda c: c[: -len("_shadow")])
    shadow_rows[target] = pairs[target].to_numpy()
    loss_c = _losses(pairs, target, manifests[champion])
    loss_s = _losses(shadow_rows, target, manifests[rollout.version])
    # Against the margin: the shadow must beat (1 - margin) x the champion's loss
    d = loss_c * (1.0 - margin) - loss_s
    score = paired_z(loss_c * (1.0 - margin), loss_s)
    upper = float(d.mean()) + z * float(d.std(ddof=1)) / np.sqrt(n)
    verdict = replace(verdict, labelled_rows=n, champion_loss=float(loss_c.mean()),
                      challenger_loss=float(loss_s.mean()), z=float(score))  # fmt: skip
    bar = f"{margin:.0%} below the champion's" if margin else "below the champion's"
    text = f"loss {loss_s.mean():.4f} vs {champion}'s {loss_c.mean():.4f} on {n} rows"
    if score >= z:
        reason = f"{text}: {bar} by {score:.1f} standard errors (at least {z:g} needed)"
        return replace(verdict, action="won", reason=reason)
    if upper < 0:
        reason = f"{text}: cannot reach {bar} (even {z:g} standard errors of luck leave it short)"
        return replace(verdict, action="retire", reason=reason)
    return replace(verdict, reason=f"{text}: {score:.1f} standard errors, not yet clear")


def _last_per_id(rows: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """Keep each id's last row, keyed by the id as text (`_key`)."""
    keyed = rows.assign(_key=rows[id_column].astype(str))
    return keyed.drop_duplicates("_key", keep="last")


def judge_canary(
    served: pd.DataFrame,
    labelled: pd.DataFrame,
    rollout: Rollout,
    champion: str,
    manifests: dict[str, dict[str, Any]],
    *,
    id_column: str | None,
    target: str,
    max_error_rate: float = MAX_ERROR_RATE,
    min_rows: int = MIN_LABELLED_ROWS,
    breach_z: float = BREACH_Z,
    latency: LatencyBudget | None = None,
) -> Verdict:
    """Judge a canary on the rows served since its last step (`served`) and those labelled.

    Records whose id routes to the canary but were logged with the champion's version were
    answered by the champion because the canary raised: they are its errors. Its answers'
    times are held to the champion's in the same window by `latency` (default: `LatencyBudget()`).
    """
    routed = fallback = 0
    if id_column is not None and len(served):
        routes = canary_mask(served[id_column].astype(str), rollout.share)
        routed = int(routes.sum())
        fallback = int((routes & (served["model_version"] == champion).to_numpy()).sum())
    verdict = Verdict("canary", rollout.version, "wait", "", routed_rows=routed,
                      fallback_rows=fallback, share=rollout.share,
                      next_share=rollout.next_share())  # fmt: skip
    rate = fallback / routed if routed else 0.0
    if routed and rate > max_error_rate and fallback >= 3:
        reason = (f"it failed {fallback} of the {routed} records routed to it ({rate:.1%}, more "
                  f"than {max_error_rate:.1%}); the champion answered them")  # fmt: skip
        return replace(verdict, action="rollback", reason=reason)
    speed = canary_latency(served, rollout.version, champion, latency or LatencyBudget())
    verdict = replace(verdict, latency_p95_ms=speed.canary_p95_ms,
                      champion_latency_p95_ms=speed.champion_p95_ms)  # fmt: skip
    if speed.breach:
        return replace(verdict, action="rollback", reason=speed.text)
    mine = labelled[labelled["model_version"] == rollout.version]
    theirs = labelled[labelled["model_version"] == champion]
    n, m = len(mine), len(theirs)
    verdict = replace(verdict, labelled_rows=n, champion_rows=m)
    if n < min_rows or m < min_rows:
        reason = (f"{n} labelled rows answered by {rollout.version} and {m} by {champion}; "
                  f"{min_rows} of each are needed")  # fmt: skip
        return replace(verdict, reason=reason)
    loss_k = _losses(mine, target, manifests[rollout.version])
    loss_c = _losses(theirs, target, manifests[champion])
    se = float(np.sqrt(loss_k.var(ddof=1) / n + loss_c.var(ddof=1) / m))
    score = _ratio(float(loss_c.mean() - loss_k.mean()), se)  # > 0: the canary is better
    verdict = replace(verdict, z=score, champion_loss=float(loss_c.mean()),
                      challenger_loss=float(loss_k.mean()))  # fmt: skip
    text = (f"loss {loss_k.mean():.4f} on its {n} labelled rows vs {champion}'s "
            f"{loss_c.mean():.4f} on {m}")  # fmt: skip
    if score <= -breach_z:
        reason = f"{text}: worse by {-score:.1f} standard errors ({breach_z:g} is a breach)"
        return replace(verdict, action="rollback", reason=reason)
    step = rollout.next_share()
    then = "promote it" if step is None else f"widen it to {step:.0%}"
    reason = (f"{text} ({score:+.1f} standard errors), {fallback} errors in {routed} routed "
              f"records, {speed.text}: healthy at {rollout.share:.0%}, {then}")  # fmt: skip
    return replace(verdict, action="promote" if step is None else "widen", reason=reason)


def _ratio(diff: float, se: float) -> float:
    """Return diff in standard errors; with no spread at all, only a real difference counts."""
    if se > 1e-12:
        return diff / se
    return 0.0 if abs(diff) < 1e-9 else float(np.sign(diff) * np.inf)


def put_on_trial(
    registry: Registry, outcome: GateOutcome, strategy: str, *, share: float, actor: str
) -> Rollout | None:
    """Put a challenger that passed the gate on trial beside the champion, instead of promoting.

    A trial already running is superseded (ended as `superseded`): the newer challenger learned
    newer rows. Raises ConcurrentUpdateError, changing nothing, when the aliases moved after the
    gate read them. None when the gate refused the challenger.
    """
    if not outcome.decision.promote:
        return None
    model, version = outcome.challenger.model, outcome.challenger.version
    revision = outcome.revision
    current = registry.aliases(model)
    if current.revision != revision:
        raise ConcurrentUpdateError(
            f"aliases of {model!r} moved since the gate read them (revision {revision}, now "
            f"{current.revision}); {version} is not put on trial"
        )
    if current.rollout is not None:
        ended = registry.end_rollout(model, "superseded", expected_revision=revision, actor=actor,
                                     reason=f"superseded by {version}")  # fmt: skip
        revision = ended.revision
    reason = outcome.decision.verdict
    share = share if strategy == "canary" else 0.0  # a shadow answers nothing
    state = registry.start_rollout(model, version, strategy, share=share, actor=actor,
                                   expected_revision=revision, reason=reason)  # fmt: skip
    return Rollout.from_dict(state.rollout)
