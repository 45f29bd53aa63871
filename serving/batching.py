"""Adaptive micro-batching of concurrent requests into one model call.

While the model works on one batch, new requests queue; the next batch takes every queued record
up to `max_batch_size`. An idle service therefore answers a lone request at once, and a busy one
amortises each model call over many requests. When others are already waiting, the batcher holds
an incomplete batch open for at most `max_latency_ms` to let it fill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import pandas as pd

RunBatch = Callable[[Any], tuple[Any, Any]]
Combine = Callable[[list[Any]], Any]


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Join request frames into one batch frame (the default `combine`)."""
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@dataclass
class _Pending:
    frame: Sized  # one request's records: a frame, or anything `combine` joins
    future: asyncio.Future


class MicroBatcher:
    """Run `run_batch(combine(parts)) -> (outputs, context)` on the parts of queued requests.

    `combine` joins the parts (request frames by default); a request gets back its rows of the
    outputs and the batch's context. Batches of at most `inline_rows` records run on the event
    loop: for a tiny model call, the hop to a worker thread costs more than the call itself.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int = 256,
        max_latency_ms: float = 5.0,
        combine: Combine = concat_frames,
        inline_rows: int = 0,
    ) -> None:
        self.run_batch = run_batch
        self.combine = combine
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000
        self.inline_rows = inline_rows
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.records = 0

    async def submit(self, frame: Sized) -> tuple[Any, Any]:
        """Queue a request's records; return its slice of the outputs and the batch context."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(frame, future))
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
            await self._run(batch, rows)

    async def _run(self, batch: list[_Pending], rows: int) -> None:
        try:
            combined = self.combine([p.frame for p in batch])
            if rows <= self.inline_rows:
                outputs, context = self.run_batch(combined)
            else:
                outputs, context = await anyio.to_thread.run_sync(self.run_batch, combined)
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        self.batches += 1
        self.records += rows
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
