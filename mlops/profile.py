"""Profile data frames with whylogs: the only module through which the project imports whylogs.

whylogs 1.6.4 is unmaintained and still refers to ``np.unicode_``, which numpy 2 removed. The shim
in ``_whylogs`` restores that alias before whylogs is first imported, and turns whylogs' telemetry
off. whylogs is imported lazily, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import reduce
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView as ProfileView
else:
    ProfileView = Any

# whylogs metric column -> readable summary column, in display order.
_SUMMARY_COLUMNS = {
    "counts/n": "count",
    "counts/null": "null_count",
    "distribution/mean": "mean",
    "distribution/stddev": "stddev",
    "distribution/min": "min",
    "distribution/median": "median",
    "distribution/max": "max",
    "cardinality/est": "distinct_est",
}
_TYPE_COLUMNS = ("integral", "fractional", "boolean", "string", "object", "tensor")


def _whylogs() -> ModuleType:
    """Import whylogs after applying the numpy 2 shim and disabling its telemetry."""
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
    if not hasattr(np, "unicode_"):
        # whylogs 1.6.4 uses np.unicode_, removed in numpy 2; np.str_ is what it aliased.
        setattr(np, "unicode_", np.str_)  # noqa: B010
    import whylogs

    return whylogs


def profile_frame(df: pd.DataFrame) -> ProfileView:
    """Profile every column of a data frame."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"profile_frame expects a pandas DataFrame, got {type(df).__name__}")
    return _whylogs().log(pandas=df).view()


def profile_to_bytes(view: ProfileView) -> bytes:
    """Serialize a profile to bytes."""
    data: bytes = view.serialize()
    return data


def profile_from_bytes(data: bytes) -> ProfileView:
    """Deserialize a profile written by ``profile_to_bytes``."""
    _whylogs()
    from whylogs.core import DatasetProfileView

    try:
        return DatasetProfileView.deserialize(data)
    except Exception as exc:
        raise ValueError(
            f"could not read a whylogs profile from {len(data)} bytes: {exc}. "
            "Expected bytes written by profile_to_bytes."
        ) from exc


def merge_profiles(views: Iterable[ProfileView]) -> ProfileView:
    """Merge profiles into one, as if all their rows had been profiled together."""
    items = list(views)
    if not items:
        raise ValueError("merge_profiles needs at least one profile, got none")
    return reduce(lambda left, right: left.merge(right), items)


def profile_summary(view: ProfileView) -> pd.DataFrame:
    """Summarize a profile: one row per column with counts, nulls, distribution and type."""
    raw = view.to_pandas()
    summary = raw.reindex(columns=list(_SUMMARY_COLUMNS)).rename(columns=_SUMMARY_COLUMNS)
    summary = summary.apply(pd.to_numeric, errors="coerce")
    # whylogs reports mean 0 and stddev 0 for columns without numeric values: hide them.
    no_numbers = _numeric_column(raw, "distribution/n") == 0
    summary.loc[no_numbers, ["mean", "stddev"]] = np.nan
    summary["inferred_type"] = _inferred_types(raw)
    summary.index.name = "column"
    return summary


def _inferred_types(raw: pd.DataFrame) -> pd.Series:
    """Name the most frequent whylogs type of each column ("null" when it holds no values)."""
    counts = pd.DataFrame(
        {kind: _numeric_column(raw, f"types/{kind}") for kind in _TYPE_COLUMNS}, index=raw.index
    )
    best = counts.idxmax(axis=1)
    return best.where(counts.max(axis=1) > 0, "null")


def _numeric_column(raw: pd.DataFrame, name: str) -> pd.Series:
    """Return a whylogs metric column as numbers, zeros where whylogs did not report it."""
    if name not in raw.columns:
        return pd.Series(0.0, index=raw.index)
    return pd.to_numeric(raw[name], errors="coerce").fillna(0.0)
