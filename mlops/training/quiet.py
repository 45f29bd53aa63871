"""Keep the libraries' known, harmless noise out of training and export output.

Each line silenced here was seen on every training and says nothing a user can act on: the ONNX
exporter's "torchvision is not installed. Skipping torchvision::nms" (we export no vision ops),
a LeafSpec deprecation inside Lightning and torch's exporter, the exporter's note that a dynamic
axis name is reused, Lightning's data-loader worker hint (batches are tensor gathers in-process)
and its advertising tip. Device lines ("GPU available: ...") stay: they say where training ran.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

NOISE = (
    r".*isinstance\(treespec, LeafSpec\)`? is deprecated.*",
    r".*The axis name: .* will not be used.*",
    r".*does not have many workers which may be a bottleneck.*",
)
EXPORTER_LOGGER = "torch.onnx._internal.exporter._registration"


class _NoTips(logging.Filter):
    """Drop Lightning's promotional tips."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


_TIPS = _NoTips()


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the known noise of Lightning and the ONNX exporter while the block runs."""
    exporter = logging.getLogger(EXPORTER_LOGGER)
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    lightning.addFilter(_TIPS)
    try:
        with warnings.catch_warnings():
            for message in NOISE:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        exporter.setLevel(level)
        lightning.removeFilter(_TIPS)
