"""Fit and apply the preprocessing that the ONNX graph will carry.

Numeric columns keep their raw values (NaN for null): imputation and scaling are constants inside
the network. Categorical columns map to vocabulary indices, with index 0 for out-of-vocabulary and
missing values; the export puts the same lookup into the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract

OOV_INDEX = 0


@dataclass(frozen=True)
class NumericStats:
    """Imputation and scaling constants of one numeric feature."""

    name: str
    mean: float
    std: float
    null_indicator: bool


@dataclass(frozen=True)
class Vocabulary:
    """Known values of one categorical feature; position i maps to index i + 1."""

    name: str
    values: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of embedding rows, including the out-of-vocabulary slot."""
        return len(self.values) + 1

    def lookup(self, strings: pd.Series) -> np.ndarray:
        """Map strings to indices, unseen and missing ones to the OOV slot."""
        table = {v: i + 1 for i, v in enumerate(self.values)}
        return strings.map(table).fillna(OOV_INDEX).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class TargetEncoding:
    """How the target maps to network outputs."""

    task: str
    classes: tuple[Any, ...] | None = None
    mean: float = 0.0
    std: float = 1.0

    @property
    def n_outputs(self) -> int:
        if self.task == "multiclass":
            assert self.classes is not None
            return len(self.classes)
        return 1


@dataclass(frozen=True)
class Preprocessor:
    """Everything fitted on the training split that inference needs."""

    numeric: tuple[NumericStats, ...]
    categorical: tuple[Vocabulary, ...]
    target: TargetEncoding

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form (stored in the manifest)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """Rebuild from `to_dict` output."""
        target = data["target"]
        classes = target.get("classes")
        return cls(
            numeric=tuple(NumericStats(**n) for n in data["numeric"]),
            categorical=tuple(
                Vocabulary(c["name"], tuple(c["values"])) for c in data["categorical"]
            ),
            target=TargetEncoding(**{**target, "classes": tuple(classes) if classes else None}),
        )


def categorical_strings(series: pd.Series) -> pd.Series:
    """Render categorical values as the strings the model sees (booleans as true/false)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.map({True: "true", False: "false"}).astype(object)
    return series.map(lambda v: None if pd.isna(v) else str(v)).astype(object)


def numeric_values(series: pd.Series) -> np.ndarray:
    """Return float32 values with NaN for missing (booleans as 0/1)."""
    return pd.to_numeric(series.astype("Float64"), errors="coerce").to_numpy(
        dtype=np.float32, na_value=np.nan
    )


def category_strings(values: Sequence[Any]) -> list[str | None]:
    """Render plain Python values (one column of API records) as `categorical_strings` does.

    The request path of the service: no pandas, so a single record costs microseconds. Booleans
    are true/false and missing values None whatever the other values of the column are.
    """
    return [_category_string(v) for v in values]


def _category_string(value: Any) -> str | None:
    if value is None or (value.__class__ is float and value != value):
        return None
    if value.__class__ is bool:
        return "true" if value else "false"
    return str(value)


def numeric_array(values: Sequence[Any]) -> np.ndarray:
    """Return plain Python numbers (None for missing, booleans as 0/1) as float32 with NaN."""
    floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return floats.astype(np.float32)  # via float64, like numeric_values


def fit_preprocessor(
    train: pd.DataFrame, contract: Contract, *, max_vocab: int = 5000, min_count: int = 2
) -> Preprocessor:
    """Fit scaling stats, vocabularies and the target encoding on the training split only."""
    numeric = []
    for col in contract.numeric_features:
        values = numeric_values(train[col.name]).astype(np.float64)
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        std = float(np.nanstd(values)) if np.isfinite(values).any() else 1.0
        numeric.append(NumericStats(col.name, mean, std if std > 1e-12 else 1.0, col.nullable))
    vocabs = []
    for col in contract.categorical_features:
        counts = categorical_strings(train[col.name]).value_counts()
        kept = counts[counts >= min_count].head(max_vocab)
        vocabs.append(Vocabulary(col.name, tuple(sorted(map(str, kept.index)))))
    return Preprocessor(tuple(numeric), tuple(vocabs), _fit_target(train, contract))


def _fit_target(train: pd.DataFrame, contract: Contract) -> TargetEncoding:
    target = contract.target
    y = train[target.name]
    if target.task == "regression":
        values = y.astype("float64")
        return TargetEncoding("regression", None, float(values.mean()), float(values.std() or 1.0))
    classes = target.classes or tuple(sorted(y.dropna().unique().tolist()))
    if target.task == "binary" and len(classes) != 2:
        raise ValueError(
            f"binary target {target.name!r} needs 2 classes in training data, found {classes}"
        )
    return TargetEncoding(str(target.task), tuple(_plain(c) for c in classes))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def encode_features(df: pd.DataFrame, prep: Preprocessor) -> tuple[np.ndarray, np.ndarray]:
    """Return (numeric float32 [N, n_num] with NaN, categorical int64 [N, n_cat])."""
    n = len(df)
    num = np.empty((n, len(prep.numeric)), dtype=np.float32)
    for j, stats in enumerate(prep.numeric):
        num[:, j] = numeric_values(df[stats.name])
    cat = np.empty((n, len(prep.categorical)), dtype=np.int64)
    for j, vocab in enumerate(prep.categorical):
        cat[:, j] = vocab.lookup(categorical_strings(df[vocab.name]))
    return num, cat


def encode_target(y: pd.Series, encoding: TargetEncoding) -> np.ndarray:
    """Return training targets: class indices, 0/1 floats, or standardised values."""
    if encoding.task == "regression":
        return ((y.astype("float64") - encoding.mean) / encoding.std).to_numpy(np.float32)
    assert encoding.classes is not None
    index = {c: i for i, c in enumerate(encoding.classes)}
    codes = y.map(lambda v: index.get(_plain(v), -1)).to_numpy(dtype=np.int64)
    if (codes < 0).any():
        unknown = sorted(set(y[codes < 0].astype(str)))[:5]
        raise ValueError(f"target values {unknown} are not among the classes {encoding.classes}")
    return codes.astype(np.float32) if encoding.task == "binary" else codes
