"""Check a window's profile against the data contract, and against the reference profile.

Works on whylogs profiles only (no rows): null counts, the exact min and max of each numeric column,
frequent items for closed categorical sets, and quantiles for a unit/scale sanity check: a window
whose median falls outside the reference's [p1, p99] AND whose spread (p10 to p90) is ten times
wider or narrower than the reference's likely arrived in another unit, such as cents. Both are
needed: a unit change moves location and spread together by its factor (10, 100, 1000), while a
population that really moves (growing demand, a new price level) keeps roughly its spread, and
must not be mistaken for a broken feed that stops retraining.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mlops.contract.spec import ColumnSpec, Contract
from mlops.monitoring.profile import (
    ColumnCounts,
    ProfileView,
    column_counts,
    column_distribution,
    column_frequent_items,
)

SCALE_FRACTIONS = (0.01, 0.99)  # a window's median must lie between these reference quantiles
SPREAD_FRACTIONS = (0.1, 0.9)  # the spread compared with the reference's
SPREAD_FACTOR = 10.0  # a unit change is a power of ten; real populations rarely change spread 10x


@dataclass(frozen=True)
class ConstraintRow:
    """One constraint on one column: what was expected, what the window showed, and the verdict."""

    column: str
    constraint: str
    expected: str
    observed: str
    passed: bool


@dataclass(frozen=True)
class ConstraintReport:
    """The constraints a window's profile was checked against."""

    rows: tuple[ConstraintRow, ...]

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def failures(self) -> tuple[ConstraintRow, ...]:
        return tuple(row for row in self.rows if not row.passed)

    def summary(self) -> str:
        """Say in one line how many constraints failed, naming each failure."""
        if self.passed:
            return f"all {len(self.rows)} constraints passed"
        failed = "; ".join(
            f"{row.column} {row.constraint}: {row.observed} (expected {row.expected})"
            for row in self.failures
        )
        return f"{len(self.failures)} of {len(self.rows)} constraints failed: {failed}"

    def to_rows(self) -> list[dict[str, Any]]:
        """Return one dict per constraint, for a table artifact."""
        return [asdict(row) for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """Return the whole report as JSON-safe values."""
        return {"passed": self.passed, "summary": self.summary(), "constraints": self.to_rows()}


def check_constraints(
    view: ProfileView,
    contract: Contract,
    *,
    reference: ProfileView | None = None,
    null_tolerance: float = 0.02,
) -> ConstraintReport:
    """Check every feature (and the target, when profiled) of a window's profile.

    `reference` (the training profile) enables the checks relative to it: the null share of
    nullable columns may exceed the reference's by at most `null_tolerance`, and the median of
    numeric columns must lie within the reference's [p1, p99].
    """
    specs = list(contract.features)
    target = contract.target
    if column_counts(view, target.name) is not None:
        specs.append(target)
    rows: list[ConstraintRow] = []
    for spec in specs:
        rows.extend(_column_rows(view, spec, reference, null_tolerance))
    return ConstraintReport(rows=tuple(rows))


def _column_rows(
    view: ProfileView, spec: ColumnSpec, reference: ProfileView | None, null_tolerance: float
) -> list[ConstraintRow]:
    """Return the constraint rows of one column."""
    counts = column_counts(view, spec.name)
    if counts is None:
        return [ConstraintRow(spec.name, "present", "column in the profile", "missing", False)]
    rows = [_null_row(counts, spec, reference, null_tolerance)]
    rows += _range_rows(view, spec)
    rows += _allowed_rows(view, spec)
    if reference is not None and spec.is_numeric:
        rows += _scale_rows(view, reference, spec)
    return [row for row in rows if row is not None]


def _null_row(
    counts: ColumnCounts, spec: ColumnSpec, reference: ProfileView | None, null_tolerance: float
) -> ConstraintRow | None:
    """Check nulls: none in a non-nullable column, not many more than the reference's otherwise."""
    share = counts.null / counts.n if counts.n else 0.0
    observed = f"{counts.null} nulls ({share:.1%} of {counts.n})"
    if not spec.nullable:
        return ConstraintRow(spec.name, "not_null", "0 nulls", observed, counts.null == 0)
    ref_counts = None if reference is None else column_counts(reference, spec.name)
    if ref_counts is None or ref_counts.n == 0:
        return None
    ref_share = ref_counts.null / ref_counts.n
    limit = ref_share + null_tolerance
    expected = f"null share <= {limit:.1%} (reference {ref_share:.1%} + {null_tolerance:.1%})"
    return ConstraintRow(spec.name, "null_share", expected, observed, share <= limit)


def _range_rows(view: ProfileView, spec: ColumnSpec) -> list[ConstraintRow]:
    """Check the column's exact min and max against the contract's checks."""
    dist = column_distribution(view, spec.name)
    if dist is None:
        return []
    rows = []
    for name, bound, seen in (
        ("min", spec.checks.min, dist.minimum),
        ("max", spec.checks.max, dist.maximum),
    ):
        if bound is not None:
            passed = seen >= bound if name == "min" else seen <= bound
            sign = ">=" if name == "min" else "<="
            rows.append(ConstraintRow(spec.name, name, f"{sign} {bound:g}", f"{seen:g}", passed))
    return rows


def _allowed_rows(view: ProfileView, spec: ColumnSpec) -> list[ConstraintRow]:
    """Check that a closed categorical set holds only allowed values (from frequent items)."""
    items = None if spec.checks.allowed is None else column_frequent_items(view, spec.name)
    if items is None or spec.checks.allowed is None:
        return []
    allowed = {str(value) for value in spec.checks.allowed}
    unseen = {value: count for value, count in items.counts.items() if value not in allowed}
    observed = ", ".join(f"{value} ({count:g} rows)" for value, count in unseen.items())
    observed = observed or "only allowed values"
    if not items.complete:  # too many distinct values for the sketch to list them all
        observed += " among the most frequent values"
    expected = f"one of {', '.join(map(str, spec.checks.allowed))}"
    return [ConstraintRow(spec.name, "allowed", expected, observed, not unseen)]


def _scale_rows(view: ProfileView, reference: ProfileView, spec: ColumnSpec) -> list[ConstraintRow]:
    """Check for a unit change: median outside the reference's [p1, p99] and spread 10x off."""
    window, ref = column_distribution(view, spec.name), column_distribution(reference, spec.name)
    if window is None or ref is None:
        return []
    low, high = ref.quantiles(SCALE_FRACTIONS)
    median = window.quantiles([0.5])[0]
    ratio = _spread_ratio(window.quantiles(SPREAD_FRACTIONS), ref.quantiles(SPREAD_FRACTIONS))
    expected = (
        f"median within reference [p1, p99] = [{low:g}, {high:g}], "
        f"or p10-p90 spread within {SPREAD_FACTOR:g}x of the reference's"
    )
    shown = "n/a" if math.isnan(ratio) else f"{ratio:.3g}x"
    observed = f"median {median:g}, spread {shown}"
    off_scale = not math.isnan(ratio) and not (1 / SPREAD_FACTOR < ratio < SPREAD_FACTOR)
    passed = low <= median <= high or not off_scale
    return [ConstraintRow(spec.name, "scale", expected, observed, passed)]


def _spread_ratio(window: list[float], reference: list[float]) -> float:
    """Return the window's p10-p90 spread over the reference's (inf or nan when it is 0)."""
    spread, ref_spread = window[1] - window[0], reference[1] - reference[0]
    if ref_spread > 0:
        return spread / ref_spread
    return math.inf if spread > 0 else math.nan
