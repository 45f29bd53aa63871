"""Threads racing for one lock file, as separate processes would, counting who held it at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from mlops.registry.locking import file_lock


def race_for_lock(
    fs: Any,
    path: str,
    *,
    rounds: int,
    contenders: int,
    before_round: Callable[[], None],
    timeout_s: float,
    hold_s: float,
) -> tuple[list[int], list[int]]:
    """Run `rounds` races of `contenders` threads; return who entered and how many were inside.

    `before_round` sets the scene (e.g. writes a dead holder's lock). Each thread uses its own
    key, so the threads race on the lock file itself rather than queue on the per-process lock.
    """
    inside, overlaps, entered = [0], [], []
    guard = threading.Lock()

    def contend(index: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        with file_lock(fs, path, key=f"race-{path}-{index}", timeout_s=timeout_s):
            with guard:
                inside[0] += 1
                overlaps.append(inside[0])
                entered.append(index)
            time.sleep(hold_s)
            with guard:
                inside[0] -= 1

    for _ in range(rounds):
        before_round()
        barrier = threading.Barrier(contenders)
        threads = [threading.Thread(target=contend, args=(i, barrier)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=timeout_s * 2)
    return entered, overlaps
