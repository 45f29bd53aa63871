"""The profiling child process of `mlops.monitoring.profiler_process.ProfilerProcess`.

Run as ``python -m mlops.monitoring.profiler_child``: requests arrive on stdin and answers leave on
stdout as length-prefixed pickles (`read_message`, `write_message`). The child keeps one
`PredictionWriter`'s windows in memory between requests. Importing this module loads nothing
heavy: pandas and whylogs load in `serve`, after the signals are set.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import sys
from datetime import UTC, datetime
from typing import IO, Any

HEADER = struct.Struct(">Q")  # the byte length of the pickle that follows


def dumps(value: Any) -> bytes:
    """Pickle with the highest protocol: what every message and chunk goes through."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def read_message(stream: IO[bytes]) -> Any:
    """Read one framed message from a blocking stream; raise EOFError when it ends."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("the stream ended")
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the stream ended inside a message")
    return pickle.loads(data)


def write_message(stream: IO[bytes], message: Any) -> None:
    """Write one framed message to a blocking stream."""
    data = dumps(message)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer profile requests until told to close or until the parent goes (EOF)."""
    import pandas as pd  # here, not at the top: the child ignores signals before loading them

    from mlops.monitoring.prediction_writer import Chunk, PredictionWriter
    from mlops.monitoring.profile import profile_frame

    _, config = read_message(requests)
    writer = PredictionWriter(**config, clock=lambda: datetime.now(UTC))
    profile_frame(pd.DataFrame({"warm_up": [0.0]}))  # load whylogs before the first rows come
    write_message(replies, ("ready", 0, [], []))
    while True:
        try:
            kind, rows = read_message(requests)
        except EOFError:  # the parent died or let go: write windows a failed write left behind
            writer.write_profiles([], [])
            return
        errors: list[str] = []
        chunks = [Chunk("", *pickle.loads(row)) for row in rows or ()]
        try:
            written = writer.write_profiles(chunks, errors)
        except Exception as exc:  # answer anyway: the parent must not wait for nothing
            errors.append(f"profiling failed: {exc!r}")
            written = 0
        write_message(replies, (kind, written, errors, [c.profiled for c in chunks]))
        if kind == "close":
            return


def main() -> None:
    """Run the child: requests on stdin, answers on the original stdout, the rest to stderr."""
    # Ctrl-C, or a server stopping its process tree: the server closes the child once it has
    # handed over its last rows, and the child exits at EOF when the server is gone anyway.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    sys.stdout = sys.stderr
    with contextlib.suppress(EOFError, BrokenPipeError):  # the parent is gone
        serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
