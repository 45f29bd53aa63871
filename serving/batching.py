"""Adaptive micro-batching of concurrent requests into one model call.

While the model works on one batch, new requests queue; the next batch takes every queued record
up to `max_batch_size`. An idle service therefore answers a lone request at once, and a busy one
amortises each model call over many requests. When others are already waiting, the batcher holds
an incomplete batch open for at most `max_latency_ms` to let it fill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import pandas as pd

RunBatch = Callable[[pd.DataFrame], tuple[Any, Any]]


@dataclass
class _Pending:
    frame: pd.DataFrame
    future: asyncio.Future


class MicroBatcher:
    """Run `run_batch(frame) -> (outputs, context)` on concatenated request frames."""

    def __init__(
        self, run_batch: RunBatch, *, max_batch_size: int = 256, max_latency_ms: float = 5.0
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.records = 0

    async def submit(self, frame: pd.DataFrame) -> tuple[Any, Any]:
        """Queue a request's records; return its slice of the outputs and the batch context."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(frame, future))
        return await future

    async def _work(self) -> None:
        assert self._queue is not None
        carry: _Pending | None = None
        while True:
            first, carry = carry or await self._queue.get(), None
            busy = not self._queue.empty()
            batch = [first]
            rows = len(first.frame)
            deadline = asyncio.get_running_loop().time() + self.max_latency_s
            while rows < self.max_batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    if not busy or asyncio.get_running_loop().time() >= deadline:
                        break
                    await asyncio.sleep(0.0005)
                    continue
                if rows + len(item.frame) > self.max_batch_size:
                    carry = item  # does not fit: it opens the next batch
                    break
                batch.append(item)
                rows += len(item.frame)
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        frames = [p.frame for p in batch]
        combined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        try:
            outputs, context = await anyio.to_thread.run_sync(self.run_batch, combined)
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        self.batches += 1
        self.records += len(combined)
        start = 0
        for pending in batch:
            end = start + len(pending.frame)
            if not pending.future.done():
                pending.future.set_result((outputs[start:end], context))
            start = end

    async def close(self) -> None:
        """Stop the worker task."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
