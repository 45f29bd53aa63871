"""Train a candidate on a window of the history through train-model's release path, at most once.

validate -> split -> train -> evaluate -> export -> verify, as train-model does; registration and
the gate happen per policy, in the policy's own registry. A training is identified by what decides
its result: the rows of the window (their content hash), the contract, the training parameters and
the validation threshold. Training is seeded and deterministic, so the same key means the same
model: it is computed once, kept in a content-addressed folder, and reused by every policy (and by
later backtests with other thresholds) that asks for the same window.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.contract.spec import Contract
from mlops.data.validate import ContractViolation, ValidationResult, validate_frame
from mlops.inference.model import LoadedModel
from mlops.release.build import build_candidate
from mlops.release.candidate import Candidate
from mlops.release.verify import ExportVerificationError, VerificationReport
from mlops.training.change import Change, change_in
from mlops.training.train import TrainParams, params_dict
from mlops.training.window import learned_that_matters


@dataclass(frozen=True)
class Training:
    """A candidate trained on one window (or why none could be), and whether it was reused."""

    key: str
    rows: int
    candidate: Candidate | None
    holdout: pd.DataFrame | None
    failure: str | None
    seconds: float  # what computing it took, when it was computed
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.candidate is not None


class TrainingCache:
    """Trainings by key: in memory for this run, in `root` across runs."""

    def __init__(
        self,
        root: str | Path,
        contract: Contract,
        params: TrainParams,
        *,
        data_uri: str,
        max_failing_share: float = 0.05,
        prefer_gpu: bool = True,
    ) -> None:
        self.root = Path(root)
        self.contract, self.params = contract, params
        self.data_uri = data_uri
        self.max_failing_share = max_failing_share
        self.prefer_gpu = prefer_gpu
        self._memory: dict[str, Training] = {}
        self.computed = 0
        self.reused = 0

    def key(self, window: pd.DataFrame, change: Change | None = None, learned: int = 0) -> str:
        """Return the training's identity: window content, contract, parameters, threshold.

        And where the champion's loss stepped up in it, when it did, and how many of its rows
        the champion learned: they decide which rows are learned and held out (`fit_window`).
        """
        rows = pd.util.hash_pandas_object(window, index=False).to_numpy().tobytes()
        described = {
            "rows": hashlib.sha256(rows).hexdigest(),
            "columns": [str(c) for c in window.columns],
            "contract": self.contract.fingerprint,
            "threshold_objective": self.contract.target.threshold_objective,  # not fingerprinted
            "params": params_dict(self.params),
            "max_failing_share": self.max_failing_share,
            "change": None if change is None else change.index,
            "learned": learned,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]

    def train(
        self, window: pd.DataFrame, champion: LoadedModel | None = None, *, learned: int = 0
    ) -> Training:
        """Return the training on `window`: reused when identical work was done before.

        The `champion`'s loss on the window's valid rows after the first `learned` (those it
        trained on) tells whether the concept changed in the window.
        """
        result = validate_frame(window, self.contract)
        valid_learned = (  # the champion's rows among the valid ones, about
            round(learned * result.n_valid / max(result.n_input, 1)) if champion else 0
        )
        change = self._change(result, champion, valid_learned)
        valid_learned = learned_that_matters(
            result.n_valid, valid_learned, change if self.params.adapt_window else None,
            val_fraction=self.params.val_fraction, holdout_fraction=self.params.holdout_fraction,
        )  # fmt: skip
        key = self.key(window, change, valid_learned)
        found = self._memory.get(key) or self._load(key, len(window))
        if found is not None:
            self.reused += 1
            found = Training(
                key, found.rows, found.candidate, found.holdout, found.failure, found.seconds, True
            )
            self._memory[key] = found
            return found
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self._ensure_root()))
        try:
            failure = self._compute(result, change, valid_learned, staging)
            (staging / "training.json").write_text(
                json.dumps({"rows": len(window), "failure": failure,
                            "seconds": time.perf_counter() - started})
            )  # fmt: skip
            _publish(staging, self.root / key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.computed += 1
        training = self._load(key, len(window))
        assert training is not None
        self._memory[key] = training
        return training

    def _change(
        self, result: ValidationResult, champion: LoadedModel | None, learned: int
    ) -> Change | None:
        if champion is None or not self.params.adapt_window or result.n_valid == 0:
            return None
        try:
            outputs = champion.predict(result.valid)
        except (KeyError, ValueError):  # a champion from before a change of contract
            return None
        return change_in(result.valid, self.contract, outputs, champion.manifest, learned=learned)

    def _compute(
        self, result: ValidationResult, change: Change | None, learned: int, folder: Path
    ) -> str | None:
        """Run the release path up to a verified candidate in `folder`; return why it failed."""
        try:
            result.check_threshold(self.max_failing_share)
            candidate, _, splits = build_candidate(
                self.contract, result.valid, self.params, workdir=folder,
                reason="backtest retrain", data_uri=self.data_uri, prefer_gpu=self.prefer_gpu,
                change=change, learned=learned,
            )  # fmt: skip
        except (ContractViolation, ExportVerificationError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        (folder / "manifest.json").write_text(json.dumps(candidate.manifest, default=str))
        (folder / "reference.bin").write_bytes(candidate.reference)
        (folder / "verification.json").write_text(json.dumps(candidate.verification.to_dict()))
        splits.holdout.to_parquet(folder / "holdout.parquet", index=False)
        return None

    def _load(self, key: str, rows: int) -> Training | None:
        folder = self.root / key
        if not (folder / "training.json").exists():
            return None
        meta = json.loads((folder / "training.json").read_text())
        if meta["failure"]:
            return Training(key, rows, None, None, meta["failure"], meta["seconds"])
        verification: dict[str, Any] = json.loads((folder / "verification.json").read_text())
        verification["providers"] = tuple(verification["providers"])
        candidate = Candidate(
            folder / "model.onnx",
            json.loads((folder / "manifest.json").read_text()),
            (folder / "reference.bin").read_bytes(),
            VerificationReport(**verification),
        )
        holdout = pd.read_parquet(folder / "holdout.parquet")
        return Training(key, rows, candidate, holdout, None, meta["seconds"])

    def _ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root


def _publish(staging: Path, final: Path) -> None:
    """Move a finished training into place; a concurrent identical one may have won the race."""
    try:
        os.rename(staging, final)
    except OSError:
        if not (final / "training.json").exists():
            raise
