"""Build a registered version from labelled rows through the same steps as the train-model flow.

Tests and benchmarks use this instead of assembling versions by hand, so their versions hold what
production's hold: the data lineage, holdout metrics, the refit on every row, verification, model
card and a reference profile of features, target and outputs.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops.contract.spec import Contract
from mlops.inference.scoring import IncompatibleModelError, predict_onnx
from mlops.registry.store import ModelVersion, Registry
from mlops.release.candidate import Candidate, prepare_candidate, register_candidate
from mlops.release.gating import attach_first_outputs, newer_than_data
from mlops.release.lineage import data_lineage, rows_learned
from mlops.release.verify import VerificationReport
from mlops.training.change import Change, change_in
from mlops.training.train import (
    Splits,
    TrainedModel,
    TrainParams,
    evaluate_model,
    predict_torch,
    refit_model,
)
from mlops.training.window import WindowFit, fit_window


@dataclass(frozen=True)
class BuiltVersion:
    """The registered version, the model it was exported from, and the export's checks."""

    version: ModelVersion
    model: TrainedModel
    verification: VerificationReport


def train_and_register(
    registry: Registry,
    model_name: str,
    contract: Contract,
    rows: pd.DataFrame,
    params: TrainParams,
    *,
    actor: str,
    reason: str,
    data_uri: str = "(rows in memory)",
    promote: bool = False,
    prefer_gpu: bool = True,
    workdir: str | Path | None = None,
) -> BuiltVersion:
    """Split time-ordered labelled rows, train, evaluate, prepare and register a version.

    The version gets no alias; with `promote` it becomes champion directly (no gate). The ONNX
    export is written to `workdir`, or to a temporary folder removed afterwards.
    """
    with _folder(workdir) as folder:
        candidate, model, _ = build_candidate(
            contract, rows, params, workdir=folder, reason=reason, data_uri=data_uri,
            prefer_gpu=prefer_gpu,
        )  # fmt: skip
        version = register_candidate(registry, model_name, candidate, actor=actor)
    if promote:
        registry.promote(model_name, version.version, actor=actor, reason=reason)
    return BuiltVersion(version, model, candidate.verification)


def build_candidate(
    contract: Contract,
    rows: pd.DataFrame,
    params: TrainParams,
    *,
    workdir: Path,
    reason: str,
    data_uri: str = "(rows in memory)",
    prefer_gpu: bool = True,
    change: Change | None = None,
    learned: int = 0,
) -> tuple[Candidate, TrainedModel, Splits]:
    """Split time-ordered labelled rows, train, evaluate, refit, export and verify into `workdir`.

    With `params.refit` the returned model is the refit on every row, the holdout metrics are
    those of the model before it, and the returned holdout carries that model's outputs for the
    gate (`attach_first_outputs`). With a `change` of concept found in `rows` (`champion_change`)
    the rows learned are chosen by `fit_window`; the champion learned the first `learned` rows
    (`champion_learned`), which the holdout then avoids. Raises ValueError when the rows are too
    few to split, ExportVerificationError when the export fails a check.
    """
    fitted = fit_window(
        rows, contract, params, change if params.adapt_window else None, learned=learned
    )
    splits = fitted.splits
    model, gated, gate_rows = refit_for_release(fitted, contract, params, refit_model)
    metrics, slices = evaluate_model(gated, contract, splits.holdout)
    lineage = data_lineage(data_uri, None, splits, contract, fitted.rows)
    candidate = prepare_candidate(
        model, contract, splits, workdir=workdir, data=lineage, metrics=metrics,
        slice_metrics=slices, flow_run_id=None, reason=reason, prefer_gpu=prefer_gpu,
    )  # fmt: skip
    return candidate, model, dataclasses.replace(splits, holdout=gate_rows)


def refit_for_release(
    fitted: WindowFit,
    contract: Contract,
    params: TrainParams,
    refit: Callable[[TrainedModel, pd.DataFrame, Contract], TrainedModel],
) -> tuple[TrainedModel, TrainedModel, pd.DataFrame]:
    """Return the model to serve, the model that scores the holdout, and the rows to gate on.

    Without `params.refit`: the window's model, itself, and the holdout. With it: the window's
    model refitted on every row it chose; scored instead by a model that has not seen the
    holdout (refitted on the rows before it when the champion learned past the train split, so
    that it saw what the champion saw), at the cut the served refit uses; and the holdout with
    that model's outputs on it (`attach_first_outputs`). `refit` is `refit_model`, or a flow's
    task around it.
    """
    model, holdout = fitted.model, fitted.splits.holdout
    if not params.refit:
        return model, model, holdout
    gated = model
    if fitted.before_holdout is not None:
        gated = refit(model, fitted.before_holdout, contract)
    gate_rows = attach_first_outputs(holdout, predict_torch(gated, holdout))
    served = refit(model, fitted.rows, contract)
    return (
        served,
        dataclasses.replace(gated, decision_threshold=served.decision_threshold),
        gate_rows,
    )


def champion_change(
    registry: Registry, model_name: str, rows: pd.DataFrame, contract: Contract
) -> Change | None:
    """Where the champion's loss stepped up in labelled, time-ordered `rows`; None if nowhere.

    Searched only in the rows newer than the champion's data (which it may have learned): by
    the contract's timestamp column, or in row order after the last rows of its data. None when
    neither locates its data in `rows`, without a champion, or when it cannot feed these rows.
    """
    name = registry.aliases(model_name).aliases.get("champion")
    if name is None or rows.empty:
        return None
    champion = registry.get(model_name, name)
    newer = newer_than_data(champion.manifest, rows, contract)
    if newer is None:
        return None
    try:
        outputs = predict_onnx(registry.read_onnx(model_name, name), rows, contract)
    except IncompatibleModelError:
        return None
    learned = int((~newer).sum())
    return change_in(rows, contract, outputs, champion.manifest, learned=learned)


def champion_learned(
    registry: Registry, model_name: str, rows: pd.DataFrame, contract: Contract
) -> int:
    """How many of the first time-ordered `rows` the champion learned (0 if unknown)."""
    name = registry.aliases(model_name).aliases.get("champion")
    if name is None or rows.empty:
        return 0
    manifest = registry.get(model_name, name).manifest
    newer = newer_than_data(manifest, rows, contract)
    if newer is None or bool(newer.all()):
        return 0
    return rows_learned(manifest, int((~newer).sum()))


@contextmanager
def _folder(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-export-") as folder:
        yield Path(folder)
