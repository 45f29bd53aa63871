"""Keep immutable model versions and atomically updated aliases on any fsspec URL.

`Registry` is what callers construct (``Registry(url)``); it joins the versions
(``mlops.registry.versions``) and the aliases (``mlops.registry.aliases``) of one registry root,
laid out as ``mlops.registry.storage`` describes. The registry's records and errors are importable
from here too.
"""

from __future__ import annotations

from mlops.registry.aliases import AliasStore
from mlops.registry.locking import ConcurrentUpdateError
from mlops.registry.storage import (
    AliasNotSetError,
    AliasState,
    IntegrityError,
    ModelVersion,
    RegistryError,
    VersionNotFoundError,
)
from mlops.registry.versions import VersionStore

__all__ = [
    "AliasNotSetError",
    "AliasState",
    "ConcurrentUpdateError",
    "IntegrityError",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "VersionNotFoundError",
]


class Registry(VersionStore, AliasStore):
    """Store model versions and their aliases under one root URL.

    ``Registry(root, *, storage_options=None, clock=utc_now, lock_timeout_s=30.0)``: `root` is a
    local path or an fsspec URL; `clock` stamps versions, alias changes and history events.
    """
