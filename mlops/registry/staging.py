"""Find the staging folders that killed writers left behind, and only those.

A writer stages a version in ``versions/.staging-<uuid>/`` and records itself there first, in
``.owner.json``. A staging folder is abandoned when its writer ran on this host and has exited,
or, when that cannot be checked (another host, or a folder without an owner record), when none of
its files changed for `STALE_STAGING_S`. A folder whose writer still runs is never abandoned.
"""

from __future__ import annotations

import json
import time

from fsspec import AbstractFileSystem

from mlops.registry.owner import Owner, is_alive, this_process

STAGING_PREFIX = ".staging-"
OWNER_FILE = ".owner.json"
# Far above the time a writer takes to upload a model into its staging folder.
STALE_STAGING_S = 3600.0


def claim_staging(fs: AbstractFileSystem, staging: str) -> None:
    """Create a staging folder and record this process as its writer."""
    fs.makedirs(staging, exist_ok=True)
    doc = {"holder": this_process().to_dict(), "created_at": time.time()}
    fs.pipe_file(f"{staging}/{OWNER_FILE}", json.dumps(doc).encode())


def abandoned_staging(
    fs: AbstractFileSystem, versions_dir: str, *, max_age_s: float = STALE_STAGING_S
) -> list[str]:
    """Return the staging folders under `versions_dir` whose writers are gone."""
    fs.invalidate_cache(versions_dir)
    try:
        entries = fs.ls(versions_dir, detail=False)
    except FileNotFoundError:
        return []
    names = [str(p).rstrip("/") for p in entries]
    folders = [p for p in names if p.rsplit("/", 1)[-1].startswith(STAGING_PREFIX)]
    return [p for p in folders if _abandoned(fs, p, max_age_s)]


def _abandoned(fs: AbstractFileSystem, folder: str, max_age_s: float) -> bool:
    """Tell whether a staging folder's writer has exited, or it has not changed for too long."""
    owner = _read_owner(fs, folder)
    alive = None if owner is None else is_alive(owner)
    if alive is not None:
        return not alive
    newest = _newest_change(fs, folder)
    return newest is not None and time.time() - newest > max_age_s


def _read_owner(fs: AbstractFileSystem, folder: str) -> Owner | None:
    """Return the writer recorded in a staging folder; None when there is no valid record."""
    try:
        return Owner.from_dict(json.loads(fs.cat_file(f"{folder}/{OWNER_FILE}"))["holder"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _newest_change(fs: AbstractFileSystem, folder: str) -> float | None:
    """Return when a file in the folder (or the folder itself) last changed; None if unknown."""
    stamps = []
    for path in [folder, *fs.find(folder)]:
        try:
            stamps.append(fs.modified(path).timestamp())
        except Exception:  # a path gone meanwhile, or a file system that keeps no times
            continue
    return max(stamps, default=None)
