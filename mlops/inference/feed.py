"""Turn raw rows into an ONNX model's inputs: the one path from data to the graph.

A model input is described as its manifest lists it, ``{"name": ..., "type": "float32"}`` or
``{"name": ..., "type": "string"}``: numeric inputs get float32 with NaN for missing values,
categorical ones strings with "" for missing (the graph's vocabulary lookup sends "" to the
out-of-vocabulary slot). Serving, batch scoring, the gate, export verification and backtests all
feed models through `frame_feed` (or `values_feed`, the serving hot path without pandas).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.training.features import (
    categorical_strings,
    category_strings,
    numeric_array,
    numeric_values,
)

InputSpec = Mapping[str, str]


def contract_inputs(contract: Contract) -> list[dict[str, str]]:
    """Return the inputs of a model exported under a contract, in the contract's order."""
    return [
        {"name": c.name, "type": "float32" if c.is_numeric else "string"} for c in contract.features
    ]


def is_string_input(spec: InputSpec) -> bool:
    """Tell whether an input takes strings (a categorical feature) rather than numbers."""
    return spec["type"] == "string"


def frame_feed(frame: pd.DataFrame, inputs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Turn raw rows into the graph's inputs, each converted as its spec says."""
    feed: dict[str, np.ndarray] = {}
    for spec in inputs:
        column = frame[spec["name"]]
        if is_string_input(spec):
            feed[spec["name"]] = categorical_strings(column).fillna("").to_numpy(dtype=object)
        else:
            feed[spec["name"]] = numeric_values(column)
    return feed


def onnx_feed(frame: pd.DataFrame, contract: Contract) -> dict[str, np.ndarray]:
    """Turn raw rows into the inputs of a model exported under `contract`."""
    return frame_feed(frame, contract_inputs(contract))


def values_feed(
    columns: Mapping[str, Sequence[Any]], inputs: Sequence[InputSpec]
) -> tuple[dict[str, np.ndarray], dict[str, list[str | None]]]:
    """Turn raw column values (plain Python, as in API records) into the graph's inputs.

    Return the feed and, per categorical input, its values rendered as strings (None where
    missing) for the caller to check against the vocabulary. No pandas: the serving hot path.
    """
    strings = {
        spec["name"]: category_strings(columns[spec["name"]])
        for spec in inputs
        if is_string_input(spec)
    }
    feed: dict[str, np.ndarray] = {}
    for spec in inputs:
        name = spec["name"]
        if name in strings:
            feed[name] = np.array(["" if v is None else v for v in strings[name]], dtype=object)
        else:
            feed[name] = numeric_array(columns[name])
    return feed, strings
