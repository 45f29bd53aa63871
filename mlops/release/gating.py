"""Gate a registered challenger against the champion, and promote it when it passes.

Both are scored on the same holdout through ONNX, as serving scores them; a refitted challenger,
which learned that holdout, by the outputs of its model from before the refit (carried on the
holdout's rows, `attach_first_outputs`) or else its manifest's figures. Promotion happens only if
the gate passed and the aliases have not moved since the gate read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.inference.scoring import IncompatibleModelError, score_onnx
from mlops.monitoring.prediction_store import as_utc
from mlops.registry.store import ModelVersion, Registry
from mlops.release.gate import GateDecision, GatePolicy, decide, thresholded_scores
from mlops.release.lineage import end_of_data
from mlops.training.evaluate import compute_metrics
from mlops.training.window import MIN_UNSEEN_SHARE


@dataclass(frozen=True)
class GateOutcome:
    """The gate's decision on a challenger, and the alias revision it was taken at."""

    challenger: ModelVersion
    decision: GateDecision
    revision: int  # promotion succeeds only while the aliases are still at this revision
    note: str = ""  # markdown for the report: why the champion could not be compared


FIRST_OUTPUT = "__first_model_output_"  # holdout columns: the pre-refit model's outputs


def attach_first_outputs(holdout: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
    """Return the holdout with the pre-refit model's outputs on it, for the gate to slice.

    A refit challenger learned the holdout, so the gate judges it by the model before the refit;
    carried with the rows, those outputs can be scored on any subset of them.
    """
    values = np.asarray(outputs, dtype=np.float64)
    values = values.reshape(len(holdout), -1)
    extra = pd.DataFrame(
        values, columns=[f"{FIRST_OUTPUT}{j}" for j in range(values.shape[1])], index=holdout.index
    )
    return pd.concat([holdout, extra], axis=1)


def _first_outputs(holdout: pd.DataFrame, task: str) -> np.ndarray | None:
    columns = [c for c in holdout.columns if str(c).startswith(FIRST_OUTPUT)]
    if not columns:
        return None
    values = holdout[columns].to_numpy(dtype=np.float64)
    return values[:, 0] if task == "regression" else values


def unseen_rows(
    champion: dict[str, Any], holdout: pd.DataFrame, contract: Contract
) -> pd.Series | None:
    """Mark the holdout rows a refit champion did not learn (newer than its data window).

    None when it learned none of them, or when that cannot be told (no timestamp column).
    """
    if not champion.get("refit"):
        return None
    mask = newer_than_data(champion, holdout, contract)
    return None if mask is None or bool(mask.all()) else mask


def newer_than_data(
    manifest: dict[str, Any], rows: pd.DataFrame, contract: Contract
) -> pd.Series | None:
    """Mark the rows newer than a model's data window (`data.window_to` of its manifest).

    Without a timestamp column, rows in source order: those after where the last rows of the
    model's data reappear (`data.tail`). None when that cannot be told: no readable end of
    window, or a tail that is not among `rows`.
    """
    column, end = contract.timestamp_column, manifest.get("data", {}).get("window_to")
    if column is None or column not in rows:
        last = end_of_data(manifest.get("data", {}).get("tail"), rows, contract)
        if last is None:
            return None
        return pd.Series(np.arange(len(rows)) > last, index=rows.index)
    if not end:
        return None
    try:
        return pd.to_datetime(rows[column], utc=True) > as_utc(pd.Timestamp(end))
    except (ValueError, TypeError):
        return None


def gate_challenger(
    registry: Registry,
    challenger: ModelVersion,
    contract: Contract,
    holdout: pd.DataFrame,
    policy: GatePolicy,
) -> GateOutcome:
    """Score challenger and champion through ONNX on the same holdout and decide by `policy`.

    A champion whose inputs the contract's rows cannot feed is left out: the challenger is then
    judged on the floor only, and the outcome's note says so. Binary models are also compared on
    the thresholded metric of the challenger's objective, each at its own decision threshold.
    A refit champion may have learned the oldest holdout rows (its window overlapped this one):
    both are then compared on the rows newer than its data, when they are at least a quarter of
    the holdout, else on all of them with a note that this favours the champion.
    """
    if policy.metric is None:
        raise ValueError("the gate policy has no metric: resolve it for the task first")
    model = challenger.model
    state = registry.aliases(model)
    champion_name = state.aliases.get("champion")
    champion = registry.get(model, champion_name) if champion_name else None
    rows, note = holdout, ""
    mask = None if champion is None else unseen_rows(champion.manifest, holdout, contract)
    if mask is not None and champion is not None:
        unseen, learned = int(mask.sum()), int((~mask).sum())
        comparable = not challenger.manifest.get("refit") or (
            _first_outputs(holdout, contract.task) is not None
        )
        if comparable and unseen >= MIN_UNSEEN_SHARE * len(holdout) and unseen > 0:
            rows = holdout[mask]
            note = (
                f"\n\nCompared on the {unseen} holdout rows newer than champion "
                f"{champion_name}'s data: it learned the other {learned} in its refit.\n"
            )
        else:
            note = (
                f"\n\nChampion {champion_name} learned {learned} of the {len(holdout)} holdout "
                "rows in its refit; compared on all of them, which favours the champion.\n"
            )
    scored = challenger_scores(registry, challenger, contract, rows)
    champion_score = None
    found: dict[str, float] | None = None
    if champion is not None:
        try:
            found = score_onnx(
                registry.read_onnx(model, champion.version), champion.manifest, rows, contract
            )
            champion_score = found[policy.metric]
        except IncompatibleModelError as exc:
            note = f"\n\nChampion {champion_name} cannot score these rows ({exc}); floor only.\n"
            champion_name = None
    decision = decide(
        scored[policy.metric],
        champion_score,
        policy,
        challenger_version=challenger.version,
        champion_version=champion_name,
        thresholded=thresholded_scores(
            challenger.manifest, scored, found, rows=len(rows),
            positives=_positives(rows, contract, challenger.manifest),
        ),
    )  # fmt: skip
    return GateOutcome(challenger, decision, state.revision, note)


def _positives(holdout: pd.DataFrame, contract: Contract, manifest: dict[str, Any]) -> int:
    """Count the holdout's positive rows (binary models; 0 otherwise)."""
    classes = manifest.get("classes") or []
    if manifest.get("task") != "binary" or len(classes) != 2:
        return 0
    labels = holdout[contract.target.name].astype(str)
    return int((labels == str(classes[1])).sum())


def challenger_scores(
    registry: Registry, challenger: ModelVersion, contract: Contract, holdout: pd.DataFrame
) -> dict[str, float]:
    """Return the challenger's holdout metrics, as the gate compares them.

    A refitted challenger learned the holdout, so scoring its ONNX there would flatter it. It is
    judged by the model before the refit instead: from that model's outputs carried on the rows
    (`attach_first_outputs`), or else from the manifest's metrics, which that model scored on the
    same whole holdout with PyTorch (the export's parity check ties PyTorch to ONNX). Any other
    challenger is scored through its ONNX.
    """
    manifest = challenger.manifest
    if manifest.get("refit"):
        first = _first_outputs(holdout, manifest["task"])
        if first is None:
            return dict(manifest["metrics"])
        return compute_metrics(
            manifest["task"], holdout[contract.target.name], first,
            manifest.get("classes") or None, float(manifest.get("decision_threshold", 0.5)),
        )  # fmt: skip
    onnx = registry.read_onnx(challenger.model, challenger.version)
    return score_onnx(onnx, manifest, holdout, contract)


def promote_challenger(registry: Registry, outcome: GateOutcome, *, actor: str) -> bool:
    """Make the challenger champion if it passed the gate; return whether it was promoted.

    Raises ConcurrentUpdateError, promoting nothing, when the aliases moved after the gate read
    them: the decision may no longer hold.
    """
    if not outcome.decision.promote:
        return False
    registry.promote(
        outcome.challenger.model,
        outcome.challenger.version,
        expected_revision=outcome.revision,
        actor=actor,
        reason=outcome.decision.verdict,
    )
    return True
