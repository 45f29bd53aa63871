"""Replay a labelled history batch by batch, in event time, under several retraining policies.

For each batch, each policy's champion predicts the batch through serving's inference code (its
registered ONNX file); then the batch's labels count; then the policy decides (`triggered` with
monitor-model's code, `mlops.backtest.triggered`). A retrain trains on the rows seen so far (the
newest `train_window_rows`), registers a challenger in the policy's own registry and gates it
against the champion, as train-model does. No model ever predicts rows it was trained on or after.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.backtest.plan import Batch, Plan
from mlops.backtest.policies import PolicySpec
from mlops.backtest.results import policy_dict, report_metrics, summarize
from mlops.backtest.trainings import Training, TrainingCache
from mlops.backtest.triggered import PolicyRun, decide_triggered
from mlops.contract.spec import Contract
from mlops.inference.model import LoadedModel, load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.performance import performance_by_version
from mlops.monitoring.thresholds import RetrainPolicy
from mlops.registry.store import Registry
from mlops.release.candidate import register_candidate, register_challenger
from mlops.release.gate import GatePolicy
from mlops.release.gating import gate_challenger, promote_challenger
from mlops.release.lineage import rows_learned
from mlops.training.evaluate import (
    HIGHER_IS_BETTER,
    PRIMARY_METRIC,
    compute_metrics,
    metric_delta,
)

Progress = Callable[[str, int, int], None]


class BacktestError(RuntimeError):
    """A backtest that cannot start (e.g. the initial model cannot be trained)."""


@dataclass
class Backtest:
    """A replay of `frame` (labelled, ordered) cut by `plan`, for one contract and data URI."""

    frame: pd.DataFrame
    contract: Contract
    plan: Plan
    cache: TrainingCache
    work_dir: Path
    model_name: str = "backtest"
    train_window_rows: int | None = None
    gate: GatePolicy | None = None  # default: the task's GatePolicy defaults
    retrain: RetrainPolicy | None = None
    data_uri: str = ""
    prefer_gpu: bool = False

    def __post_init__(self) -> None:
        default: dict[str, Any] = {}  # every field has a default (mypy cannot see pydantic's)
        self._gate = (self.gate or GatePolicy(**default)).resolved(self.contract.task)
        self._rules: RetrainPolicy = self.retrain or RetrainPolicy(
            **default, metric=PRIMARY_METRIC[self.contract.task]
        )

    def run(self, policies: tuple[PolicySpec, ...], progress: Progress | None = None) -> dict:
        """Replay every policy; return the backtest.json document."""
        started = dt.datetime.now(dt.UTC)
        initial = self.initial()
        results = {spec.name: self.replay(spec, initial, progress) for spec in policies}
        return self.document(results, started)

    def initial(self) -> Training:
        """Train (or reuse) the first model, on the initial rows; every policy starts from it."""
        rows = self.frame.iloc[: self.plan.initial_rows].reset_index(drop=True)
        initial = self.cache.train(rows)  # all the initial rows: the window applies to retrains
        if not initial.ok:
            raise BacktestError(f"the initial model could not be trained: {initial.failure}")
        return initial

    def document(self, results: dict[str, Any], started: dt.datetime) -> dict[str, Any]:
        """Return the backtest.json document for the policies' results."""
        task, metric = self.contract.task, PRIMARY_METRIC[self.contract.task]
        return {
            "model": self.model_name,
            "contract": self.contract.name,
            "data_uri": self.data_uri,
            "task": task,
            "metric": metric,
            "higher_is_better": HIGHER_IS_BETTER[metric],
            "metrics": report_metrics(task),
            "initial": {
                "rows": self.plan.initial_rows,
                "start": self.plan.initial_start,
                "end": self.plan.initial_end,
            },
            "batch_spec": self.plan.batch_spec,
            "train_window_rows": self.train_window_rows,
            "gate": {
                "metric": self._gate.metric,
                "floor": self._gate.floor,
                "max_regression": self._gate.max_regression,
            },
            "retrain_policy": policy_dict(self._rules),
            "created_at": started.isoformat(timespec="seconds"),
            "trainings": {"computed": self.cache.computed, "reused": self.cache.reused},
            "policies": results,
        }

    def replay(
        self, spec: PolicySpec, initial: Training, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Replay one policy from the initial model in its own scratch registry."""
        folder = self.work_dir / "registries" / spec.name.replace(":", "-")
        shutil.rmtree(folder, ignore_errors=True)
        run = PolicyRun(spec, Registry(str(folder)))
        assert initial.candidate is not None
        first = register_candidate(
            run.registry, self.model_name, initial.candidate, actor=_actor(spec)
        )
        run.registry.promote(
            self.model_name, first.version, actor=_actor(spec), reason="initial model"
        )
        run.champion, run.compute_s = first.version, initial.seconds
        run.trained_on[first.version] = (0, self.plan.initial_rows)
        for batch in self.plan.batches:
            began = time.perf_counter()
            run.batches.append(self._batch(run, batch))
            run.compute_s += time.perf_counter() - began
            if progress is not None:
                progress(spec.name, batch.index + 1, len(self.plan.batches))
        return summarize(spec, run.batches, run.compute_s, report_metrics(self.contract.task))

    def _batch(self, run: PolicyRun, batch: Batch) -> dict[str, Any]:
        """Predict the batch with the champion, score it on its labels, let the policy decide."""
        rows = self.frame.iloc[batch.first : batch.stop].reset_index(drop=True)
        run.rows_since_training += batch.rows
        model = self._champion(run)
        raw = model.predict(rows)  # once per batch: the served outputs and the 0.5 baseline
        outputs = output_frame(raw, model.manifest)
        performance = _performance(model, rows, outputs, self.contract)
        live = performance[0] if performance else {}
        entry: dict[str, Any] = {
            "index": batch.index, "start": batch.start, "end": batch.end, "rows": batch.rows,
            "version": model.version, "trained_on": list(run.trained_on[model.version]),
            "metric": live.get("live"),
            **{m: live.get("live" if m == live.get("metric") else f"live_{m}")
               for m in report_metrics(self.contract.task)},
        }  # fmt: skip
        if self.contract.task == "binary" and live:
            entry["accuracy_at_0_5"] = _accuracy_at_half(rows, raw, model, self.contract)
        if run.previous is not None:  # the first batch after a promotion: was it worth it?
            entry["outcome"] = self._outcome(run, rows, live)
            run.previous = None
        retrain, trigger, sentence = self._decide(run, batch, rows, outputs, performance, entry)
        entry |= {"action": "retrain" if retrain else "keep", "trigger": trigger}
        entry |= {"retrained": False, "new_version": None, "promoted": False,
                  "refused": False, "failed": False, "cached": False}  # fmt: skip
        if retrain:
            sentence += "; " + self._retrain(run, batch, entry)
        entry["decision"] = sentence
        return entry

    def _decide(
        self,
        run: PolicyRun,
        batch: Batch,
        rows: pd.DataFrame,
        outputs: pd.DataFrame,
        performance: list[dict[str, Any]],
        entry: dict[str, Any],
    ) -> tuple[bool, str | None, str]:
        """Return (retrain?, trigger, one sentence) for the policy after this batch."""
        spec = run.spec
        if spec.kind == "static":
            return False, None, f"keep {run.champion}: the static policy never retrains"
        if spec.kind != "triggered":
            if spec.scheduled(batch.index):
                return True, "schedule", f"retrain: yes, the {spec.name} policy's schedule"
            return False, None, f"keep {run.champion}: not a scheduled batch of {spec.name}"
        return decide_triggered(
            run, batch.index, rows, outputs, performance, entry, champion=self._champion(run),
            model_name=self.model_name, contract=self.contract, rules=self._rules,
            now=self._event_time(batch),
        )  # fmt: skip

    def _retrain(self, run: PolicyRun, batch: Batch, entry: dict[str, Any]) -> str:
        """Train on the rows seen so far, register, gate and maybe promote; describe the outcome."""
        window, kept = self._window(batch.stop, run.broken)
        first, stop = self._window_bounds(batch.stop)
        learned_stop = run.trained_on[run.champion][1]  # the champion learned the rows before it
        learned = int(kept[: max(0, learned_stop - first)].sum())
        champion = self._champion(run)
        learned = rows_learned(champion.manifest, learned)
        training = self.cache.train(window, champion, learned=learned)
        entry |= {"retrained": True, "cached": training.reused}
        run.compute_s += training.seconds if training.reused else 0.0
        if not training.ok:
            entry["failed"] = True
            return f"training on rows {first}-{stop - 1} failed: {training.failure}"
        assert training.candidate is not None and training.holdout is not None
        actor = _actor(run.spec)
        version = register_challenger(
            run.registry, self.model_name, training.candidate, actor=actor
        )
        run.trained_on[version.version] = (first, stop)
        run.last_retrain, run.rows_since_training = self._event_time(batch), 0
        outcome = gate_challenger(
            run.registry, version, self.contract, training.holdout, self._gate
        )
        promoted = promote_challenger(run.registry, outcome, actor=actor)
        entry |= {"new_version": version.version, "promoted": promoted, "refused": not promoted}
        run.refused = 0 if promoted else run.refused + 1
        if promoted:
            run.previous = run.champion
            run.champion, run.drift_shares, run.loaded = version.version, [], None
            run.performance = []
        return f"{version.version} trained on rows {first}-{stop - 1}: {outcome.decision.verdict}"

    def _champion(self, run: PolicyRun) -> LoadedModel:
        if run.loaded is None or run.loaded.version != run.champion:
            run.loaded = load_from_registry(
                run.registry, self.model_name, run.champion, prefer_gpu=self.prefer_gpu
            )
        return run.loaded

    def _window(self, stop: int, broken: set[int]) -> tuple[pd.DataFrame, np.ndarray]:
        """The newest rows before `stop`, without the `broken` batches (failed data checks).

        Also which rows of the full window were kept.
        """
        first, stop = self._window_bounds(stop)
        keep = np.ones(stop - first, dtype=bool)
        for batch in self.plan.batches:
            if batch.index in broken:
                keep[max(batch.first, first) - first : max(min(batch.stop, stop) - first, 0)] = (
                    False
                )
        return self.frame.iloc[first:stop][keep].reset_index(drop=True), keep

    def _outcome(self, run: PolicyRun, rows: pd.DataFrame, live: dict[str, Any]) -> dict:
        """Score the replaced champion on the same batch as the new one: did the retrain pay?"""
        assert run.previous is not None
        old = load_from_registry(
            run.registry, self.model_name, run.previous, prefer_gpu=self.prefer_gpu
        )
        outputs = output_frame(old.predict(rows), old.manifest)
        found = _performance(old, rows, outputs, self.contract)
        before, after = (found[0].get("live") if found else None), live.get("live")
        delta = None
        if before is not None and after is not None:
            delta = metric_delta(self._rules.metric, after, before)
        return {"previous": old.version, "previous_metric": before, "metric": after,
                "gain": delta}  # fmt: skip

    def _window_bounds(self, stop: int) -> tuple[int, int]:
        size = self.train_window_rows
        return (0 if size is None else max(0, stop - size)), stop

    def _event_time(self, batch: Batch) -> dt.datetime | None:
        """When the batch's window ends in event time (its last row), or None without timestamps."""
        if isinstance(batch.end, int):
            return None
        moment = dt.datetime.fromisoformat(batch.end)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _performance(
    model: LoadedModel, rows: pd.DataFrame, outputs: pd.DataFrame, contract: Contract
) -> list[dict[str, Any]]:
    """Live performance of `model`'s `outputs` on the labelled `rows`, as monitoring joins it."""
    joined = pd.concat([rows[[contract.target.name]], outputs], axis=1)
    joined["model_version"] = model.version
    return performance_by_version(joined, contract, {model.version: model.manifest})


def _accuracy_at_half(
    rows: pd.DataFrame, raw: np.ndarray, model: LoadedModel, contract: Contract
) -> float:
    """The accuracy the served probabilities would have had with a 0.5 cut (the baseline)."""
    classes = list(model.manifest.get("classes") or [0, 1])
    found = compute_metrics("binary", rows[contract.target.name], raw, classes)
    return found["accuracy"]


def _actor(spec: PolicySpec) -> str:
    return f"backtest/{spec.name}"
