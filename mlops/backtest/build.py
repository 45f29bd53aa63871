"""Assemble a backtest from user-facing options, and publish its report (CLI and flow share it)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import fsspec
import pandas as pd

from mlops.backtest.plan import Span, plan_batches
from mlops.backtest.policies import PolicySpec, parse_policies
from mlops.backtest.replay import Backtest
from mlops.backtest.report import write_report
from mlops.backtest.trainings import TrainingCache
from mlops.contract.spec import Contract
from mlops.monitoring.thresholds import RetrainPolicy
from mlops.release.gate import GatePolicy
from mlops.settings import Settings
from mlops.training.train import TrainParams


def build_backtest(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    initial: str | int,
    batch: str | int,
    policies: str | list[str] | tuple[str, ...],
    params: TrainParams,
    work_dir: str | Path,
    cache_dir: str | Path,
    model_name: str = "backtest",
    data_uri: str = "",
    train_window_rows: int | None = None,
    max_batches: int | None = None,
    gate: GatePolicy | None = None,
    retrain: RetrainPolicy | None = None,
    max_failing_share: float = 0.05,
    prefer_gpu: bool = False,
) -> tuple[Backtest, tuple[PolicySpec, ...]]:
    """Check the options and return the backtest with the policies to replay.

    Raises ValueError with the reason when a size, a policy or the train window is invalid.
    """
    specs = parse_policies(policies)
    if train_window_rows is not None and train_window_rows < 1:
        raise ValueError(f"train_window_rows must be >= 1, got {train_window_rows}")
    plan = plan_batches(
        frame,
        contract.timestamp_column,
        Span.parse(initial),
        Span.parse(batch),
        max_batches=max_batches,
    )
    cache = TrainingCache(
        cache_dir,
        contract,
        params,
        data_uri=data_uri,
        max_failing_share=max_failing_share,
        prefer_gpu=prefer_gpu,
    )
    backtest = Backtest(
        frame.reset_index(drop=True), contract, plan, cache, Path(work_dir),
        model_name=model_name, train_window_rows=train_window_rows, gate=gate, retrain=retrain,
        data_uri=data_uri, prefer_gpu=prefer_gpu,
    )  # fmt: skip
    return backtest, specs


def local_dir(settings: Settings, name: str) -> Path:
    """A local working folder under MLOPS_HOME (or the user's cache when the home is remote)."""
    if "://" in settings.home:
        return Path.home() / ".cache" / "mlops" / name
    return Path(settings.home) / name


def default_out(settings: Settings, model_name: str) -> str:
    """`<reports store>/backtests/<model>-<UTC time>`."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{settings.store('reports').rstrip('/')}/backtests/{model_name}-{stamp}"


def publish_report(result: dict, out: str) -> dict[str, str]:
    """Write backtest.json/.md/.svg/.html to `out` (a folder, local or fsspec URL)."""
    if "://" not in out or out.startswith("file://"):
        written = write_report(result, Path(out.removeprefix("file://")))
        return {kind: str(path) for kind, path in written.items()}
    fs, root = fsspec.core.url_to_fs(out)
    with tempfile.TemporaryDirectory(prefix="mlops-backtest-") as folder:
        written = write_report(result, Path(folder))
        fs.makedirs(root, exist_ok=True)
        urls = {}
        for kind, path in written.items():
            fs.put_file(str(path), f"{root}/{path.name}")
            urls[kind] = fs.unstrip_protocol(f"{root}/{path.name}")
    return urls
