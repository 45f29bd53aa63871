"""The record of a challenger on trial beside the champion (see `mlops.release.rollout`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

STRATEGIES = ("direct", "shadow", "canary")
CANARY_STEPS = (0.05, 0.1, 0.25, 0.5)  # after a healthy window at the last step: promotion
_HASH_SPACE = float(2**64)


def route_share(key: Any) -> float:
    """Return where a record id falls in [0, 1): the same id always falls at the same place."""
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


def canary_mask(keys: Iterable[Any], share: float) -> np.ndarray:
    """Return, per key, whether a canary with `share` answers it (sticky: a hash of the key).

    The service routes with it and the monitor tells the canary's records with it, so it lives
    here, beside the rollout record, where neither side pulls in the training stack.
    """
    return np.fromiter((route_share(k) < share for k in keys), dtype=bool)


@dataclass(frozen=True)
class Rollout:
    """A challenger on trial: its strategy, version, canary share and when it started."""

    strategy: str
    version: str
    share: float = 0.0  # canary: the share of records it answers; shadow: 0 (it answers none)
    started_at: str | None = None
    step_at: str | None = None  # canary: when the share last changed (its evidence starts there)
    champion: str | None = None  # the champion when it started

    def __post_init__(self) -> None:
        if self.strategy not in ("shadow", "canary"):
            raise ValueError(f"rollout strategy must be shadow or canary, not {self.strategy!r}")
        if self.strategy == "canary" and not 0.0 < self.share < 1.0:
            raise ValueError(
                f"a canary's share must be between 0 and 1 (exclusive), not {self.share}"
            )
        if self.strategy == "shadow" and self.share != 0.0:
            raise ValueError("a shadow answers no traffic: its share must be 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Rollout | None:
        """Read the record `to_dict` wrote (None: no rollout)."""
        if not doc:
            return None
        return cls(
            str(doc["strategy"]), str(doc["version"]), float(doc.get("share") or 0.0),
            doc.get("started_at"), doc.get("step_at"), doc.get("champion"),
        )  # fmt: skip

    def next_share(self) -> float | None:
        """Return the canary's next step, or None when the next step is promotion."""
        later = [s for s in CANARY_STEPS if s > self.share + 1e-9]
        return later[0] if later else None
