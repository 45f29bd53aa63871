"""Score data partitions with a registered ONNX version: predictions, quarantine and profiles.

One partition is one data file. Layout of what scoring a partition writes::

    <output_url>/<model>/<partition>.parquet                 id, timestamp, outputs, model_version
    <quarantine_url>/<contract>/score-<partition>.parquet    failing rows with their reasons
    <profiles_url>/<model>/<version>/batch-<partition>.bin   whylogs: raw features + outputs

Everything a partition needs travels as strings in `BatchTarget`, so that it can be scored in
another process or on another machine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.sources import DataSourceError, list_data_files, load_dataset
from mlops.data.validate import validate_frame, write_quarantine
from mlops.inference.model import LoadedModel, load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.profile import merge_profiles, profile_frame, profile_to_bytes
from mlops.registry.store import Registry

VERSION_COLUMN = "model_version"
_EXTENSION_RE = re.compile(r"\.(csv|csv\.gz|parquet|pq)$", re.IGNORECASE)


@dataclass(frozen=True)
class Partition:
    """One data file to score, and the name its outputs are written under."""

    name: str
    uri: str


@dataclass(frozen=True)
class BatchTarget:
    """Which model version scores a batch, against which contract, and where outputs go."""

    registry_url: str
    model_name: str
    version: str
    contract_uri: str
    output_url: str
    profiles_url: str
    quarantine_url: str
    prefer_gpu: bool = False
    onnx_threads: int = 1


@dataclass(frozen=True)
class PartitionReport:
    """What scoring one partition read and wrote."""

    partition: str
    rows: int
    valid: int
    quarantined: int
    predictions_uri: str
    profile_uri: str
    quarantine_uri: str | None


def partition_name(relative: str) -> str:
    """Name a data file by its path relative to the data URI: no extension, '/' as '_'."""
    return _EXTENSION_RE.sub("", relative.strip("/")).replace("/", "_")


def list_partitions(data_uri: str, only: Sequence[str] | None = None) -> list[Partition]:
    """Return the data files under `data_uri` as partitions, optionally only those selected.

    An entry of `only` selects the partition of that name, or the files under that relative path.
    """
    root = fsspec.core.url_to_fs(data_uri)[1].rstrip("/")
    listed = []
    for path in list_data_files(data_uri):
        relative = _relative(path, root)
        listed.append((Partition(partition_name(relative), path), relative))
    names = [p.name for p, _ in listed]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataSourceError(f"files under {data_uri} share partition names {twice}; rename them")
    if not only:
        return [p for p, _ in listed]
    unknown = [e for e in only if not any(_selects(e, p.name, r) for p, r in listed)]
    if unknown:
        raise DataSourceError(
            f"no partition {unknown} under {data_uri}; partitions: {', '.join(names[:20])}"
        )
    return [p for p, r in listed if any(_selects(e, p.name, r) for e in only)]


def _relative(path: str, root: str) -> str:
    """Return a file's path under the data URI (its file name when the URI is the file)."""
    stripped = fsspec.core.url_to_fs(path)[1]
    if stripped.startswith(f"{root}/"):
        return stripped[len(root) + 1 :]
    return stripped.rsplit("/", 1)[-1]


def _selects(entry: str, name: str, relative: str) -> bool:
    entry = entry.strip("/")
    return entry in (name, relative) or relative.startswith(f"{entry}/")


def predict_frame(model: LoadedModel, valid: pd.DataFrame) -> pd.DataFrame:
    """Return the output columns of `model` on validated rows (empty columns for no rows)."""
    if valid.empty:
        classes = model.manifest.get("classes") or []
        width = len(classes) if model.manifest["task"] != "regression" else 0
        output = np.empty((0, width) if width else (0,), dtype=np.float32)
    else:
        output = model.predict(valid)
    return output_frame(output, model.manifest)


def prediction_table(
    valid: pd.DataFrame, outputs: pd.DataFrame, contract: Contract, version: str
) -> pd.DataFrame:
    """Return the rows to write: id and timestamp (when the contract has them), outputs, version."""
    keys = [c for c in (contract.id_column, contract.timestamp_column) if c and c in valid.columns]
    table = pd.concat([valid[keys].reset_index(drop=True), outputs.reset_index(drop=True)], axis=1)
    table[VERSION_COLUMN] = version
    return table


def partition_profile(raw_features: pd.DataFrame, outputs: pd.DataFrame) -> bytes:
    """Profile every row's raw features and the outputs of the rows that were scored."""
    views = [profile_frame(raw_features)]
    if not outputs.empty:
        views.append(profile_frame(outputs))
    return profile_to_bytes(merge_profiles(views))


def score_partition(partition: Partition, target: BatchTarget) -> PartitionReport:
    """Read, validate, predict and profile one partition, and write what it produced."""
    contract = load_contract(target.contract_uri)
    raw = load_dataset(partition.uri, contract).frame
    raw = raw.drop(columns=[contract.target.name], errors="ignore")
    result = validate_frame(raw, contract, with_target=False)
    quarantine = write_quarantine(result, target.quarantine_url, batch=f"score-{partition.name}")
    model = load_from_registry(
        Registry(target.registry_url),
        target.model_name,
        target.version,
        prefer_gpu=target.prefer_gpu,
        intra_op_threads=target.onnx_threads,
    )
    outputs = predict_frame(model, result.valid)
    predictions = f"{target.output_url.rstrip('/')}/{target.model_name}/{partition.name}.parquet"
    write_parquet(predictions, prediction_table(result.valid, outputs, contract, model.version))
    features = [name for name in contract.feature_names if name in raw.columns]
    profile = _join(target.profiles_url, target.model_name, model.version)
    profile = f"{profile}/batch-{partition.name}.bin"
    write_bytes(profile, partition_profile(raw[features], outputs))
    return PartitionReport(
        partition=partition.name,
        rows=result.n_input,
        valid=result.n_valid,
        quarantined=result.n_quarantined,
        predictions_uri=predictions,
        profile_uri=profile,
        quarantine_uri=quarantine,
    )


def write_parquet(url: str, frame: pd.DataFrame) -> None:
    """Write a frame as one Parquet file at a local path or fsspec URL."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as fh:
        frame.to_parquet(fh, index=False)


def write_bytes(url: str, data: bytes) -> None:
    """Write bytes to a local path or fsspec URL."""
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def _join(*parts: str) -> str:
    return "/".join(part.rstrip("/") for part in parts)
