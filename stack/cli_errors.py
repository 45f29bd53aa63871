"""How the `mlops` command fails: one line on stderr and exit code 1, the traceback on --debug."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

# Prefect's exceptions for a run that ended badly: their cause, when set, is the error to show
WRAPPERS = ("FailedRun", "CrashedRun", "UnfinishedRun", "CancelledRun")


class CliGroup(TyperGroup):
    """The command group: an exception of a command becomes `error: <message>` and exit code 1.

    With the global `--debug` option the exception propagates, traceback and all.
    """

    def invoke(self, ctx: Any) -> Any:
        """Run the command; turn an unexpected exception into one line on stderr."""
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors already speak to the user
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            typer.echo(f"error: {error_message(exc)}", err=True)
            raise typer.Exit(1) from None


def error_message(exc: BaseException) -> str:
    """Return one line that says what went wrong (unwrapping flow-run wrappers)."""
    while type(exc).__name__ in WRAPPERS and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(map(str, e['loc'])) or exc.title}: {e['msg']}" for e in exc.errors()
        ]
        text = f"invalid {exc.title}: " + "; ".join(problems)
    elif isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) quotes its message
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class _NoFailedRunLogs(logging.Filter):
    """Keep Prefect's errors (a failed run's traceback) off the console; the API still gets them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        if record.levelno >= logging.ERROR:
            return False
        message = record.getMessage()
        return not message.startswith("Finished in state") or "Completed" in message


@contextmanager
def quiet_failed_runs(debug: bool) -> Iterator[None]:
    """Hide Prefect's console logs of a failed run while the block runs (unless `debug`).

    Prefect logs a failing task's and flow's traceback itself; the command prints the error once.
    """
    if debug:
        yield
        return
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # the handlers to filter exist once Prefect's logging is set up

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    quiet = _NoFailedRunLogs()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
        sys.stderr.flush()


def debug_enabled(ctx: typer.Context) -> bool:
    """Return whether the global `--debug` option was given."""
    return bool(ctx.find_root().params.get("debug"))
